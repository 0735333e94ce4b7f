"""Cost budgets: rows and bytes read per endpoint call on generated data, against budgets and a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from customer_analytics.parameters import PER_CUSTOMER
from customer_analytics.workload import WORKLOAD
from tbkit.checks import budgets, golden
from tbkit.checks.budgets import Budget, Call, EndpointBudget
from tbkit.checks.run import Options, check
from tbkit.errors import ProjectError
from tbkit.project.layout import Layout

from . import ENDPOINTS, ROOT
from .repo_copy import run

# customer_cltv rewritten to sum customer_transactions itself: the same answers as the point read of
# customer_cltv_mv (so every golden file and the contract still pass), for a scan of every transaction.
CLTV_FROM_RAW_TRANSACTIONS = """DESCRIPTION >
    The CLTV of one customer, summed from its transactions on every call.

TOKEN "customer_api_read" READ

NODE customer_cltv_node
SQL >
    %
    {% if not defined(customer_id) or customer_id.strip() == '' %}
        {{ error('Missing required parameter customer_id: pass ?customer_id=<customer id>', 400) }}
    {% end %}
    SELECT
        lower(trim(customer_id)) AS customer_id,
        round(sum(transaction_amount), 2) AS cltv,
        toUInt64(count()) AS transactions,
        min(transaction_date) AS first_transaction_at,
        max(transaction_date) AS last_transaction_at
    FROM customer_transactions
    WHERE
        lower(trim(customer_id)) = lower(
            trim(
                {{
                    String(
                        customer_id,
                        description="Customer ID. Matched case-insensitively, ignoring surrounding spaces.",
                        required=True,
                    )
                }}
            )
        )
    GROUP BY customer_id

TYPE ENDPOINT
"""


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Where generated data is cached for the session: each scale is generated once."""
    return tmp_path_factory.mktemp("budgets-data")


@pytest.fixture(scope="module")
def cases(project, layout):
    return golden.load_cases(layout.cases_dir, project)


def test_the_committed_budgets_hold_at_the_test_scale(engine, project, layout, cases, data_dir):
    report = budgets.run(layout, project, engine, "XS", cases, work_dir=data_dir)
    assert report.ok, [p for e in report.endpoints for p in e.problems]
    assert sorted(e.endpoint for e in report.endpoints) == sorted(ENDPOINTS)
    generated = json.loads((data_dir / "data-XS-seed0" / "report.json").read_text())
    assert report.data == {name: generated["files"][name]["valid"] for name in report.data}
    declared = budgets.load(layout.fixtures_dir / budgets.FILE_NAME, WORKLOAD.scales)
    for endpoint in report.endpoints:
        limit = declared.budgets[endpoint.endpoint]["XS"]
        assert 0 < endpoint.max_rows.rows_read <= limit.max_rows_read
        assert endpoint.max_bytes.bytes_read <= limit.max_bytes_read
        calls = [c for c in endpoint.calls if c.series.startswith("case ")]
        assert calls, f"{endpoint.endpoint}: its cases were not called"
    # A per-customer endpoint reads a granule or two however many customers there are.
    cltv = next(e for e in report.endpoints if e.endpoint == "customer_cltv")
    assert cltv.max_rows.rows_read < report.data["customer_transactions"] / 4


def test_an_endpoint_that_scans_the_raw_table_passes_its_golden_files_and_fails_its_budget(repo, data_dir, engine):
    (repo / "tinybird" / "endpoints" / "customer_cltv.pipe").write_text(CLTV_FROM_RAW_TRANSACTIONS)
    report = check(
        Layout.at(),
        endpoint="customer_cltv",
        options=Options(budgets_scale="XS", budgets_work_dir=data_dir),
        engine=engine,
    )
    assert report.failed == 0 and report.passed == len(report.results) > 5  # same answers: every golden passes
    assert report.contracts is not None and report.contracts.ok
    assert not report.ok and report.budgets is not None
    [cltv] = report.budgets.failures()
    assert cltv.endpoint == "customer_cltv"
    assert cltv.max_rows.rows_read >= report.budgets.data["customer_transactions"]  # every transaction
    assert cltv.problems[0].startswith('customer_cltv case seed_outlier {"customer_id": "cust_969"} read ')
    assert f"read {cltv.max_rows.rows_read:,} rows, over its budget of 4,096 at scale XS" in "\n".join(cltv.problems)
    assert "1 endpoint over budget at XS" in report.summary()


