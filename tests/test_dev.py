"""`tbkit dev` and `tbkit check --watch`: rebuild on a save, rerun the affected golden cases, report.

The loop is driven in-process (a batch of changed paths handed to `DevLoop.reload`, or the watcher on a copy
of the project); one test runs the real `tbkit dev` process, because the process is the point there.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tbkit.dev.loop import ChecksState, DevLoop, attach, watch_check
from tbkit.engine import Condition, Workspace, parts
from tbkit.project.layout import Layout
from tbkit.query import Reader
from tbkit.server import ServerConfig, Service
from tbkit.server.thread import BackgroundServer

from .polling import wait_until
from .repo_copy import edit, run
from .serving import ADMIN_TOKEN, free_port

_names = itertools.count()
CLTV_PIPE = Path("tinybird/endpoints/cltv_summary.pipe")
REVENUE = "round(sum(customer_cltv), 2) AS total_revenue"
DOUBLED = "round(sum(customer_cltv) * 2, 2) AS total_revenue"


def _result(endpoint: str, case: str, outcome: str, differences: list[str] | None = None) -> dict:
    return {"endpoint": endpoint, "case": case, "outcome": outcome, "ms": 1.0, "differences": differences or []}


def test_checks_state_keeps_the_latest_outcome_of_every_case():
    state = ChecksState()
    assert state.snapshot()["generation"] == 0
    ids = ["a/one", "a/two", "b/one"]
    state.begin(["tinybird/endpoints/a.pipe"])
    assert state.snapshot()["running"] is True
    state.finish(ids, [_result("a", "one", "passed"), _result("a", "two", "passed"), _result("b", "one", "passed")])
    state.begin(["tinybird/endpoints/b.pipe"])
    state.finish(ids, [_result("b", "one", "failed", ["~ row 1 x changed"])])
    snapshot = state.snapshot()
    assert (snapshot["generation"], snapshot["running"], snapshot["passed"], snapshot["failed"]) == (2, False, 2, 1)
    assert snapshot["changed"] == ["tinybird/endpoints/b.pipe"]
    assert [(r["endpoint"], r["case"], r["outcome"]) for r in snapshot["results"]] == [
        ("a", "one", "passed"),
        ("a", "two", "passed"),
        ("b", "one", "failed"),
    ]
    error = {"file": "tinybird/endpoints/b.pipe", "line": 3, "message": "bad"}
    state.finish(["a/one", "b/one"], [], build_error=error)  # a case removed, a build error
    snapshot = state.snapshot()
    assert [r["case"] for r in snapshot["results"]] == ["one", "one"]
    assert (snapshot["build_error"], snapshot["generation"]) == (error, 3)


def test_the_checks_route_answers_under_dev_only(start_server):
    server = start_server()
    url = server.url + "/v0/tbkit/checks"
    response = requests.get(url, headers=server.headers(), timeout=30)
    assert (response.status_code, response.json()) == (404, {"error": "checks run under `tbkit dev` only"})
    server.service.checks = ChecksState()
    server.service.checks.finish(["a/one"], [_result("a", "one", "passed")])
    assert requests.get(url, timeout=30).status_code == 403
    body = requests.get(url, headers=server.headers(), timeout=30).json()
    assert (body["generation"], body["passed"], body["failed"], body["results"][0]["case"]) == (1, 1, 0, "one")


class DevServer:
    """The dev loop over an in-process server of the `repo` copy, on the session's engine."""

    def __init__(self, engine, root: Path):
        prefix = f"dev{os.getpid()}_{next(_names)}_"
        config = ServerConfig(
            project_dir=root / "tinybird", data_dir=root / ".data", admin_token=ADMIN_TOKEN, database_prefix=prefix
        )
        self.service = Service(config, engine=engine)
        self.failures: list = []
        self.reports: list = []
        self.loop: DevLoop = attach(self.service, Layout.at(), self.failures.append, self.reports.append)
        self.thread = BackgroundServer(self.service).start()

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(self.thread.url + path, params={"token": ADMIN_TOKEN, **params}, timeout=30)

    def reload(self, *paths: Path):
        self.failures.clear()
        return self.loop.reload(paths)

    def close(self) -> None:
        self.thread.stop()
        self.loop.close()
        self.loop.workspace.drop()
        self.service.close()


