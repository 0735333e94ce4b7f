"""Data-quality assertions (fixtures/assertions.yaml) and GitHub Actions annotations of `tbkit check`."""

from __future__ import annotations

import json
import re

import pytest

from tbkit.checks import assertions
from tbkit.query import Reader

from . import ROOT
from .repo_copy import run

DECLARED = assertions.load(ROOT / "fixtures" / assertions.FILE_NAME)
NAMES = {a.name for a in DECLARED}


def test_the_declared_assertions_include_the_three_rules():
    assert {
        "cltv_customers_come_from_a_transaction_or_demographics",
        "customers_latest_ids_not_empty",
        "events_by_customer_ids_normalized",
    } <= NAMES


def test_every_assertion_holds_on_the_fixtures(reader):
    results = assertions.run(DECLARED, lambda sql: json.loads(reader.sql(sql)))
    assert [(r.assertion.name, r.ok, r.offending, r.error) for r in results] == [
        (a.name, True, 0, None) for a in DECLARED
    ]


def test_a_stray_cltv_row_without_transactions_fails_its_assertion_and_shows_the_row(workspace, layout):
    for name in ("customer_demographics", "customer_events", "customer_transactions", "customers"):
        workspace.append(name, layout.fixtures_dir / f"{name}.ndjson")
    stray = {"customer_id": "stray_1", "cltv": 0, "transactions": 0, "first_transaction_at": None,
             "last_transaction_at": None, "location": None}  # fmt: skip
    workspace.append("customer_cltv_mv", (json.dumps(stray) + "\n").encode())
    results = {
        r.assertion.name: r for r in assertions.run(DECLARED, lambda sql: json.loads(Reader(workspace).sql(sql)))
    }
    failed = results["cltv_customers_come_from_a_transaction_or_demographics"]
    assert not failed.ok and failed.offending == 1
    assert failed.rows == [{"customer_id": "stray_1", "transactions": 0, "cltv": 0, "location": None}]
    assert failed.headline() == "assertion cltv_customers_come_from_a_transaction_or_demographics: 1 offending row"
    assert [n for n, r in results.items() if not r.ok] == ["cltv_customers_come_from_a_transaction_or_demographics"]


def test_a_broken_assertion_file_is_one_error_naming_it(tmp_path):
    path = tmp_path / "assertions.yaml"
    path.write_text("assertions:\n  - name: no_sql\n")
    with pytest.raises(Exception, match=r"assertions.yaml: assertion #1 needs a 'name' and an 'sql'"):
        assertions.load(path)
    assert assertions.load(tmp_path / "absent.yaml") == []


def test_check_reports_assertions_in_text_and_json(repo):
    text = run("check")
    assert text.exit_code == 0, text.output
    for name in NAMES:
        assert f"✓ assertion {name}\n" in text.output
    report = json.loads(run("check", "--json").output)
    assert {(a["name"], a["ok"], a["offending"]) for a in report["assertions"]} == {(n, True, 0) for n in NAMES}
    narrowed = json.loads(run("check", "--endpoint", "cltv_summary", "--json").output)
    assert narrowed["assertions"] == []


def test_a_failing_assertion_fails_check_with_its_rows_and_an_annotation(repo, monkeypatch):
    path = repo / "fixtures" / "assertions.yaml"
    path.write_text(
        path.read_text()
        + "  - name: no_heavy_buyer\n"
        + "    description: Fails on purpose.\n"
        + "    sql: >\n"
        + "      SELECT customer_id, sum(transactions) AS transactions FROM customer_cltv_mv\n"
        + "      WHERE customer_id = 'cust_034' GROUP BY customer_id\n"
    )
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run("check")
    assert result.exit_code == 1
    assert "✗ assertion no_heavy_buyer: 1 offending row\n" in result.output
    assert '    {"customer_id": "cust_034", "transactions": 12}\n' in result.output
    assert re.search(r"\n\d+ passed, 0 failed \(1 assertion failed\)", result.output)
    assert [line for line in result.output.splitlines() if line.startswith("::")] == [
        "::error file=fixtures/assertions.yaml,title=assertion no_heavy_buyer::"
        'assertion no_heavy_buyer: 1 offending row%0A{"customer_id": "cust_034", "transactions": 12}'
    ]
    output = run("check", "--json").output  # the annotations go to stderr beside --json
    report = json.loads("\n".join(line for line in output.splitlines() if not line.startswith("::")))
    assert [a["name"] for a in report["assertions"] if not a["ok"]] == ["no_heavy_buyer"]


def test_under_github_actions_a_failing_case_is_an_annotation_on_its_golden_file(repo, monkeypatch):
    pipe = repo / "tinybird/endpoints/cltv_summary.pipe"
    pipe.write_text(pipe.read_text().replace("round(sum(customer_cltv), 2)", "round(sum(customer_cltv) * 2, 2)"))
    quiet = run("check", "--endpoint", "cltv_summary")
    assert quiet.exit_code == 1 and "::error" not in quiet.output

    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run("check", "--endpoint", "cltv_summary")
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("::")] == [
        "::error file=fixtures/golden/cltv_summary/defaults.json,title=cltv_summary/defaults::"
        "~ row 1 average_cltv=4737969.2 changed: total_revenue: 184780798.65 -> 369561597.3"
    ]


def test_annotation_text_is_escaped_as_github_requires():
    from tbkit.checks.report import _escape_data, _escape_property

    assert _escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert _escape_property("a,b:c%") == "a%2Cb%3Ac%25"