def test_the_baseline_records_the_figures_and_a_later_run_fails_past_the_threshold(repo, project, engine, data_dir):
    layout = Layout.at()
    committed = json.loads((layout.fixtures_dir / budgets.BASELINE_NAME).read_text())["scales"]
    report = budgets.run(layout, project, engine, "XS", [], baseline=True, work_dir=data_dir)
    assert report.ok and report.baseline_written == layout.fixtures_dir / budgets.BASELINE_NAME
    written = json.loads(report.baseline_written.read_text())
    assert written["written_by"] == "tbkit check --budgets --scale <scale> --baseline, one scale per run"
    assert written["scales"]["XS"] == {e.endpoint: e.figures() for e in report.endpoints}
    assert {k: v for k, v in written["scales"].items() if k != "XS"} == {
        k: v for k, v in committed.items() if k != "XS"
    }
    figures = written["scales"]["XS"]["customer_cltv"]
    figures["max_rows_read"] //= 2
    report.baseline_written.write_text(json.dumps(written))
    again = budgets.run(layout, project, engine, "XS", [], endpoints=["customer_cltv"], work_dir=data_dir)
    [problem] = again.endpoints[0].problems
    assert problem.endswith(
        f"read {figures['max_rows_read'] * 2:,} rows, +100% over the baseline of {figures['max_rows_read']:,} "
        "at scale XS (threshold 25%)"
    )
    tolerant = budgets.run(
        layout, project, engine, "XS", [], endpoints=["customer_cltv"], threshold=150, work_dir=data_dir
    )
    assert tolerant.ok


@pytest.mark.slow
def test_per_customer_endpoints_have_the_same_budget_and_hold_it_at_s_and_m(engine, project, layout, cases):
    """The flat-cost claim, on real data: the budget of a per-customer endpoint does not grow from S (10k
    customers) to M (100k). The data is cached where `tbkit bench` and `tbkit check --budgets` cache it."""
    declared = budgets.load(layout.fixtures_dir / budgets.FILE_NAME, WORKLOAD.scales)
    for endpoint in PER_CUSTOMER:
        assert declared.budgets[endpoint]["S"] == declared.budgets[endpoint]["M"]
    work_dir = ROOT / budgets.WORK_DIR
    reads = {}
    for scale in ("S", "M"):
        report = budgets.run(layout, project, engine, scale, cases, endpoints=list(PER_CUSTOMER), work_dir=work_dir)
        assert report.ok, [p for e in report.endpoints for p in e.problems]
        reads[scale] = {e.endpoint: e.max_rows.rows_read for e in report.endpoints}
        assert len(report.endpoints[0].calls) > 40
    assert reads["S"] == reads["M"]  # the same granules read, with ten times the customers


def _result(calls: list[tuple[int, int]], budget: Budget | None, baseline=None) -> EndpointBudget:
    made = [Call("varied", {"customer_id": f"c{i}"}, rows, size) for i, (rows, size) in enumerate(calls)]
    return EndpointBudget("customer_cltv", made, budget, baseline)


def test_every_call_over_its_budget_is_named_with_its_parameters_and_figures():
    result = _result([(1024, 100), (5000, 100), (9000, 900)], Budget(4096, 800))
    budgets.judge(result, "S", 25)
    assert result.problems == [
        'customer_cltv varied {"customer_id": "c1"} read 5,000 rows, over its budget of 4,096 at scale S',
        'customer_cltv varied {"customer_id": "c2"} read 9,000 rows, over its budget of 4,096 at scale S',
        'customer_cltv varied {"customer_id": "c2"} read 900 bytes, over its budget of 800 at scale S',
    ]


def test_the_baseline_threshold_is_exclusive_and_an_endpoint_without_budget_fails():
    at_threshold = _result([(1250, 100)], Budget(4096), {"max_rows_read": 1000, "max_bytes_read": 100})
    budgets.judge(at_threshold, "S", 25)
    assert at_threshold.ok
    over = _result([(1251, 100)], Budget(4096), {"max_rows_read": 1000, "max_bytes_read": 100})
    budgets.judge(over, "S", 25)
    assert over.problems == [
        'customer_cltv varied {"customer_id": "c0"} read 1,251 rows, +25% over the baseline of 1,000 at scale S '
        "(threshold 25%)"
    ]
    missing = _result([(10, 1)], None)
    budgets.judge(missing, "M", 25)
    assert missing.problems[0].startswith("no budget for customer_cltv at scale M: add max_rows_read")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("endpoints: [1]", "endpoints: expected a mapping of endpoint names to scales"),
        ("endpoints: {e: {XL: {max_rows_read: 1}}}", "endpoints: e: unknown scale XL (scales: S, M, L, XS)"),
        ("endpoints: {e: {S: {max_rows: 1}}}", "endpoints: e: S: expected {max_rows_read: N"),
        ("endpoints: {e: {S: {max_rows_read: -1}}}", "endpoints: e: S: max_rows_read: expected a positive integer"),
        ("endpoints: {e: {S: {max_rows_read: 1, rows: 2}}}", "endpoints: e: S: unknown key rows"),
        ("threshold_percent: lots", "threshold_percent: expected a number of percent >= 0, got 'lots'"),
        ("scales: {S: {rows: 5}}", "scales: S is a scale of the project's generator"),
        ("scales: {XS: {customers: 2000}}", "scales: XS: expected {rows: N} (a size in rows, the unit of"),
        ("scales: {XS: {rows: 0}}", "scales: XS: rows: expected a positive integer, got 0"),
        ("budget: {}", "unknown key budget"),
    ],
)
def test_a_bad_budgets_file_names_the_file_the_entry_and_what_was_expected(tmp_path, content, message):
    path = tmp_path / "budgets.yaml"
    path.write_text("scales: {XS: {rows: 2000}}\n" + content if "scales" not in content else content)
    with pytest.raises(ProjectError) as error:
        budgets.load(path, {"S": 10, "M": 100, "L": 1000})
    assert str(path) in str(error.value) and message in str(error.value)