@pytest.fixture
def dev(repo, engine):
    server = DevServer(engine, repo)
    first = server.loop.run_all()
    assert (first.failed, first.passed) == (0, len(server.loop.cases)) and first.passed > 80
    yield server
    server.close()


def total_revenue(dev) -> float:
    return dev.get("/v0/pipes/cltv_summary.json").json()["data"][0]["total_revenue"]


def test_a_pipe_edit_that_breaks_a_case_is_reported_with_its_diff_then_passes_once_fixed(dev):
    revenue = total_revenue(dev)
    edit(CLTV_PIPE, REVENUE, DOUBLED)
    report = dev.reload(CLTV_PIPE)
    assert report.endpoints == {"cltv_summary"}  # only the edited endpoint's cases ran
    assert [r.case.id for r in dev.failures] == ["cltv_summary/defaults"]
    assert f"total_revenue: {revenue} -> {revenue * 2}" in dev.failures[0].differences[0]
    assert (report.passed, report.failed) == (0, 1)
    assert total_revenue(dev) == revenue * 2  # the server serves the new build
    snapshot = dev.get("/v0/tbkit/checks").json()
    assert (snapshot["failed"], snapshot["passed"]) == (1, len(dev.loop.cases) - 1)
    assert snapshot["changed"] == ["tinybird/endpoints/cltv_summary.pipe"]
    [failing] = [r for r in snapshot["results"] if r["outcome"] == "failed"]
    assert (failing["endpoint"], failing["case"], failing["differences"]) == (
        "cltv_summary",
        "defaults",
        dev.failures[0].differences,
    )
    edit(CLTV_PIPE, DOUBLED, REVENUE)
    report = dev.reload(CLTV_PIPE)
    assert (report.passed, report.failed, dev.failures) == (1, 0, [])
    assert dev.get("/v0/tbkit/checks").json()["failed"] == 0


def test_a_rebuild_goes_live_as_a_deployment_does_through_the_api(dev):
    """The dev loop makes its builds live the one way deployments go live: a new live deployment saying what it
    changed, the one it replaces marked deleted."""
    edit(CLTV_PIPE, REVENUE, DOUBLED)
    dev.reload(CLTV_PIPE)
    listed = dev.get("/v1/deployments", include_deleted="true").json()["deployments"]
    assert [(d["id"], d["status"], d["live"]) for d in listed] == [("0", "deleted", False), ("1", "data_ready", True)]
    assert listed[1]["changed_pipe_names"] == ["cltv_summary"] and listed[1]["new_pipe_names"] == []
    assert [d["id"] for d in dev.get("/v1/deployments").json()["deployments"]] == ["1"]


def test_a_broken_datafile_names_its_file_and_line_and_the_last_good_build_stays_served(dev):
    edit(CLTV_PIPE, REVENUE, DOUBLED)
    dev.reload(CLTV_PIPE)
    doubled = total_revenue(dev)
    edit(CLTV_PIPE, "SQL >", "SQL >>")
    report = dev.reload(CLTV_PIPE)
    line = next(n for n, text in enumerate(CLTV_PIPE.read_text().splitlines(), 1) if "SQL >>" in text)
    assert report.build_error == {
        "file": "tinybird/endpoints/cltv_summary.pipe",
        "line": line,
        "message": "SQL must be multiline (Use > to start a multiline SQL block)",
    }
    assert report.summary().startswith(f"tinybird/endpoints/cltv_summary.pipe:{line}: SQL must be multiline")
    assert total_revenue(dev) == doubled  # still the last good build
    assert dev.get("/v0/tbkit/checks").json()["build_error"] == report.build_error
    # a save of a case file meanwhile does not hide that the datafile is still broken
    assert dev.reload(Path("fixtures/cases/cltv_summary.yaml")).build_error == report.build_error
    edit(CLTV_PIPE, "SQL >>", "SQL >")
    fixed = dev.reload(CLTV_PIPE)  # back to the last good build: nothing to rerun
    assert (fixed.build_error, fixed.results) == (None, [])
    total = len(dev.loop.cases)
    assert fixed.summary().startswith(f"no case affected ({total - 1} passed, 1 failed in all) in ")
    assert dev.get("/v0/tbkit/checks").json()["build_error"] is None


