"""The Tokens API (`/v0/tokens`), as `tb token ls|create|rm|refresh|scopes|copy` call it, in-process.

Creating, listing, altering, refreshing and removing tokens through HTTP; what a created token may do;
JWTs signed with the admin token; persistence across a new server on the same data directory; and
`tbkit tokens` listing what the API lists.
"""

from __future__ import annotations

import json
import shutil
import stat
import time

import jwt
import pytest
import requests
from click.testing import CliRunner

from tbkit.cli import main as cli
from tbkit.project.datafiles import load_project
from tbkit.server.workspaces.tokens import TokenStore

from . import ENDPOINTS, ROOT
from .serving import InProcessServer

EVENT = '{"event_id":"t1","customer_id":"c","event_type":"login","timestamp":"2025-01-01 00:00:00"}'


def call(server, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, headers=server.headers(token), timeout=60, **kwargs)


def create(server, name: str, *scopes: str) -> requests.Response:
    """POST /v0/tokens as `tb token create static` sends it: name and origin encoded, scopes appended raw."""
    query = "&".join(f"scope={scope}" for scope in scopes)
    return call(server, "POST", f"/v0/tokens?name={name}&origin=C&{query}", data="")


def reads(server, token: str, endpoint: str) -> int:
    """The status of a call to `endpoint` (with the one parameter an endpoint requires)."""
    return call(server, "GET", f"/v0/pipes/{endpoint}.json", token, params={"customer_id": "c"}).status_code


def appends(server, token: str, datasource: str = "customer_events") -> int:
    return call(server, "POST", f"/v0/events?name={datasource}", token, data=EVENT).status_code


def listed(server) -> dict[str, dict]:
    response = call(server, "GET", "/v0/tokens")
    assert response.status_code == 200
    return {token["name"]: token for token in response.json()["tokens"]}


def test_list_shows_every_token_with_tinybird_scopes(start_server):
    server = start_server()
    tokens = listed(server)
    assert set(tokens) == {
        "admin token",
        "customer_api_read",
        "cltv_dashboard",
        "customer_events_append",
        "customer_demographics_append",
        "customers_append",
        "customer_transactions_append",
    }
    assert tokens["admin token"]["scopes"] == [{"type": "ADMIN"}]
    assert tokens["admin token"]["token"] == server.token
    assert tokens["customer_events_append"]["scopes"] == [{"type": "DATASOURCES:APPEND", "resource": "customer_events"}]
    assert tokens["customer_api_read"]["scopes"] == [{"type": "PIPES:READ", "resource": n} for n in ENDPOINTS]
    saved = json.loads((server.data_dir / "tokens.json").read_text())
    assert tokens["cltv_dashboard"]["token"] == saved["tokens"]["cltv_dashboard"]
    for token in tokens.values():
        assert set(token) >= {"id", "name", "token", "scopes", "description", "origin"}
        by_id = call(server, "GET", f"/v0/tokens/{token['id']}").json()
        assert by_id == call(server, "GET", f"/v0/tokens/{token['name']}").json() == token
    assert call(server, "GET", "/v0/tokens/admin%20token").json()["token"] == server.token


def test_only_the_admin_token_manages_tokens(start_server):
    server = start_server()
    read = listed(server)["customer_api_read"]["token"]
    for method, path in [("GET", "/v0/tokens"), ("POST", "/v0/tokens?name=x&scope=ADMIN"), ("GET", "/v0/tokens/x")]:
        refused = call(server, method, path, read)
        assert refused.status_code == 403 and "admin token" in refused.json()["error"]
    refused = call(server, "POST", "/v0/tokens/customer_api_read/refresh", read)
    assert refused.status_code == 403
    assert call(server, "DELETE", "/v0/tokens/cltv_dashboard", read).status_code == 403
    assert "x" not in listed(server)


def test_a_created_read_token_reads_its_pipe_and_nothing_else(start_server):
    server = start_server()
    response = create(server, "summary_reader", "PIPES:READ:cltv_summary")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "summary_reader"
    assert body["scopes"] == [{"type": "PIPES:READ", "resource": "cltv_summary"}]
    assert body["token"].startswith("p.") and body["id"]
    value = body["token"]
    assert reads(server, value, "cltv_summary") == 200
    assert reads(server, value, "customer_cltv") == 403
    assert appends(server, value) == 403
    assert call(server, "GET", "/v0/sql", value, params={"q": "SELECT count() FROM customers"}).status_code == 403
    assert call(server, "POST", "/v0/datasources/customer_events/truncate", value).status_code == 403
    assert call(server, "GET", "/v0/tokens", value).status_code == 403
    assert listed(server)["summary_reader"] == body