def test_the_committed_budgets_file_loads_and_names_every_endpoint_at_every_measured_scale(layout):
    declared = budgets.load(layout.fixtures_dir / budgets.FILE_NAME, WORKLOAD.scales)
    assert declared.threshold_percent == 25 and declared.scales == {"XS": 2000}
    assert {e: sorted(s) for e, s in declared.budgets.items()} == {e: ["M", "S", "XS"] for e in ENDPOINTS}
    baseline = budgets.load_baseline(layout.fixtures_dir / budgets.BASELINE_NAME)
    assert sorted(baseline) == ["M", "S", "XS"] and all(sorted(b) == sorted(ENDPOINTS) for b in baseline.values())
    raw = yaml.safe_load((layout.fixtures_dir / budgets.FILE_NAME).read_text())
    assert raw["threshold_percent"] == 25


def test_the_budget_options_are_refused_where_they_cannot_apply(repo):
    alone = run("check", "--scale", "S")
    assert alone.exit_code == 2 and "--scale, --baseline and --threshold only apply with --budgets" in alone.output
    remote = run("check", "--budgets", "--target", "http://127.0.0.1:9", "--token", "t")
    assert remote.exit_code == 1
    assert "Error: --budgets runs on the embedded target only" in remote.output
    unknown = run("check", "--budgets", "--scale", "XXL")
    assert unknown.exit_code == 1 and "unknown scale 'XXL': use one of S, M, L, XS" in unknown.output


def test_budget_and_coverage_failures_are_annotations_and_junit_failures(project, layout, tmp_path):
    import xml.etree.ElementTree as ET

    from tbkit.checks import coverage
    from tbkit.checks.run import CheckReport, github_annotations, write_junit

    over = _result([(5000, 100)], Budget(4096))
    budgets.judge(over, "S", 25)
    lookup = [c for c in golden.load_cases(layout.cases_dir, project) if c.name != "without_as_of_unknown_customer"]
    report = CheckReport(
        "embedded",
        budgets=budgets.BudgetReport("S", 25, [over]),
        coverage=coverage.coverage(project, lookup, ["customer_segment_lookup"], min_percent=100),
    )
    assert not report.ok
    assert github_annotations(report, layout.golden_dir, ROOT) == [
        "::error file=fixtures/budgets.yaml,title=budget customer_cltv::customer_cltv varied "
        '{"customer_id": "c0"} read 5,000 rows, over its budget of 4,096 at scale S',
        "::error file=tinybird/endpoints/customer_segment_lookup.pipe,line=18,title=coverage customer_segment_lookup "
        "under 100%25::customer_segment_lookup: 2/2 parameters, 3/4 branches (83.3%25)%0Abranch else of `if "
        f"defined(as_of)` (node customer_segment_lookup_node, {ROOT}/tinybird/endpoints/"
        "customer_segment_lookup.pipe:18): no case takes it",
    ]
    write_junit(report, tmp_path / "junit.xml")
    suites = {s.get("name"): s for s in ET.parse(tmp_path / "junit.xml").getroot()}
    assert (suites["budgets"].get("tests"), suites["budgets"].get("failures")) == ("1", "1")
    [budget_case] = suites["budgets"]
    assert budget_case.get("name") == "customer_cltv"
    assert budget_case[0].get("message").endswith("read 5,000 rows, over its budget of 4,096 at scale S")
    [coverage_case] = suites["coverage"]
    assert coverage_case[0].get("message") == "customer_segment_lookup: 2/2 parameters, 3/4 branches (83.3%)"
