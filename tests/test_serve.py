"""`tbkit serve`: the seeds' curl calls, status codes, tokens and checks in-process; restart as a real process."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import stat
import subprocess
import sys

import pytest
import requests
from openapi_spec_validator import validate

from . import ENDPOINTS, ROOT
from .serving import InProcessServer, ServerProcess

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends
SEED_EVENTS = [
    (
        "/v0/events?name=customers",
        '{"customer_id": "cust123", "name": "John Doe", "email": "john.doe@example.com", "age": 35, "gender": "male", '
        '"location": "New York", "signup_date": "2022-05-15 10:30:00", "lifetime_value": 750.50, '
        '"timestamp": "2023-10-01 12:00:00"}',
    ),
    (
        "/v0/events?name=customer_events",
        '{"event_id": "evt456", "customer_id": "cust123", "event_type": "purchase", "event_value": 125.99, '
        '"product_id": "prod789", "category": "electronics", "timestamp": "2023-10-02 15:45:00"}',
    ),
    (
        "/v0/events?name=customer_demographics&utm_source=DEV&utm_campaign=tb+create+--prompt+DEV",
        '{"customer_id":"cust123","age":35,"location":"New York"}',
    ),
    (
        "/v0/events?name=customer_transactions&utm_source=DEV&utm_campaign=tb+create+--prompt+DEV",
        '{"customer_id":"cust123","transaction_date":"2023-01-15 14:30:00","transaction_amount":125.50}',
    ),
]


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """A server with the seeds' events, shared by the read-only tests of this module."""
    running = InProcessServer(engine, tmp_path_factory.mktemp("serve") / "data").start()
    for path, body in SEED_EVENTS:
        response = requests.post(running.url + path, data=body, headers={**running.headers(), **FORM})
        assert (response.status_code, response.json()) == (202, {"successful_rows": 1, "quarantined_rows": 0})
    yield running
    running.stop()


def get(server, path: str, token: str | bool | None = None, **params) -> requests.Response:
    """GET with the admin token, another token, an empty one (""), or none at all (False)."""
    if token is not False:
        params["token"] = server.token if token is None else token
    return requests.get(server.url + path, params=params, timeout=30)


def sql(server, q: str) -> list[dict]:
    response = get(server, "/v0/sql", q=q)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_the_seed_lookup_answers_with_john_doe(server):
    body = get(server, "/v0/pipes/customer_segment_lookup.json", customer_id="cust123").json()
    [row] = body["data"]
    assert (row["name"], row["lifetime_value"], row["value_segment"]) == ("John Doe", 750.5, "High Value")
    assert row["loyalty_segment"] == "Loyal"  # signed up 2022-05-15, more than 730 days ago
    assert (row["total_events"], row["purchases"], row["purchase_value"]) == (1, 1, 125.99)
    assert (row["last_event_at"], row["activity_level"]) == ("2023-10-02 15:45:00", "Dormant")
    assert set(body) >= {"meta", "data", "rows", "statistics"}


