"""The Jobs API, the Environment Variables API (`tb secret`), connectors and the workspace, in-process.

Shapes as Tinybird answers them and as `tb job|secret|connection|info` reads them, the admin token they
need, secrets kept per workspace in the data directory (mode 0600) across a restart, and the clear
refusals of everything that needs a real connector.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import requests

from tbkit.server.workspaces.secrets import SECRETS_FILE

from .serving import InProcessServer
from .test_deployments_api import deploy

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ROWS = b'{"customer_id":"c1","age":30,"location":"Madrid"}\n{"customer_id":"c2","age":41,"location":"Paris"}\n'


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """A server with the Local API on, shared by this module's tests (each uses names of its own)."""
    running = InProcessServer(engine, tmp_path_factory.mktemp("jobs_vars") / "data", local_api=True).start()
    yield running
    running.stop()


def call(server, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {**server.headers(token), **kwargs.pop("headers", {})}
    return requests.request(method, server.url + path, headers=headers, timeout=60, **kwargs)


def read_token(server) -> str:
    """A token of the main workspace that can only read (an endpoint's READ token)."""
    return next(t.value for t in server.service.main.tokens.tokens if not t.admin and not t.user)


def other_workspace_token(server, name: str) -> str:
    """The admin token of another workspace, made through the Local API."""
    user_token = requests.get(server.url + "/tokens", timeout=30).json()["user_token"]
    created = requests.post(server.url + "/v1/workspaces", params={"name": name, "token": user_token}, timeout=60)
    assert created.status_code == 200, created.text
    return server.service.registry.find(name).tokens.admin.value


def append(server) -> dict:
    response = call(server, "POST", "/v1/datasources/customer_demographics/append?format=ndjson", data=ROWS)
    assert response.status_code == 200, response.text
    return response.json()


# -- jobs ----------------------------------------------------------------------------------------------


def test_an_append_is_a_done_import_job_listed_and_detailed_in_tinybirds_shape(server):
    job_id = append(server)["job_id"]

    listing = call(server, "GET", "/v0/jobs")
    assert listing.status_code == 200
    listed = next(job for job in listing.json()["jobs"] if job["id"] == job_id)
    # `tb job ls` prints id, kind, status, created at, updated at, job url
    assert set(listed) == {"id", "kind", "status", "created_at", "updated_at", "job_url", "datasource"}
    assert (listed["kind"], listed["status"]) == ("import", "done")
    assert listed["job_url"] == f"{server.url}/v0/jobs/{job_id}"
    assert listed["datasource"] == {
        "id": server.service.main.resource_id("customer_demographics"),
        "name": "customer_demographics",
    }
    assert len(listed["created_at"]) == len("2024-07-22 11:47:58.207606")

    details = call(server, "GET", f"/v0/jobs/{job_id}").json()
    assert details["id"] == details["job_id"] == details["import_id"] == job_id
    assert details["status"] == "done" and details["is_cancellable"] is False
    assert details["mode"] == "append"
    assert details["statistics"]["row_count"] == 2
    assert (details["quarantine_rows"], details["invalid_lines"]) == (0, 0)
    assert details["created_at"] <= details["started_at"] <= details["updated_at"]
    assert details["job_url"] == listed["job_url"]


def test_jobs_are_listed_newest_first_and_filtered_as_tb_job_ls_asks(server):
    first, second = append(server)["job_id"], append(server)["job_id"]
    ids = [job["id"] for job in call(server, "GET", "/v0/jobs").json()["jobs"]]
    assert ids.index(second) < ids.index(first)

    def listed(**params) -> list[str]:
        response = call(server, "GET", "/v0/jobs", params=params)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["jobs"]]

    assert second in listed(status="done", kind="import")
    assert listed(status="error") == []
    assert listed(kind="populateview") == []
    assert listed(created_after="2999-01-01T00:00:00Z") == []
    assert second in listed(created_before="2999-01-01T00:00:00Z")
    assert listed(pipe_name="customer_cltv") == []  # appends belong to no pipe


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({"status": "finished"}, "Invalid status 'finished': expected one of waiting, working, done"),
        ({"created_after": "yesterday"}, "Invalid created_after 'yesterday': expected an ISO 8601 date"),
    ],
)
def test_bad_job_filters_are_400_naming_the_parameter(server, params, phrase):
    response = call(server, "GET", "/v0/jobs", params=params)
    assert response.status_code == 400
    assert phrase in response.json()["error"]