def append(dev, datasource: str, row: str) -> None:
    response = requests.post(
        f"{dev.thread.url}/v0/events", params={"name": datasource, "wait": "true", "token": ADMIN_TOKEN}, data=row
    )
    assert response.json() == {"successful_rows": 1, "quarantined_rows": 0}


def rows(dev, sql: str) -> list[dict]:
    return dev.get("/v0/sql", q=sql + " FORMAT JSON").json()["data"]


def test_a_schema_change_reloads_that_datasource_and_keeps_the_others_data(dev):
    append(dev, "customer_demographics", '{"customer_id": "cust_kept", "age": 40, "location": "Oslo"}')
    append(
        dev,
        "customer_transactions",
        '{"customer_id": "cust_gone", "transaction_date": "2024-01-01 00:00:00", "transaction_amount": 5}',
    )
    datasource = Path("tinybird/datasources/customer_transactions.datasource")
    text = datasource.read_text()
    column = next(line for line in text.splitlines() if "`transaction_amount`" in line)
    edit(datasource, column, column + ",\n    `channel` LowCardinality(String) `json:$.channel` DEFAULT 'web'")
    report = dev.reload(datasource)
    assert report.build_error is None, report.build_error
    # the appended demographics row survived; the transactions were reloaded from their fixture
    assert rows(dev, "SELECT count() AS n FROM customer_demographics WHERE customer_id = 'cust_kept'") == [{"n": 1}]
    assert rows(dev, "SELECT count() AS n FROM customer_transactions WHERE customer_id = 'cust_gone'") == [{"n": 0}]
    assert rows(dev, "SELECT DISTINCT channel FROM customer_transactions") == [{"channel": "web"}]
    # the materialized target fed by both was rebuilt from their rows, the kept one's included
    assert rows(dev, "SELECT count() AS n FROM customer_cltv_mv WHERE customer_id = 'cust_gone'") == [{"n": 0}]
    assert report.endpoints == {"cltv_summary", "customer_cltv", "cltv_by_location"}
    assert report.failed == 0 and report.passed > 0


def test_a_fixture_edit_reruns_the_endpoints_that_read_it(dev):
    fixture = Path("fixtures/customer_demographics.ndjson")
    lines = fixture.read_text().splitlines()
    fixture.write_text("\n".join(lines[1:]) + "\n")  # one customer's demographics gone
    report = dev.reload(fixture)
    # customer_cltv_mv takes its location from the demographics: the three endpoints reading it rerun
    assert report.endpoints == {"cltv_by_location", "cltv_summary", "customer_cltv"}
    assert report.failed > 0  # the golden files hold the removed row
    count = rows(dev, "SELECT count() AS n FROM customer_demographics")
    assert count == [{"n": len(lines) - 1}]


