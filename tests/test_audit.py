"""`tbkit audit`: every materialized datasource against what its materializations make of their sources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tbkit.checks import audit, targets
from tbkit.engine import Engine, Workspace
from tbkit.project.datafiles import Project
from tbkit.project.layout import Layout
from tbkit.query import Reader

from .conftest import LANDING
from .repo_copy import invoke

# Keys after the merge of each target on the fixtures: customers (41 with transactions or demographics, 37
# with events, 39 with a record) and the (customer, second) keys of the events.
FIXTURE_KEYS = {
    "customer_cltv_mv": 41,
    "customer_engagement_mv": 37,
    "customer_events_by_customer_mv": 246,
    "customers_latest_mv": 39,
}


@pytest.fixture
def fresh(engine: Engine, project: Project, layout: Layout, workspace: Workspace) -> Iterator[Workspace]:
    """An empty workspace of this test's own, seeded with the fixtures (so appends to it stay in this test)."""
    for name in LANDING:
        workspace.append(name, layout.fixtures_dir / f"{name}.ndjson")
    yield workspace


def test_every_target_and_its_materializations_are_audited(project):
    assert {target: [p.name for p in pipes] for target, pipes in audit.feeders(project).items()} == {
        "customer_cltv_mv": ["customer_cltv_locations", "customer_cltv_transactions"],
        "customer_engagement_mv": ["customer_engagement"],
        "customer_events_by_customer_mv": ["customer_events_by_customer"],
        "customers_latest_mv": ["customers_latest"],
    }


def test_the_seeded_fixtures_pass_with_every_key_compared(reader):
    report = audit.audit(reader)
    assert report.ok
    assert {t.target: (t.ok, t.rows_compared, t.expected_rows, t.actual_rows) for t in report.targets} == {
        name: (True, keys, keys, keys) for name, keys in FIXTURE_KEYS.items()
    }


def test_a_stray_row_in_a_target_fed_by_two_materializations_is_named_with_both_values(fresh):
    fresh.append("customer_cltv_mv", b'{"customer_id": "cust_001", "cltv": 5.5, "transactions": 1}\n')
    report = audit.audit(Reader(fresh))
    assert not report.ok
    cltv = next(t for t in report.targets if t.target == "customer_cltv_mv")
    assert (cltv.ok, cltv.rows_compared, cltv.differing) == (False, 41, 1)
    [difference] = cltv.differences
    assert difference.key == {"customer_id": "cust_001"}
    common = {
        "first_transaction_at": "2024-06-09 21:35:00",
        "last_transaction_at": "2024-10-27 17:26:00",
        "location": "New York",
    }
    assert difference.expected == {"cltv": pytest.approx(684.12), "transactions": 3, **common}
    assert difference.actual == {"cltv": pytest.approx(689.62), "transactions": 4, **common}
    assert [t.target for t in report.targets if not t.ok] == ["customer_cltv_mv"]


def test_a_key_only_in_the_target_and_a_newer_version_are_found(fresh):
    fresh.append(
        "customers_latest_mv",
        b'{"customer_id": "cust_001", "name": "Someone else", "email": "x@example.com", "age": 40, '
        b'"gender": "female", "location": "Paris", "signup_date": "2024-05-27 09:15:00", "lifetime_value": 1, '
        b'"updated_at": "2030-01-01 00:00:00"}\n',
    )
    fresh.append(
        "customer_events_by_customer_mv",
        b'{"customer_id": "nobody", "timestamp": "2025-01-01 00:00:00", "event_type": "view", "event_value": 2}\n',
    )
    report = {t.target: t for t in audit.audit(Reader(fresh)).targets}
    latest = report["customers_latest_mv"]
    [changed] = latest.differences
    assert changed.key == {"customer_id": "cust_001"}
    assert (changed.expected["name"], changed.expected["updated_at"]) == ("Customer 001", "2025-06-01 10:00:00")
    assert (changed.actual["name"], changed.actual["updated_at"]) == ("Someone else", "2030-01-01 00:00:00")
    events = report["customer_events_by_customer_mv"]
    assert (events.rows_compared, events.expected_rows, events.actual_rows) == (247, 246, 247)
    [extra] = events.differences
    assert extra.key == {"customer_id": "nobody", "timestamp": "2025-01-01 00:00:00"}
    assert (extra.expected, extra.actual) == (None, {"rows": 1, "values": [["view", 2]]})


def test_the_cli_passes_on_the_fixtures():
    result = invoke(["audit"])
    assert result.exit_code == 0, result.output
    assert "✓ customer_cltv_mv" in result.output
    assert "41 rows compared  (customer_cltv_locations, customer_cltv_transactions)" in result.output
    assert "246 rows compared" in result.output


def test_the_cli_exits_1_and_prints_the_differing_key(monkeypatch):
    prepare = targets.EmbeddedTarget.prepare

    def prepare_then_stray(self, fixtures_dir: Path):
        results = prepare(self, fixtures_dir)
        stray = (
            b'{"customer_id": "cust_001", "events": 1, "event_types": ["view"], "event_value": 0, '
            b'"first_event_at": "2025-01-01 00:00:00", "last_event_at": "2025-01-01 00:00:00"}\n'
        )
        assert self.workspace.append("customer_engagement_mv", stray).successful_rows == 1
        return results

    monkeypatch.setattr(targets.EmbeddedTarget, "prepare", prepare_then_stray)
    result = invoke(["audit"])
    assert result.exit_code == 1, result.output
    assert "✗ customer_engagement_mv" in result.output
    assert "customer_id='cust_001'" in result.output
    assert "✓ customer_cltv_mv" in result.output
    as_json = invoke(["audit", "--json"])
    assert as_json.exit_code == 1
    [engagement] = [t for t in json.loads(as_json.output)["targets"] if not t["ok"]]
    [difference] = engagement["differences"]
    assert difference["key"] == {"customer_id": "cust_001"}
    assert difference["actual"]["events"] == difference["expected"]["events"] + 1