def test_an_append_token_appends_and_cannot_read(start_server):
    server = start_server()
    value = create(server, "events_writer", "DATASOURCES:APPEND:customer_events").json()["token"]
    assert appends(server, value) == 202
    assert appends(server, value, "customers") == 403
    assert reads(server, value, "cltv_summary") == 403
    q = {"q": "SELECT count() FROM customer_events"}
    assert call(server, "GET", "/v0/sql", value, params=q).status_code == 403
    assert call(server, "POST", "/v0/datasources/customer_events/truncate", value).status_code == 403


def test_a_datasource_read_token_queries_its_datasource_and_is_labelled_so(start_server):
    server = start_server()
    body = create(server, "customers_reader", "DATASOURCES:READ:customers").json()
    assert body["scopes"] == [{"type": "DATASOURCES:READ", "resource": "customers"}]
    value = body["token"]
    ok = call(server, "GET", "/v0/sql", value, params={"q": "SELECT count() AS n FROM customers FORMAT JSON"})
    assert ok.status_code == 200 and ok.json()["data"] == [{"n": 0}]
    other = call(server, "GET", "/v0/sql", value, params={"q": "SELECT count() FROM customer_events"})
    assert other.status_code == 403
    assert appends(server, value, "customers") == 403
    assert reads(server, value, "cltv_summary") == 403


def test_datafile_read_scope_on_a_datasource_is_described_as_datasources_read(tmp_path):
    project_dir = tmp_path / "tinybird"
    shutil.copytree(ROOT / "tinybird", project_dir)
    datasource = project_dir / "datasources" / "customers.datasource"
    datasource.write_text(datasource.read_text() + '\nTOKEN "customers_reader" READ\n')
    store = TokenStore.load(tmp_path / "data", load_project(project_dir))
    reader = store.find("customers_reader")
    assert reader.describe() == ["DATASOURCES:READ:customers"]
    assert reader.allows("READ", "customers") and not reader.allows("APPEND", "customers")
    assert store.find("cltv_dashboard").describe() == [
        "PIPES:READ:cltv_by_location",
        "PIPES:READ:cltv_summary",
        "PIPES:READ:customer_cltv",
    ]


def test_alter_replaces_the_scopes(start_server):
    server = start_server()
    body = create(server, "reader", "PIPES:READ:cltv_summary").json()
    altered = call(server, "PUT", "/v0/tokens/reader?scope=PIPES:READ:customer_cltv&scope=PIPES:READ:cltv_by_location")
    assert altered.status_code == 200
    assert altered.json()["scopes"] == [
        {"type": "PIPES:READ", "resource": "cltv_by_location"},
        {"type": "PIPES:READ", "resource": "customer_cltv"},
    ]
    assert altered.json()["token"] == body["token"] and altered.json()["id"] == body["id"]
    assert reads(server, body["token"], "customer_cltv") == 200
    assert reads(server, body["token"], "cltv_summary") == 403
    # a long scope list goes in the body without a Content-Type, as `tb` sends it
    in_body = call(server, "PUT", "/v0/tokens/reader", data="scope=DATASOURCES:APPEND:customer_events")
    assert in_body.json()["scopes"] == [{"type": "DATASOURCES:APPEND", "resource": "customer_events"}]
    assert appends(server, body["token"]) == 202 and reads(server, body["token"], "customer_cltv") == 403


def test_refresh_gives_a_new_value_and_the_old_one_is_refused(start_server):
    server = start_server()
    old = create(server, "reader", "PIPES:READ:cltv_summary").json()
    refreshed = call(server, "POST", "/v0/tokens/reader/refresh", data="")
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["token"] != old["token"] and new["scopes"] == old["scopes"] and new["id"] == old["id"]
    assert reads(server, old["token"], "cltv_summary") == 403
    assert reads(server, new["token"], "cltv_summary") == 200
    # a datafile token too: its new value is the one saved
    before = listed(server)["cltv_dashboard"]["token"]
    after = call(server, "POST", "/v0/tokens/cltv_dashboard/refresh").json()["token"]
    assert (
        after != before and reads(server, before, "cltv_summary") == 403 and reads(server, after, "cltv_summary") == 200
    )
    assert json.loads((server.data_dir / "tokens.json").read_text())["tokens"]["cltv_dashboard"] == after