def test_check_watch_reruns_on_a_save_seen_by_the_watcher(repo, engine):
    reports: list = []
    until = threading.Event()
    thread = threading.Thread(
        target=watch_check,
        args=(Layout.at(), lambda r: None, reports.append),
        kwargs={"until": until, "engine": engine},
    )
    thread.start()
    try:
        first = wait_until(lambda: reports, what="the first run")[0]
        assert (first.failed, first.changed) == (0, []) and first.passed > 80
        # an editor's save: a temporary file written, then renamed over the case file
        cases = Path("fixtures/cases/cltv_summary.yaml")
        temporary = cases.with_name(".cltv_summary.yaml.swp")
        temporary.write_text(cases.read_text() + "  - name: added_in_dev\n")
        temporary.rename(cases)
        second = wait_until(lambda: reports[1:], what="the rerun")[0]
        assert second.changed == ["fixtures/cases/cltv_summary.yaml"] and second.endpoints == {"cltv_summary"}
        [failure] = [r for r in second.results if not r.ok]
        assert failure.case.id == "cltv_summary/added_in_dev" and "no golden file" in failure.differences[0]
        assert second.after_save is not None and second.after_save >= 0.1  # the quiet period at least
    finally:
        until.set()
        thread.join(60)
    assert not thread.is_alive() and len(reports) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "local"], "--watch runs on the embedded target only (not local)"),
        (["--update"], "it takes no --update"),
        (["--json"], "it takes no --json"),
    ],
)
def test_check_watch_refuses_what_it_cannot_do(repo, args, message):
    result = run("check", "--watch", *args)
    assert result.exit_code == 2 and message in result.output


def test_the_tbkit_dev_process_prints_every_case_then_reacts_to_a_save(repo):
    port = free_port()
    output = repo / "dev.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tbkit.cli", "dev", "--port", str(port), "--admin-token", ADMIN_TOKEN],
            cwd=repo,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TB_CLI_TELEMETRY_OPTOUT": "1"},
        )
    try:
        text = lambda: output.read_text()  # noqa: E731
        wait_until(lambda: "passed" in text(), what="the first run")
        assert f"✓ serving tinybird on http://127.0.0.1:{port} (data in " in text()
        cases = sum(len(c.read_text().split("- name:")) - 1 for c in Path("fixtures/cases").glob("*.yaml"))
        assert f"{cases} passed, 0 failed: ran {cases} cases of 6 endpoints in " in text()
        checks = requests.get(f"http://127.0.0.1:{port}/v0/tbkit/checks", params={"token": ADMIN_TOKEN}, timeout=30)
        assert (checks.json()["generation"], checks.json()["passed"]) == (1, cases)
        edit(CLTV_PIPE, REVENUE, DOUBLED)
        wait_until(lambda: "after the save" in text(), what="the rerun")
        assert "» changed: tinybird/endpoints/cltv_summary.pipe\n✗ cltv_summary/defaults" in text()
        assert "0 passed, 1 failed: reran 1 case of 1 endpoint in " in text()
        response = requests.get(
            f"http://127.0.0.1:{port}/v0/pipes/cltv_summary.json", params={"token": ADMIN_TOKEN}, timeout=30
        )
        assert response.json()["data"][0]["total_revenue"] == 369561597.3  # the new build is served
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
    assert code == 0, output.read_text()
    data_dir = text().split("(data in ", 1)[1].split(")", 1)[0]
    assert not Path(data_dir).exists()  # the fresh data directory is removed on exit