def test_cancelling_or_retrying_a_done_job_is_tinybirds_400_and_unknown_jobs_404(server):
    job_id = append(server)["job_id"]
    cancel = call(server, "POST", f"/v0/jobs/{job_id}/cancel")
    assert cancel.status_code == 400
    assert cancel.json()["error"] == f"Job is not in cancellable status: job '{job_id}' is done"
    retry = call(server, "POST", f"/v0/jobs/{job_id}/retry")
    assert retry.status_code == 400 and "only jobs in error can be retried" in retry.json()["error"]
    assert call(server, "GET", f"/v0/jobs/{job_id}").json()["status"] == "done"  # unchanged

    for method, path in [("GET", "/v0/jobs/no-such-job"), ("POST", "/v0/jobs/no-such-job/cancel")]:
        missing = call(server, method, path)
        assert missing.status_code == 404
        assert missing.json() == {"error": "Job with id 'no-such-job' not found (jobs are kept for 48 hours)"}


def test_jobs_need_the_admin_token_of_their_own_workspace(server):
    job_id = append(server)["job_id"]
    read = read_token(server)
    for method, path in [("GET", "/v0/jobs"), ("GET", f"/v0/jobs/{job_id}"), ("POST", f"/v0/jobs/{job_id}/cancel")]:
        response = call(server, method, path, token=read)
        assert response.status_code == 403, (method, path)
        assert "admin token" in response.json()["error"]

    other = other_workspace_token(server, "jobs_other_workspace")
    assert call(server, "GET", "/v0/jobs", token=other).json() == {"jobs": []}
    foreign = call(server, "GET", f"/v0/jobs/{job_id}", token=other)
    assert foreign.status_code == 403 and "another workspace" in foreign.json()["error"]


# -- variables (secrets) -------------------------------------------------------------------------------


def secrets_file(server, tenant=None) -> Path:
    return (tenant or server.service.main).folder / SECRETS_FILE


def test_secrets_are_created_listed_updated_and_deleted_without_ever_showing_a_value(server):
    created = call(server, "POST", "/v0/variables", data={"name": "pg_password", "value": "hunter2"}, headers=FORM)
    assert created.status_code == 200, created.text
    secret = created.json()
    assert set(secret) == {"name", "type", "created_at", "updated_at", "edited_by"}
    assert (secret["name"], secret["type"], secret["edited_by"]) == ("pg_password", "secret", "token: 'admin token'")
    assert secret["created_at"] == secret["updated_at"]

    listed = call(server, "GET", "/v0/variables").json()["variables"]
    assert [s for s in listed if s["name"] == "pg_password"] == [secret]
    assert call(server, "GET", "/v0/variables/pg_password").json() == secret

    updated = call(server, "PUT", "/v0/variables/pg_password", data={"value": "correct horse"}, headers=FORM)
    assert updated.status_code == 200
    assert updated.json()["created_at"] == secret["created_at"]
    assert "hunter2" not in created.text + updated.text and "correct horse" not in updated.text
    stored = json.loads(secrets_file(server).read_text())["secrets"]["pg_password"]
    assert stored["value"] == "correct horse"

    assert call(server, "DELETE", "/v0/variables/pg_password").json() == {"ok": True}
    assert call(server, "GET", "/v0/variables/pg_password").status_code == 404
    assert "pg_password" not in json.loads(secrets_file(server).read_text())["secrets"]


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "phrase"),
    [
        ("POST", "/v0/variables", {"value": "v"}, 400, "missing name: the 'name' parameter is required"),
        ("POST", "/v0/variables", {"name": "no_value"}, 400, "missing value: the 'value' parameter is required"),
        ("POST", "/v0/variables", {"name": "bad name", "value": "v"}, 400, "Invalid secret name 'bad name'"),
        ("POST", "/v0/variables", {"name": "t", "value": "v", "type": "plain"}, 400, "supported variable types are"),
        ("POST", "/v0/variables", {"name": "big", "value": "x" * 8193}, 400, "Variable maximum size is 8KB"),
        ("PUT", "/v0/variables/never_made", {"value": "v"}, 404, "Variable 'never_made' not found"),
        ("PUT", "/v0/variables/never_made", {}, 400, "missing value"),
        ("PUT", "/v0/variables/never_made", {"value": "v", "type": "secret"}, 400, "type cannot be changed"),
        ("DELETE", "/v0/variables/never_made", None, 404, "Variable 'never_made' not found"),
        ("GET", "/v0/variables/never_made", None, 404, "Variable 'never_made' not found"),
    ],
)
def test_bad_secret_requests_are_refused_with_what_was_expected(server, method, path, data, status, phrase):
    response = call(server, method, path, data=data, headers=FORM)
    assert response.status_code == status, response.text
    assert phrase in response.json()["error"]