def test_the_seed_engagement_summary_and_cltv_calls(server):
    engagement = get(
        server,
        "/v0/pipes/customer_engagement_analysis.json",
        event_type="purchase",
        start_date="2023-01-01 00:00:00",
        end_date="2023-12-31 23:59:59",
        limit="50",
    ).json()
    assert [(r["customer_id"], r["total_events"], r["total_event_value"]) for r in engagement["data"]] == [
        ("cust123", 1, 125.99)
    ]
    assert engagement["rows_before_limit_at_least"] == 1
    summary = get(server, "/v0/pipes/customer_segments_summary.json", location="New York", min_age="25", max_age="45")
    assert summary.json()["data"] == [
        {
            "value_segment": "High Value",
            "loyalty_segment": "Loyal",
            "customers": 1,
            "avg_lifetime_value": 750.5,
            "total_lifetime_value": 750.5,
        }
    ]
    cltv = get(server, "/v0/pipes/cltv_summary.json").json()["data"]
    assert cltv == [{"average_cltv": 125.5, "customers": 1, "transactions": 1, "total_revenue": 125.5}]
    assert get(server, "/v0/pipes/cltv_by_location.json").json()["data"] == [
        {"location": "New York", "customers": 1, "average_cltv": 125.5, "total_cltv": 125.5}
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_binary_itself(server):
    url = f"{server.url}/v0/pipes/customer_cltv.json?customer_id=CUST123&token={server.token}"
    out = subprocess.run(["curl", "-s", "-X", "GET", url], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["data"][0]["cltv"] == 125.5
    post = subprocess.run(
        [
            "curl",
            "-s",
            "-X",
            "POST",
            f"{server.url}/v0/events?name=customer_demographics",
            "-H",
            f"Authorization: Bearer {server.token}",
            "-d",
            '{"customer_id":"curl_1","age":40,"location":"Austin"}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(post) == {"successful_rows": 1, "quarantined_rows": 0}


def test_csv_and_ndjson_formats(server):
    csv = get(server, "/v0/pipes/cltv_summary.csv")
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == '"average_cltv","customers","transactions","total_revenue"'
    ndjson = get(server, "/v0/pipes/cltv_summary.ndjson")
    assert json.loads(ndjson.text.splitlines()[0])["customers"] == 1


@pytest.mark.parametrize(
    ("path", "params", "status", "phrase"),
    [
        ("/v0/pipes/customer_cltv.json", {}, 400, "customer_id"),
        ("/v0/pipes/customer_engagement_analysis.json", {"limit": "0"}, 400, "limit"),
        ("/v0/pipes/customer_segments_summary.json", {"min_age": "old"}, 400, "UInt8"),
        ("/v0/pipes/nope.json", {}, 404, "nope"),
        ("/v0/nothing/here", {}, 404, "Not found"),
        ("/v0/sql", {"q": "DROP TABLE customers"}, 400, "only SELECT"),
        ("/v0/sql", {"q": "SELECT * FROM system.tables"}, 404, "system.tables"),
        ("/v0/sql", {}, 400, "'q'"),
    ],
)
def test_errors_have_tinybirds_shape_and_status(server, path, params, status, phrase):
    response = get(server, path, **params)
    assert response.status_code == status
    assert phrase in response.json()["error"]


@pytest.mark.parametrize(
    ("query", "headers", "data", "status", "phrase"),
    [
        ("", {}, "{}", 400, "'name'"),
        ("?name=nope", {}, "{}", 404, "nope"),
        ("?name=customers", {"Content-Type": "application/xml"}, "<a/>", 400, "Content-Type"),
        ("?name=customers", {"Content-Encoding": "gzip"}, "not gzip", 400, "gzip"),
        ("?name=customers", {}, "x" * (10 * 1024 * 1024 + 1), 413, "limit"),
    ],
)
def test_events_api_errors(server, query, headers, data, status, phrase):
    before = sql(server, "SELECT count() AS n FROM customers")
    response = requests.post(f"{server.url}/v0/events{query}", data=data, headers={**server.headers(), **headers})
    assert response.status_code == status
    assert phrase in response.json()["error"]
    assert sql(server, "SELECT count() AS n FROM customers") == before


@pytest.mark.parametrize(
    ("token", "message"), [(False, "token is required"), ("wrong", "Invalid token"), ("", "token is required")]
)
def test_missing_or_wrong_tokens_are_403(server, token, message):
    response = get(server, "/v0/pipes/cltv_summary.json", token=token)
    assert response.status_code == 403
    assert message in response.json()["error"]
    posted = requests.post(f"{server.url}/v0/events?name=customers", data="{}", headers=server.headers(token or "x"))
    assert posted.status_code == 403


def test_gzip_bodies_and_wait_true(server):
    body = gzip.compress(b'{"customer_id":"gz_1","age":30,"location":"Boston"}\n{"customer_id":"gz_2"}\n')
    response = requests.post(
        f"{server.url}/v0/events?name=customer_demographics&wait=true",
        data=body,
        headers={**server.headers(), "Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"},
    )
    assert (response.status_code, response.json()) == (200, {"successful_rows": 1, "quarantined_rows": 1})
    sniffed = requests.post(  # no Content-Encoding: gzip is recognised by its first bytes
        f"{server.url}/v0/events?name=customer_demographics&wait=true", data=body, headers=server.headers()
    )
    assert (sniffed.status_code, sniffed.json()) == (200, {"successful_rows": 1, "quarantined_rows": 1})


def test_a_body_that_only_looks_gzip_is_taken_as_sent(server):
    """Lines whose first bytes happen to be gzip's, with no Content-Encoding claiming gzip: quarantined, not refused."""
    body = b'\x1f\x8b not json\n{"customer_id":"looks_gz","age":30,"location":"Boston"}\n'
    response = requests.post(
        f"{server.url}/v0/events?name=customer_demographics&wait=true", data=body, headers=server.headers()
    )
    assert (response.status_code, response.json()) == (200, {"successful_rows": 1, "quarantined_rows": 1})


@pytest.mark.parametrize(
    "datasource", ["customers", "customer_events", "customer_transactions", "customer_demographics"]
)
def test_malformed_fixtures_land_in_quarantine_with_counts_that_add_up(server, datasource):
    path = ROOT / "fixtures" / "malformed" / f"{datasource}.ndjson"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    before = sql(server, f"SELECT count() AS n FROM {datasource}_quarantine")[0]["n"]
    response = requests.post(
        f"{server.url}/v0/events?name={datasource}&wait=true", data=path.read_bytes(), headers=server.headers()
    )
    result = response.json()
    assert response.status_code == 200
    assert result["successful_rows"] + result["quarantined_rows"] == len(lines)
    assert result["successful_rows"] == 1
    after = sql(server, f"SELECT count() AS n FROM {datasource}_quarantine")[0]["n"]
    assert after - before == result["quarantined_rows"]
    errors = sql(server, f"SELECT c__error FROM {datasource}_quarantine WHERE notEmpty(c__error) LIMIT 1")
    assert errors and errors[0]["c__error"]


def test_datasources_api_appends_ndjson_and_csv_uploads(server):
    ndjson = b'{"customer_id":"up_1","age":41,"location":"Austin"}\n{"customer_id":"up_2","age":"x","location":"A"}\n'
    response = requests.post(
        f"{server.url}/v0/datasources",
        params={"name": "customer_demographics", "mode": "append", "format": "ndjson"},
        files={"ndjson": ("demographics.ndjson", ndjson)},
        headers=server.headers(),
    )
    assert response.status_code == 200, response.text
    assert (response.json()["successful_rows"], response.json()["quarantined_rows"]) == (1, 1)
    csv = b"customer_id,age,location\nup_3,52,Denver\nup_4,53,Denver\n"
    response = requests.post(
        f"{server.url}/v0/datasources?name=customer_demographics&mode=append&format=csv",
        files={"csv": ("demographics.csv", csv)},
        headers=server.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["successful_rows"] == 2
    assert sql(server, "SELECT count() AS n FROM customer_demographics WHERE location = 'Denver'") == [{"n": 2}]


def test_openapi_document_is_valid_openapi_3(server):
    response = get(server, "/v0/pipes/openapi.json")
    document = response.json()
    validate(document)
    assert sorted(document["paths"]) == sorted(f"/v0/pipes/{name}.json" for name in ENDPOINTS)
    lookup = document["paths"]["/v0/pipes/customer_segment_lookup.json"]["get"]
    customer_id = next(p for p in lookup["parameters"] if p["name"] == "customer_id")
    assert customer_id["required"] is True and customer_id["description"]
    rows = lookup["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]["items"]
    assert rows["properties"]["last_event_at"] == {"type": "string", "nullable": True}
    limit = document["paths"]["/v0/pipes/customer_engagement_analysis.json"]["get"]["parameters"]
    assert next(p for p in limit if p["name"] == "limit")["schema"]["default"] == 100


def tokens_of(data_dir) -> dict:
    return json.loads((data_dir / "tokens.json").read_text())


def test_scoped_tokens_do_only_what_their_scope_allows(server):
    tokens = tokens_of(server.data_dir)["tokens"]
    read, append = tokens["customer_api_read"], tokens["customer_events_append"]
    assert get(server, "/v0/pipes/cltv_summary.json", token=read).status_code == 200
    assert get(server, "/v0/pipes/cltv_summary.json", token=append).status_code == 403
    event = '{"event_id":"t1","customer_id":"c","event_type":"login","timestamp":"2025-01-01 00:00:00"}'
    posted = requests.post(f"{server.url}/v0/events?name=customer_events", data=event, headers=server.headers(append))
    assert posted.status_code == 202
    refused = requests.post(f"{server.url}/v0/events?name=customer_events", data=event, headers=server.headers(read))
    assert refused.status_code == 403 and "APPEND" in refused.json()["error"]
    other = requests.post(f"{server.url}/v0/events?name=customers", data="{}", headers=server.headers(append))
    assert other.status_code == 403
    assert get(server, "/v0/sql", token=append, q="SELECT 1 FROM customers").status_code == 403


def test_tokens_file_is_private(server):
    mode = stat.S_IMODE((server.data_dir / "tokens.json").stat().st_mode)
    assert mode == 0o600


def test_restart_finds_the_same_data_and_tokens(tmp_path):
    first = ServerProcess(tmp_path / "data", token=None).start()
    admin = tokens_of(first.data_dir)["admin"]
    first.token = admin
    path, body = SEED_EVENTS[3]
    assert requests.post(first.url + path + "&wait=true", data=body, headers=first.headers()).status_code == 200
    saved = tokens_of(first.data_dir)
    assert first.stop() == 0
    second = ServerProcess(tmp_path / "data", token=None).start()
    try:
        second.token = admin
        assert tokens_of(second.data_dir) == saved
        assert get(second, "/v0/pipes/customer_cltv.json", customer_id="cust123").json()["data"][0]["cltv"] == 125.5
    finally:
        assert second.stop() == 0


def test_check_against_the_server_passes_every_case(start_server):
    running = start_server()
    result = subprocess.run(
        [sys.executable, "-m", "tbkit.cli", "check", "--target", running.url, "--token", running.token, "--seed"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed, 0 failed" in result.stdout and f"on {running.url}" in result.stdout


def test_the_local_api_is_on_by_default_on_loopback_only():
    from tbkit.server import ServerConfig

    assert ServerConfig(host="127.0.0.1").serves_local_api
    assert ServerConfig(host="localhost").serves_local_api
    assert not ServerConfig(host="0.0.0.0").serves_local_api
    assert not ServerConfig(host="127.0.0.1", local_api=False).serves_local_api
    assert ServerConfig(host="0.0.0.0", local_api=True).serves_local_api


def test_with_the_local_api_off_tb_is_told_how_to_turn_it_on(start_server):
    running = start_server(local_api=False)
    tokens = requests.get(running.url + "/tokens").json()
    assert set(tokens) == {"user_token", "admin_token", "workspace_admin_token"}  # what tb reads first
    for path in ("/v1/user/workspaces", "/v0/datasources"):
        answer = requests.get(running.url + path, params={"token": tokens["user_token"]})
        assert answer.status_code == 403
        assert "tbkit serve --local-api" in answer.json()["error"]
    assert requests.get(running.url + "/v0/pipes/cltv_summary.json", headers=running.headers()).status_code == 200


def test_every_path_the_server_answers_is_a_line_of_the_route_table(server):
    """Endpoint calls included: the server serves the application of `routes()`, with nothing in front of it."""
    import tornado.web

    from tbkit.server.app import routes
    from tbkit.server.views.endpoints import EndpointCalls

    assert isinstance(server._thread._server.request_callback, tornado.web.Application)

    def target(path: str) -> type:
        return next(t for pattern, t in routes(True) if re.fullmatch(pattern, path))

    assert target("/v0/pipes/customer_cltv.json") is EndpointCalls
    assert target("/v0/pipes/customer_cltv.ndjson") is EndpointCalls
    assert target("/v0/pipes/openapi.json").__name__ == "OpenApiHandler"
    assert target("/v0/pipes/customer_cltv/explain").__name__ == "ExplainHandler"
    answer = requests.get(
        f"{server.url}/v0/pipes/customer_cltv.json",
        params={"customer_id": "cust123"},
        headers=server.headers(),
        timeout=30,
    )
    assert answer.status_code == 200 and answer.headers["Server-Timing"].startswith("engine;dur=")
