"""`tbkit dev` and `tbkit check --watch`: rebuild on a save, rerun the affected golden cases, report.

The loop is driven in-process (a batch of changed paths handed to `DevLoop.reload`, or the watcher on a copy
of the project); one test runs the real `tbkit dev` process, because the process is the point there.
"""

from __future__ import annotations

import requests

from tbkit.dev import ChecksState


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
