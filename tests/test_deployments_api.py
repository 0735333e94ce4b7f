"""Deployments over HTTP, in-process: `/v1/deploy` (check, auto-promote, staging), `/v1/build`,
`/v1/deployments` (list, status, set-live, discard), on the served (main) workspace as on Cloud's, and the
main workspace's deployment kept across a restart."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests

from tbkit.project.datafiles import load_project
from tbkit.server.workspaces.registry import Registry

from . import ROOT

PIPE = "endpoints/cltv_summary.pipe"
DATASOURCE = "datasources/customer_demographics.datasource"
RENAMED = ("AS average_cltv,", "AS mean_cltv,")  # a changed endpoint: its first column is renamed
WIDER_AGE = ("`age` UInt8", "`age` UInt16")  # a changed datasource: a column's type differs
TRANSACTIONS = [
    {"customer_id": "cust_001", "transaction_date": f"2024-01-0{i} 10:00:00", "transaction_amount": 10.0 * i}
    for i in range(1, 4)
]
DEMOGRAPHICS = [{"customer_id": "cust_001", "age": 40, "location": "Lisbon"}]


def datafiles(changes: dict[str, tuple[str, str]] | None = None) -> list[tuple[str, tuple[str, str, str]]]:
    """The project's datafiles as `tb deploy` uploads them, with (old, new) replacements per file."""
    root = ROOT / "tinybird"
    files = [("context://", ("cli-version", "1.0.0", "text/plain"))]
    for path in sorted([*root.glob("*/*.datasource"), *root.glob("*/*.pipe")]):
        relative = path.relative_to(root).as_posix()
        text = path.read_text()
        if changes and relative in changes:
            old, new = changes[relative]
            assert old in text, f"{old!r} not in {relative}"
            text = text.replace(old, new)
        files.append(("data_project://", (relative, text, "text/plain")))
    return files


def deploy(server, changes=None, **flags) -> requests.Response:
    params = {name: "true" for name, on in flags.items() if on}
    return requests.post(f"{server.url}/v1/deploy", params=params, files=datafiles(changes), headers=server.headers())


def listing(server, include_deleted: bool = False) -> list[tuple[str, str, bool]]:
    params = {"include_deleted": "true"} if include_deleted else {}
    answer = requests.get(f"{server.url}/v1/deployments", params=params, headers=server.headers())
    assert answer.status_code == 200, answer.text
    return [(d["id"], d["status"], d["live"]) for d in answer.json()["deployments"]]


def append(server, datasource: str, rows: list[dict]) -> None:
    body = "\n".join(json.dumps(row) for row in rows)
    answer = requests.post(
        f"{server.url}/v0/events", params={"name": datasource, "wait": "true"}, data=body, headers=server.headers()
    )
    assert answer.json() == {"successful_rows": len(rows), "quarantined_rows": 0}, answer.text


def summary(server) -> dict:
    answer = requests.get(f"{server.url}/v0/pipes/cltv_summary.json", headers=server.headers())
    assert answer.status_code == 200, answer.text
    return answer.json()["data"][0]


def count(server, datasource: str) -> int:
    answer = requests.get(
        f"{server.url}/v0/sql",
        params={"q": f"SELECT count() AS n FROM {datasource} FORMAT JSON"},
        headers=server.headers(),
    )
    return int(answer.json()["data"][0]["n"])


@pytest.fixture
def server(start_server):
    return start_server()


def test_the_served_workspace_starts_with_its_folder_as_live_deployment_0(server):
    assert listing(server) == [("0", "data_ready", True)]
    again = deploy(server, auto_promote=True)
    assert again.json()["result"] == "no_changes"


def test_check_validates_without_applying(server):
    answer = deploy(server, {PIPE: RENAMED}, check=True)
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"] == "success"
    assert body["deployment"]["changed_pipe_names"] == ["cltv_summary"]
    assert body["deployment"]["errors"] == [] and body["deployment"]["new_datasource_names"] == []
    assert listing(server) == [("0", "data_ready", True)]
    assert "average_cltv" in summary(server)