def test_requests_during_rebuilds_see_the_old_build_or_the_new_one(dev):
    revenue = total_revenue(dev)
    answers: list[tuple[int, float | None]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            response = dev.get("/v0/pipes/cltv_summary.json")
            body = response.json()
            answers.append((response.status_code, body["data"][0]["total_revenue"] if "data" in body else body))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    fixture = Path("fixtures/customer_transactions.ndjson")
    try:
        for _ in range(2):
            edit(CLTV_PIPE, REVENUE, DOUBLED)  # in place: a new project over the same tables
            assert dev.reload(CLTV_PIPE).build_error is None
            fixture.write_text(fixture.read_text() + "\n")  # beside: transactions and customer_cltv_mv reloaded
            assert dev.reload(fixture).build_error is None
            edit(CLTV_PIPE, DOUBLED, REVENUE)
            assert dev.reload(CLTV_PIPE).build_error is None
            fixture.write_text(fixture.read_text() + "\n")
            assert dev.reload(fixture).build_error is None
    finally:
        stop.set()
        for reader in readers:
            reader.join(60)
    assert len(answers) > 10
    assert {status for status, _ in answers} == {200}
    assert {value for _, value in answers} <= {revenue, revenue * 2}


def test_a_broken_golden_file_is_a_build_error_and_irrelevant_files_run_nothing(dev):
    golden = Path("fixtures/golden/cltv_summary/defaults.json")
    golden.write_text('{"status": 200,\n  "data": [}\n')
    report = dev.reload(golden)
    assert (report.build_error["file"], report.build_error["line"]) == (str(golden), 2)
    assert report.build_error["message"].startswith("invalid JSON")
    assert dev.loop.state.snapshot()["running"] is False
    assert dev.reload(Path("tinybird/.endpoints.swp"), Path("README.md"), Path("fixtures/contracts/x.yaml")) is None


def test_a_kept_data_directory_serves_the_last_build_and_its_rows_at_the_next_start(repo, engine):
    server = DevServer(engine, repo)
    try:
        server.loop.run_all()
        append(server, "customer_demographics", '{"customer_id": "cust_kept", "age": 40, "location": "Oslo"}')
        fixture = Path("fixtures/customer_transactions.ndjson")
        fixture.write_text(fixture.read_text() + "\n")
        server.reload(fixture)  # rebuilt beside: served from the second database until the loop closes
        assert server.service.main.workspace.name.endswith("main_b")
    finally:
        server.thread.stop()
        server.loop.close()
        server.service.close()
    config = server.service.config
    again = Service(config, engine=engine)
    try:
        assert again.main.workspace.name == server.loop.base_name
        kept = Condition("customer_demographics", "customer_id = 'cust_kept'")
        assert again.main.workspace.count_where("customer_demographics", kept) == 1
    finally:
        again.main.workspace.drop()
        again.close()


def test_appends_acknowledged_during_rebuilds_are_all_in_the_served_build(dev):
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            customer = f"cust_appended_{len(acknowledged)}"
            append(dev, "customer_demographics", f'{{"customer_id": "{customer}", "age": 40, "location": "Oslo"}}')
            acknowledged.append(customer)

    writer = threading.Thread(target=write)
    writer.start()
    fixture = Path("fixtures/customer_transactions.ndjson")
    try:
        for _ in range(3):  # rebuilt beside: demographics' rows copied, then what was appended meanwhile
            fixture.write_text(fixture.read_text() + "\n")
            assert dev.reload(fixture).build_error is None
    finally:
        stop.set()
        writer.join(60)
    fixture.write_text(fixture.read_text() + "\n")
    dev.reload(fixture)  # carries what was still in flight at the last swap
    found = rows(dev, "SELECT count() AS n FROM customer_demographics WHERE customer_id LIKE 'cust_appended_%'")
    assert len(acknowledged) > 5 and found == [{"n": len(acknowledged)}]
    cltv = "SELECT count() AS n FROM customer_cltv_mv WHERE customer_id LIKE 'cust_appended_%'"
    assert rows(dev, cltv) == [{"n": len(acknowledged)}]  # and through the materialization into its target


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_check_watch_process_stops_on_a_signal(repo, signum):
    output = repo / "watch.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tbkit.cli", "check", "--watch"],
            cwd=repo,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TB_CLI_TELEMETRY_OPTOUT": "1"},
            # as from a shell script's `&`, which ignores SIGINT: the command must still stop on it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        wait_until(lambda: "passed" in output.read_text(), what="the first run")
    finally:
        process.send_signal(signum)
        code = process.wait(60)
    assert code == 0, output.read_text()
    assert "» watching tinybird and fixtures; Ctrl+C to stop" in output.read_text()