def test_a_secret_name_is_taken_once(server):
    first = call(server, "POST", "/v0/variables", data={"name": "api_key", "value": "one"}, headers=FORM)
    assert first.status_code == 200
    again = call(server, "POST", "/v0/variables", data={"name": "api_key", "value": "two"}, headers=FORM)
    assert again.status_code == 400
    assert again.json()["error"].startswith("Variable 'api_key' already exists: update it with PUT")
    assert json.loads(secrets_file(server).read_text())["secrets"]["api_key"]["value"] == "one"


def test_secrets_need_the_admin_token_and_belong_to_one_workspace(server):
    read = read_token(server)
    for method, path in [("GET", "/v0/variables"), ("POST", "/v0/variables"), ("DELETE", "/v0/variables/x")]:
        response = call(server, method, path, token=read, data={"name": "x", "value": "y"}, headers=FORM)
        assert response.status_code == 403, (method, path)

    call(server, "POST", "/v0/variables", data={"name": "main_only", "value": "m"}, headers=FORM)
    other = other_workspace_token(server, "secrets_other_workspace")
    assert call(server, "GET", "/v0/variables", token=other).json() == {"variables": []}
    assert call(server, "GET", "/v0/variables/main_only", token=other).status_code == 404
    made = call(server, "POST", "/v0/variables", token=other, data={"name": "main_only", "value": "o"}, headers=FORM)
    assert made.status_code == 200  # the same name in another workspace is another secret
    tenant = server.service.registry.find("secrets_other_workspace")
    assert json.loads(secrets_file(server, tenant).read_text())["secrets"]["main_only"]["value"] == "o"
    assert json.loads(secrets_file(server).read_text())["secrets"]["main_only"]["value"] == "m"


def test_secrets_are_private_files_that_survive_a_restart(engine, tmp_path):
    data_dir = tmp_path / "data"
    first = InProcessServer(engine, data_dir, local_api=True).start()
    try:
        for name in ("kafka_secret", "s3_role"):
            made = call(first, "POST", "/v0/variables", data={"name": name, "value": name + "-value"}, headers=FORM)
            assert made.status_code == 200
        listed = call(first, "GET", "/v0/variables").json()
        path = secrets_file(first)
    finally:
        first.stop()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".secrets.*"))  # no temporary file left behind

    second = InProcessServer(engine, data_dir, local_api=True).start()
    try:
        assert call(second, "GET", "/v0/variables").json() == listed
        assert [s["name"] for s in listed["variables"]] == ["kafka_secret", "s3_role"]
    finally:
        second.stop()


# -- connectors ----------------------------------------------------------------------------------------