def test_auto_promote_goes_live_and_keeps_the_data_of_unchanged_datasources(server):
    append(server, "customer_transactions", TRANSACTIONS)
    before = summary(server)
    assert before["transactions"] == 3
    answer = deploy(server, {PIPE: RENAMED}, auto_promote=True)
    body = answer.json()
    assert body["result"] == "success", body
    assert body["deployment"]["id"] == "1" and body["deployment"]["live"] is True
    assert "_allow_destructive" not in body["deployment"]
    status = requests.get(f"{server.url}/v1/deployments/1", headers=server.headers()).json()["deployment"]
    assert (status["status"], status["live"], status["changed_pipe_names"]) == ("data_ready", True, ["cltv_summary"])
    assert listing(server) == [("1", "data_ready", True)]
    assert listing(server, include_deleted=True) == [("0", "deleted", False), ("1", "data_ready", True)]
    after = summary(server)
    assert after == {"mean_cltv": before["average_cltv"], **{k: v for k, v in before.items() if k != "average_cltv"}}
    assert deploy(server, {PIPE: RENAMED}, auto_promote=True).json()["result"] == "no_changes"


def test_changing_a_datasource_needs_allow_destructive_operations(server):
    append(server, "customer_transactions", TRANSACTIONS)
    append(server, "customer_demographics", DEMOGRAPHICS)
    for flags in ({"check": True}, {"auto_promote": True}):
        body = deploy(server, {DATASOURCE: WIDER_AGE}, **flags).json()
        assert body["result"] == "failed"
        [error] = body["deployment"]["errors"]
        assert error["filename"] == DATASOURCE
        assert "age UInt8" in error["error"] and "--allow-destructive-operations" in error["error"]
    assert listing(server) == [("0", "data_ready", True)]
    assert count(server, "customer_demographics") == 1
    allowed = deploy(server, {DATASOURCE: WIDER_AGE}, auto_promote=True, allow_destructive_operations=True).json()
    assert allowed["result"] == "success" and allowed["deployment"]["changed_datasource_names"] == [
        "customer_demographics"
    ]
    assert count(server, "customer_demographics") == 0  # recreated empty, as asked
    assert count(server, "customer_transactions") == 3  # unchanged: kept


def test_a_broken_datafile_fails_naming_the_file_and_changes_nothing(server):
    body = deploy(server, {PIPE: ("FROM customer_cltv_mv FINAL", "FROM nowhere FINAL")}, auto_promote=True).json()
    assert body["result"] == "failed"
    [error] = body["deployment"]["errors"]
    assert error["filename"] == PIPE and "'nowhere'" in error["error"]
    assert listing(server) == [("0", "data_ready", True)]


def test_a_staged_deployment_waits_for_promotion(server):
    append(server, "customer_transactions", TRANSACTIONS)
    staged = deploy(server, {PIPE: RENAMED}).json()
    assert staged["result"] == "success"
    assert (staged["deployment"]["id"], staged["deployment"]["live"]) == ("1", False)
    assert listing(server) == [("0", "data_ready", True), ("1", "data_ready", False)]
    assert "average_cltv" in summary(server)  # the live deployment still serves
    refused = deploy(server, {PIPE: ("AS customers,", "AS buyers,")}, auto_promote=True)
    assert refused.status_code == 400
    assert "Deployment #1 is staged" in refused.json()["error"] and "discard" in refused.json()["error"]
    promoted = requests.post(f"{server.url}/v1/deployments/1/set-live", headers=server.headers())
    assert promoted.status_code == 200 and promoted.json()["deployment"]["live"] is True
    assert listing(server) == [("1", "data_ready", True)]
    assert summary(server)["mean_cltv"] is not None and summary(server)["transactions"] == 3
    # `tb deployment promote` then deletes the one it replaced, which is already gone
    old = requests.delete(f"{server.url}/v1/deployments/0", headers=server.headers())
    assert old.status_code == 200 and old.json()["deployment"]["status"] == "deleted"