def test_delete_removes_a_created_token_only(start_server):
    server = start_server()
    value = create(server, "reader", "PIPES:READ:cltv_summary").json()["token"]
    removed = call(server, "DELETE", "/v0/tokens/reader")
    assert removed.status_code == 204 and removed.text == ""
    assert reads(server, value, "cltv_summary") == 403
    missing = call(server, "GET", "/v0/tokens/reader")
    assert missing.status_code == 404 and missing.json() == {"error": "Token 'reader' does not exist"}
    assert call(server, "DELETE", "/v0/tokens/reader").status_code == 404
    admin = call(server, "DELETE", "/v0/tokens/admin%20token")
    assert admin.status_code == 400 and "cannot be removed" in admin.json()["error"]
    declared = call(server, "DELETE", "/v0/tokens/cltv_dashboard")
    assert declared.status_code == 400 and "TOKEN lines" in declared.json()["error"]
    assert reads(server, server.token, "cltv_summary") == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("scope=PIPES:READ:cltv_summary", "The 'name' parameter is required"),
        ("name=x", "At least one 'scope' parameter is required"),
        ("name=x&scope=PIPES:WRITE:cltv_summary", "Invalid scope 'PIPES:WRITE:cltv_summary': this server supports"),
        ("name=x&scope=PIPES:READ", "PIPES:READ needs a resource"),
        ("name=x&scope=PIPES:READ:nope", "there is no pipe called 'nope'"),
        ("name=x&scope=PIPES:READ:customers", "there is no pipe called 'customers'"),
        ("name=x&scope=DATASOURCES:APPEND:cltv_summary", "there is no Data Source called 'cltv_summary'"),
        ("name=x&scope=DATASOURCES:READ:customers:age>1", "SQL filters on scopes"),
        ("name=customer_api_read&scope=ADMIN", "A token called 'customer_api_read' already exists"),
        ("name=%20x&scope=ADMIN", "Invalid token name ' x'"),
    ],
)
def test_bad_create_requests_say_what_is_wrong(start_server, query, message):
    server = start_server()
    response = call(server, "POST", f"/v0/tokens?{query}")
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert "x" not in listed(server)


def test_scopes_in_a_form_body_as_curl_sends_them(start_server):
    server = start_server()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = "name=test&scope=DATASOURCES:APPEND:customers&scope=DATASOURCES:READ:customers"
    response = requests.post(server.url + "/v0/tokens/", data=body, headers={**server.headers(), **form})
    assert response.status_code == 200
    assert response.json()["scopes"] == [
        {"type": "DATASOURCES:APPEND", "resource": "customers"},
        {"type": "DATASOURCES:READ", "resource": "customers"},
    ]


def test_datafile_tokens_keep_their_scopes(start_server):
    server = start_server()
    response = call(server, "PUT", "/v0/tokens/customer_api_read?scope=ADMIN")
    assert response.status_code == 400 and "declared by TOKEN lines" in response.json()["error"]
    admin = call(server, "PUT", "/v0/tokens/admin%20token?scope=PIPES:READ:cltv_summary")
    assert admin.status_code == 400
    assert listed(server)["customer_api_read"]["scopes"] == [{"type": "PIPES:READ", "resource": n} for n in ENDPOINTS]


def test_an_admin_scoped_token_is_an_admin(start_server):
    server = start_server()
    value = create(server, "second_admin", "ADMIN").json()["token"]
    assert reads(server, value, "customer_cltv") == 200
    assert call(server, "GET", "/v0/tokens", value).status_code == 200


def test_the_admin_token_given_to_serve_is_not_refreshed_but_a_generated_one_is(start_server):
    given = start_server()
    refused = call(given, "POST", "/v0/tokens/admin%20token/refresh")
    assert refused.status_code == 400 and "--admin-token" in refused.json()["error"]
    generated = start_server(token=None)
    old = generated.token
    new = call(generated, "POST", "/v0/tokens/admin%20token/refresh").json()["token"]
    assert new != old
    assert reads(generated, old, "cltv_summary") == 403 and reads(generated, new, "cltv_summary") == 200
    assert requests.get(generated.url + "/tokens", timeout=30).json()["workspace_admin_token"] == new