def test_rows_appended_while_a_build_copies_a_table_are_carried_exactly_once(engine, project, workspace):
    """An append can land just before ATTACH PARTITION ALL (so the copy holds it) and another just after (so it
    does not): the parts said copied must be exactly those the copy holds, so `copy_parts` carries the second."""
    beside = Workspace(engine, workspace.name + "_b", project)
    beside.build()
    table = "customer_demographics"

    def one(customer: str) -> bytes:
        return f'{{"customer_id": "{customer}", "age": 40, "location": "Oslo"}}\n'.encode()

    workspace.append(table, one("before_the_copy"))
    real_execute = engine.execute
    appending = False

    def around_the_copy(sql, *args, **kwargs):
        nonlocal appending
        if appending or not sql.startswith(f"ALTER TABLE {beside.table(table)} ATTACH PARTITION ALL FROM"):
            return real_execute(sql, *args, **kwargs)
        appending = True
        try:
            workspace.append(table, one("just_before_the_attach"))
            result = real_execute(sql, *args, **kwargs)
            workspace.append(table, one("just_after_the_attach"))
            return result
        finally:
            appending = False

    try:
        engine.execute = around_the_copy
        copied = parts.attach_rows(beside, workspace, table, track=True)
        engine.execute = real_execute
        for name, blocks in copied.items():
            parts.copy_parts(beside, workspace, name, blocks)
        customers = f"SELECT groupArray(customer_id) AS ids FROM (SELECT customer_id FROM {table} ORDER BY 1)"
        both = [json.loads(Reader(ws).sql(customers))["data"][0]["ids"] for ws in (beside, workspace)]
        assert both[0] == both[1] == ["before_the_copy", "just_after_the_attach", "just_before_the_attach"]
    finally:
        engine.execute = real_execute
        parts.resume_merges(workspace, copied if "copied" in locals() else ())
        beside.drop()


def test_a_merge_that_ends_after_the_copy_is_not_copied_again(engine, project, workspace):
    """STOP MERGES does not stop a merge about to commit: one can replace copied parts by a part of a new name
    after the copy. Its blocks were copied, so `copy_parts` carries only the part appended after it."""
    beside = Workspace(engine, workspace.name + "_b", project)
    beside.build()
    table = "customer_demographics"
    source = workspace.table(table)
    for customer in ("first", "second"):
        workspace.append(table, f'{{"customer_id": "{customer}", "age": 40, "location": "Oslo"}}\n'.encode())
    real_execute = engine.execute

    def merge_after_the_copy(sql, *args, **kwargs):
        result = real_execute(sql, *args, **kwargs)
        if sql.startswith(f"ALTER TABLE {beside.table(table)} ATTACH PARTITION ALL FROM"):
            real_execute(f"SYSTEM START MERGES {source}")
            real_execute(f"OPTIMIZE TABLE {source} FINAL")
            real_execute(f"SYSTEM STOP MERGES {source}")
            engine.execute = real_execute
            workspace.append(table, b'{"customer_id": "third", "age": 40, "location": "Oslo"}\n')
        return result

    copied: dict = {}
    try:
        engine.execute = merge_after_the_copy
        copied = parts.attach_rows(beside, workspace, table, track=True)
        engine.execute = real_execute
        assert len(parts.active_parts(workspace, table)) == 2  # the merged part, and the one appended after it
        for name, blocks in copied.items():
            parts.copy_parts(beside, workspace, name, blocks)
        customers = f"SELECT groupArray(customer_id) AS ids FROM (SELECT customer_id FROM {table} ORDER BY 1)"
        assert json.loads(Reader(beside).sql(customers))["data"][0]["ids"] == ["first", "second", "third"]
    finally:
        engine.execute = real_execute
        parts.resume_merges(workspace, copied)
        beside.drop()