def test_connections_are_an_empty_list_in_tinybirds_shape(server):
    assert call(server, "GET", "/v0/connectors").json() == {"connectors": []}
    assert call(server, "GET", "/v0/connectors", params={"service": "kafka"}).json() == {"connectors": []}
    assert call(server, "GET", "/v0/connectors", token=read_token(server)).status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "status", "phrase"),
    [
        ("POST", "/v0/connectors?service=kafka", 501, "Cannot create a kafka connection: this embedded server"),
        ("GET", "/v0/connectors/abc", 404, "Connector 'abc' not found: this embedded server (tbkit serve) has no"),
        ("GET", "/v0/connectors/abc/preview?preview_activity=false", 404, "Connector 'abc' not found"),
        ("DELETE", "/v0/connectors/abc", 404, "Connector 'abc' not found"),
        ("GET", "/v0/integrations/s3/settings", 501, "The s3 integration is not available: this embedded server"),
        ("POST", "/v1/integrations/dynamodb/validate", 501, "The dynamodb integration is not available"),
        ("POST", "/v0/datasources/customers/sample", 501, "Cannot sample the Data Source 'customers'"),
        ("POST", "/v0/datasources/customers/scheduling/runs", 501, "Cannot sync or schedule the Data Source"),
        ("GET", "/v0/datasources/customers/scheduling/state", 501, "Cannot sync or schedule the Data Source"),
        ("POST", "/v0/datasources/nope/sample", 404, "Data Source 'nope' not found"),
        ("POST", "/v0/datasources/{customers_id}/scheduling/runs", 501, "Data Source 'customers', which"),
    ],
)
def test_what_needs_a_connector_says_where_connectors_are(server, method, path, status, phrase):
    path = path.format(customers_id=server.service.main.resource_id("customers"))  # `tb datasource sync` sends ids
    response = call(server, method, path, data="")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert phrase in error
    if status == 501:
        assert "Use Tinybird Cloud (`tb --cloud ...`) or the Tinybird Local container" in error


# -- workspace -----------------------------------------------------------------------------------------


def test_the_current_workspace_has_the_fields_tb_reads_and_no_token(server):
    for version in ("v0", "v1"):
        answer = call(server, "GET", f"/{version}/workspace")
        assert answer.status_code == 200
        assert answer.json() == {
            "id": "main",
            "name": "main",
            "plan": "dev",
            "is_forward": True,
            "is_branch": False,
            "main": None,
        }
    read = call(server, "GET", "/v1/workspace", token=read_token(server))
    assert read.status_code == 200 and read.json()["name"] == "main"
    assert server.token not in read.text


def test_an_endpoint_reads_a_secret_through_tb_secret_and_its_default_until_it_is_set(start_server):
    server = start_server()  # a server of its own: this test deploys a changed endpoint

    change = {
        "endpoints/cltv_summary.pipe": (
            "SELECT\n        round(if(count() = 0, 0, avg(customer_cltv)), 2) AS average_cltv,",
            "%\n    SELECT\n        {{ tb_secret('CURRENCY', 'USD') }} AS currency,\n"
            "        round(if(count() = 0, 0, avg(customer_cltv)), 2) AS average_cltv,",
        )
    }
    assert deploy(server, change, auto_promote="true").json()["result"] == "success"

    def currency() -> str:
        answer = requests.get(f"{server.url}/v0/pipes/cltv_summary.json", headers=server.headers())
        assert answer.status_code == 200, answer.text
        return answer.json()["data"][0]["currency"]

    assert currency() == "USD"
    created = requests.post(
        f"{server.url}/v0/variables", data={"name": "CURRENCY", "value": "EUR'"}, headers=server.headers()
    )
    assert created.status_code == 200, created.text
    assert currency() == "EUR'"  # the value is quoted, never spliced into the SQL
    requests.delete(f"{server.url}/v0/variables/CURRENCY", headers=server.headers())
    assert currency() == "USD"