def test_the_same_audit_runs_over_a_tinybird_api(start_server, layout):
    from tbkit.remote.client import TinybirdClient

    server = start_server()
    client = TinybirdClient(server.url, server.token)
    for name in LANDING:
        client.append_ndjson(name, layout.fixtures_dir / f"{name}.ndjson")
    passed = invoke(["audit", "--target", server.url, "--token", server.token])
    assert passed.exit_code == 0, passed.output
    assert "41 rows compared" in passed.output
    client.append_ndjson("customer_cltv_mv", b'{"customer_id": "cust_001", "cltv": 5.5, "transactions": 1}\n')
    failed = invoke(["audit", "--target", server.url, "--token", server.token, "--json"])
    assert failed.exit_code == 1, failed.output
    [cltv] = [t for t in json.loads(failed.output)["targets"] if not t["ok"]]
    assert cltv["target"] == "customer_cltv_mv"
    assert [(d["key"], d["expected"]["transactions"], d["actual"]["transactions"]) for d in cltv["differences"]] == [
        ({"customer_id": "cust_001"}, 3, 4)
    ]


def test_check_audit_runs_the_audit_on_the_embedded_target(monkeypatch, repo):
    passed = invoke(["check", "--audit"])
    assert passed.exit_code == 0, passed.output
    audit_lines = [" ".join(line.split()) for line in passed.output.splitlines() if line.startswith("✓ audit ")]
    assert audit_lines == [
        "✓ audit customer_cltv_mv 41 rows compared (customer_cltv_locations, customer_cltv_transactions)",
        "✓ audit customer_engagement_mv 37 rows compared (customer_engagement)",
        "✓ audit customer_events_by_customer_mv 246 rows compared (customer_events_by_customer)",
        "✓ audit customers_latest_mv 39 rows compared (customers_latest)",
    ]
    without = invoke(["check"])
    assert without.exit_code == 0 and "audit" not in without.output
    prepare = targets.EmbeddedTarget.prepare

    def prepare_then_stray(self, fixtures_dir: Path):
        results = prepare(self, fixtures_dir)
        stray = b'{"customer_id": "cust_001", "cltv": 5.5, "transactions": 1}\n'
        assert self.workspace.append("customer_cltv_mv", stray).successful_rows == 1
        return results

    monkeypatch.setattr(targets.EmbeddedTarget, "prepare", prepare_then_stray)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    failed = invoke(["check", "--audit"])
    assert failed.exit_code == 1, failed.output
    assert "✗ audit customer_cltv_mv" in failed.output
    assert "customer_id='cust_001'" in failed.output
    assert "1 materialized datasource differs from its sources) in" in failed.output
    assert (
        "::error title=audit customer_cltv_mv::1 keys differ from what customer_cltv_locations, "
        "customer_cltv_transactions make" in failed.output
    )


def test_check_audit_runs_over_a_tinybird_api_and_reports_in_json(start_server, layout):
    from tbkit.remote.client import TinybirdClient

    server = start_server()
    client = TinybirdClient(server.url, server.token)
    for name in LANDING:
        client.append_ndjson(name, layout.fixtures_dir / f"{name}.ndjson")
    args = ["check", "--target", server.url, "--token", server.token, "--audit", "--json"]
    passed = invoke(args)
    assert passed.exit_code == 0, passed.output
    report = json.loads(passed.output)
    assert {t["target"]: t["rows_compared"] for t in report["audit"]["targets"]} == FIXTURE_KEYS
    client.append_ndjson("customer_cltv_mv", b'{"customer_id": "cust_001", "cltv": 5.5, "transactions": 1}\n')
    failed = invoke(args)
    assert failed.exit_code == 1, failed.output
    report = json.loads(failed.output)
    assert report["ok"] is False  # the stray row also changes cust_001's cases: both are reported
    [cltv] = [t for t in report["audit"]["targets"] if not t["ok"]]
    assert (cltv["target"], cltv["differing"]) == ("customer_cltv_mv", 1)


def test_audit_target_cloud_reads_tb_host_and_tb_token_and_audits_the_data_as_it_is(start_server, layout, monkeypatch):
    from tbkit.remote.client import TinybirdClient

    server = start_server()
    client = TinybirdClient(server.url, server.token)
    for name in LANDING:
        client.append_ndjson(name, layout.fixtures_dir / f"{name}.ndjson")
    monkeypatch.setenv("TB_HOST", server.url)
    monkeypatch.setenv("TB_TOKEN", server.token)
    result = invoke(["audit", "--target", "cloud", "--json"])
    assert result.exit_code == 0, result.output
    assert {t["target"]: t["rows_compared"] for t in json.loads(result.output)["targets"]} == FIXTURE_KEYS
    monkeypatch.delenv("TB_TOKEN")
    missing = invoke(["audit", "--target", "cloud"])
    assert missing.exit_code == 1 and "TB_TOKEN is not set" in missing.output
    unknown = invoke(["audit", "--target", "elsewhere"])  # a usage error, before anything runs
    assert unknown.exit_code == 2
    assert "'elsewhere': use embedded, local, cloud or the URL of a Tinybird API" in unknown.output