def test_jwt_signed_with_the_admin_token_reads_its_scopes_until_it_expires(start_server):
    server = start_server()
    expires = int(time.time()) + 3600
    scopes = {"scopes": [{"type": "PIPES:READ", "resource": "cltv_summary"}]}
    response = call(server, "POST", f"/v0/tokens?name=my_jwt&expiration_time={expires}", data=json.dumps(scopes))
    assert response.status_code == 200
    value = response.json()["token"]
    claims = jwt.decode(value, server.token, algorithms=["HS256"])
    assert claims == {"workspace_id": "main", "name": "my_jwt", "exp": expires, **scopes}
    assert reads(server, value, "cltv_summary") == 200
    assert reads(server, value, "customer_cltv") == 403
    assert appends(server, value) == 403
    assert "my_jwt" not in listed(server)  # JWTs are not stored
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, server.token, algorithm="HS256")
    refused = call(server, "GET", "/v0/pipes/cltv_summary.json", expired)
    assert refused.status_code == 403 and "expired" in refused.json()["error"]
    forged = jwt.encode(claims, "not-the-admin-token", algorithm="HS256")
    assert reads(server, forged, "cltv_summary") == 403
    pinned = {**claims, "scopes": [{"type": "PIPES:READ", "resource": "cltv_summary", "fixed_params": {"a": 1}}]}
    assert reads(server, jwt.encode(pinned, server.token, algorithm="HS256"), "cltv_summary") == 403
    bad = {"scopes": [{"type": "PIPES:READ", "resource": "cltv_summary", "fixed_params": {"location": "x"}}]}
    refused = call(server, "POST", f"/v0/tokens?name=j&expiration_time={expires}", data=json.dumps(bad))
    assert refused.status_code == 400 and "fixed_params" in refused.json()["error"]
    past = call(server, "POST", "/v0/tokens?name=j&expiration_time=1", data=json.dumps(scopes))
    assert past.status_code == 400 and "in the past" in past.json()["error"]


def test_tokens_survive_a_new_server_on_the_same_data_dir(engine, start_server):
    first = start_server()
    created = create(first, "reader", "PIPES:READ:cltv_summary", "DATASOURCES:APPEND:customers").json()
    refreshed = call(first, "POST", "/v0/tokens/cltv_dashboard/refresh").json()
    before = listed(first)
    first.stop()
    assert stat.S_IMODE((first.data_dir / "tokens.json").stat().st_mode) == 0o600
    second = InProcessServer(engine, first.data_dir).start()
    try:
        after = listed(second)
        assert after == before
        assert after["reader"] == created and after["cltv_dashboard"]["token"] == refreshed["token"]
        assert reads(second, created["token"], "cltv_summary") == 200
        assert appends(second, created["token"], "customers") == 202
        assert reads(second, created["token"], "customer_cltv") == 403
    finally:
        second.stop()


def test_tbkit_tokens_lists_what_the_api_lists(start_server):
    server = start_server()
    create(server, "reader", "PIPES:READ:cltv_summary", "DATASOURCES:READ:customers")
    api = call(server, "GET", "/v0/tokens").json()["tokens"]
    result = CliRunner().invoke(
        cli, ["tokens", "--project", str(ROOT / "tinybird"), "--data-dir", str(server.data_dir)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 * len(api)
    for index, token in enumerate(api):
        scopes = ", ".join(":".join(filter(None, (s["type"], s.get("resource")))) for s in token["scopes"])
        assert lines[2 * index].split() == [*token["name"].split(), *scopes.split()]
        assert lines[2 * index + 1].strip() == token["token"]
    assert "reader                         DATASOURCES:READ:customers, PIPES:READ:cltv_summary" in lines


def test_a_token_is_found_by_its_digest_with_one_comparison(start_server, monkeypatch):
    from tbkit.server.workspaces import registry as workspaces

    server = start_server()
    registry = server.service.registry
    for n in range(20):
        assert create(server, f"many_{n}", "PIPES:READ:customer_cltv").status_code == 200
    compared = []
    real = workspaces.hmac.compare_digest
    monkeypatch.setattr(workspaces.hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b))
    store = registry.main.tokens
    tenant, token = registry.authenticate(store.find("many_7").value)
    assert (tenant, token.name, len(compared)) == (registry.main, "many_7", 1)
    with pytest.raises(workspaces.AuthError):
        registry.authenticate(store.find("many_7").value + "x")
    old = store.find("many_3").value
    store.refresh("many_3")  # changes the value in place: the index follows
    with pytest.raises(workspaces.AuthError):
        registry.authenticate(old)
    assert registry.authenticate(store.find("many_3").value)[1].name == "many_3"
    removed = store.find("many_4").value
    assert reads(server, removed, "customer_cltv") == 200
    store.remove("many_4")
    assert reads(server, removed, "customer_cltv") == 403