def test_discarding_a_staged_deployment_keeps_the_live_one(server):
    deploy(server, {PIPE: RENAMED})
    live = requests.delete(f"{server.url}/v1/deployments/0", headers=server.headers())
    assert live.status_code == 400 and "is live" in live.json()["error"]
    discarded = requests.delete(f"{server.url}/v1/deployments/1", headers=server.headers())
    assert discarded.status_code == 200 and discarded.json()["deployment"]["status"] == "deleted"
    assert listing(server) == [("0", "data_ready", True)]
    assert "average_cltv" in summary(server)
    again = requests.post(f"{server.url}/v1/deployments/1/set-live", headers=server.headers())
    assert again.status_code == 400 and "only a staged deployment can be promoted" in again.json()["error"]
    assert not (server.data_dir / "main" / "deployments" / "1").exists()
    assert deploy(server, {PIPE: RENAMED}, auto_promote=True).json()["deployment"]["id"] == "2"


def test_an_unknown_deployment_is_a_404_naming_the_known_ones(server):
    answer = requests.get(f"{server.url}/v1/deployments/42", headers=server.headers())
    assert answer.status_code == 404
    assert "Deployment '42' not found" in answer.json()["error"] and "deployments: 0" in answer.json()["error"]


def test_deployments_need_the_admin_token(server):
    read = next(t.value for t in server.service.main.tokens.tokens if t.name == "customer_api_read")
    for method, path in (("post", "/v1/deploy"), ("get", "/v1/deployments"), ("post", "/v1/deployments/0/set-live")):
        answer = getattr(requests, method)(f"{server.url}{path}", headers=server.headers(read))
        assert answer.status_code == 403, path
        assert "admin token" in answer.json()["error"]


def test_build_rebuilds_the_workspace_with_changed_datasources(server):
    append(server, "customer_demographics", DEMOGRAPHICS)
    files = datafiles({DATASOURCE: WIDER_AGE})
    answer = requests.post(f"{server.url}/v1/build", files=files, headers=server.headers())
    body = answer.json()
    assert body["result"] == "success" and body["build"]["changed_datasource_names"] == ["customer_demographics"]
    assert count(server, "customer_demographics") == 0


def test_the_main_workspace_serves_its_kept_deployment_after_a_restart(server, engine, caplog):
    append(server, "customer_transactions", TRANSACTIONS)
    assert deploy(server, {PIPE: RENAMED}, auto_promote=True).json()["result"] == "success"
    data_dir: Path = server.data_dir
    assert (data_dir / "main" / "project" / PIPE).read_text().count("AS mean_cltv,") == 1
    folder_project = load_project(ROOT / "tinybird")
    prefix = server.service.config.database_prefix
    with caplog.at_level(logging.WARNING, logger="tbkit.server"):
        restarted = Registry.open(engine, data_dir, folder_project, server.token, prefix)
    main = restarted.main
    assert "mean_cltv" in main.reader.endpoint("cltv_summary")["data"][0]
    assert main.workspace.row_count("customer_transactions") == 3
    assert [(d.id, d.live) for d in main.all_deployments()] == [("0", False), ("1", True)]
    [warning] = [r.getMessage() for r in caplog.records if "main workspace" in r.getMessage()]
    assert "serving deployment #1" in warning and "pipes changed: cltv_summary" in warning
    assert f"remove {data_dir / 'main'}" in warning
    # the way back to the folder: remove <data-dir>/main (what from_project does)
    reset = Registry.open(engine, data_dir, folder_project, server.token, prefix, from_project=True)
    assert "average_cltv" in reset.main.reader.endpoint("cltv_summary")["data"][0]
    assert reset.main.all_deployments()[0].id == "0" and not (data_dir / "main").exists()
    assert reset.main.workspace.row_count("customer_transactions") == 3
