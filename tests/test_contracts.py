"""Endpoint contracts: derived from the project, compared with fixtures/contracts/, enforced by `tbkit check`."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tbkit.checks import contracts
from tbkit.checks.contracts import Contract, Param
from tbkit.query import Reader

from . import ENDPOINTS, ROOT
from .repo_copy import edit, invoke, run


def test_derive_gives_every_endpoint_with_its_parameters_and_columns(project, workspace, layout):
    derived = contracts.derive(project, Reader(workspace).endpoint_columns)
    assert tuple(derived) == ENDPOINTS
    cltv = derived["customer_cltv"]
    assert cltv.parameters == (
        Param(
            "customer_id",
            "String",
            required=True,
            default=None,
            description="Customer ID. Matched case-insensitively, ignoring surrounding spaces.",
        ),
    )
    assert cltv.columns == (
        ("customer_id", "String"),
        ("cltv", "Float64"),
        ("transactions", "UInt64"),
        ("first_transaction_at", "DateTime"),
        ("last_transaction_at", "DateTime"),
    )
    engagement = {p.name: p for p in derived["customer_engagement_analysis"].parameters}
    assert (engagement["limit"].type, engagement["limit"].required, engagement["limit"].default) == (
        "Int32",
        False,
        100,
    )
    assert engagement["event_type"].type == "Array(String)"
    assert derived["cltv_summary"].parameters == ()
    # The committed contract files are exactly what the project derives today.
    assert contracts.load(layout) == derived


def base() -> dict:
    return {
        "parameters": [
            {"name": "customer_id", "type": "String", "required": True},
            {"name": "limit", "type": "Int32", "default": 100, "description": "Maximum rows."},
        ],
        "columns": [{"customer_id": "String"}, {"cltv": "Float64"}, {"transactions": "UInt64"}],
    }


def changes_of(edit) -> list[tuple[str, bool]]:
    new = base()
    edit(new)
    return [(c.what, c.breaking) for c in contracts.compare({"e": base()}, {"e": new})]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: None, []),
        (lambda c: c["columns"].pop(1), [("column cltv removed (was Float64)", True)]),
        (lambda c: c["columns"].__setitem__(1, {"value": "Float64"}), [("column cltv renamed to value", True)]),
        (lambda c: c["columns"].__setitem__(1, {"cltv": "String"}), [("column cltv Float64 -> String", True)]),
        (lambda c: c["columns"].append({"avg": "Float64"}), [("new column avg Float64", False)]),
        (
            lambda c: c["columns"].reverse(),
            [("columns reordered: transactions, cltv, customer_id (was customer_id, cltv, transactions)", True)],
        ),
        (lambda c: c["parameters"].pop(1), [("parameter limit removed", True)]),
        (
            lambda c: c["parameters"].append({"name": "as_of", "type": "DateTime"}),
            [("new optional parameter as_of DateTime", False)],
        ),
        (
            lambda c: c["parameters"].append({"name": "region", "type": "String", "required": True}),
            [("new required parameter region String", True)],
        ),
        (lambda c: c["parameters"][1].update(required=True), [("parameter limit became required", True)]),
        (lambda c: c["parameters"][0].update(required=False), [("parameter customer_id became optional", False)]),
        (lambda c: c["parameters"][1].update(type="String"), [("parameter limit type Int32 -> String", True)]),
        (lambda c: c["parameters"][1].update(default=50), [("parameter limit default 100 -> 50", False)]),
        (lambda c: c["parameters"][1].update(description="Rows."), [("parameter limit description changed", False)]),
    ],
)
def test_compare_classifies_each_kind_of_change(edit, expected):
    assert changes_of(edit) == expected


def test_compare_reports_new_and_removed_endpoints():
    changes = contracts.compare({"gone": base()}, {"fresh": base()})
    assert [(c.endpoint, c.what, c.breaking) for c in changes] == [
        ("fresh", "new endpoint, no contract yet", False),
        ("gone", "endpoint removed", True),
    ]
    assert str(changes[1]) == "contract gone: endpoint removed (breaking)"


def test_contracts_are_written_in_a_stable_reviewable_form(tmp_path):
    from tbkit.project.layout import Layout

    layout = Layout(tmp_path / "tinybird", tmp_path / "fixtures")
    contract = Contract.from_dict({"endpoint": "e", **base()})
    contracts.write(layout, {"e": contract})
    written = (tmp_path / "fixtures/contracts/e.yaml").read_text()
    assert "columns:\n- customer_id: String\n- cltv: Float64\n- transactions: UInt64\n" in written
    assert yaml.safe_load(written)["parameters"][0] == {
        "name": "customer_id",
        "type": "String",
        "required": True,
        "default": None,
        "description": "",
    }
    assert contracts.load(layout) == {"e": contract}


# -- end to end: `tbkit check` on a copy of the repository ----------------------------------------------


def test_a_renamed_column_is_breaking_and_needs_accept_breaking(repo):
    pipe = repo / "tinybird/endpoints/customer_cltv.pipe"
    edit(pipe, "toUInt64(transactions) AS transactions", "toUInt64(transactions) AS transaction_count")
    contract = repo / "fixtures/contracts/customer_cltv.yaml"
    before = contract.read_text()

    failed = run("check", "--endpoint", "customer_cltv")
    assert failed.exit_code == 1
    assert "✗ contract customer_cltv: column transactions renamed to transaction_count (breaking)" in failed.output
    assert "tbkit check --update --accept-breaking" in failed.output

    refused = run("check", "--endpoint", "customer_cltv", "--update")
    assert refused.exit_code == 1
    assert "✗ contract customer_cltv: column transactions renamed to transaction_count (breaking)" in refused.output
    assert "1 contract change not accepted" in refused.output
    assert contract.read_text() == before

    accepted = run("check", "--endpoint", "customer_cltv", "--update", "--accept-breaking")
    assert accepted.exit_code == 0, accepted.output
    assert "↻ contract customer_cltv: column transactions renamed to transaction_count (breaking)" in accepted.output
    assert "- transaction_count: UInt64\n" in contract.read_text()
    assert "- transactions: UInt64\n" not in contract.read_text()
    assert run("check", "--endpoint", "customer_cltv").exit_code == 0


def test_a_changed_column_type_fails_the_whole_check(repo):
    edit(repo / "tinybird/endpoints/customer_cltv.pipe", "round(toFloat64(cltv), 2) AS cltv", "toString(cltv) AS cltv")
    result = run("check")
    assert result.exit_code == 1
    assert "✗ contract customer_cltv: column cltv Float64 -> String (breaking)" in result.output


def test_a_new_optional_parameter_is_accepted_by_update(repo):
    pipe = repo / "tinybird/endpoints/cltv_summary.pipe"
    edit(pipe, "SQL >\n    SELECT\n", "SQL >\n    %\n    SELECT\n")
    edit(
        pipe,
        "round(sum(customer_cltv), 2) AS total_revenue",
        "round(sum(customer_cltv) * {{ Float64(scale, 1, description='Multiplier.') }}, 2) AS total_revenue",
    )
    failed = run("check", "--endpoint", "cltv_summary")
    assert failed.exit_code == 1
    assert "~ contract cltv_summary: new optional parameter scale Float64 (compatible)" in failed.output
    assert "run `tbkit check --update` to accept" in failed.output

    updated = run("check", "--endpoint", "cltv_summary", "--update")
    assert updated.exit_code == 0, updated.output
    assert "↻ contract cltv_summary: new optional parameter scale Float64 (compatible)" in updated.output
    params = yaml.safe_load((repo / "fixtures/contracts/cltv_summary.yaml").read_text())["parameters"]
    assert params == [
        {"name": "scale", "type": "Float64", "required": False, "default": 1, "description": "Multiplier."}
    ]
    assert run("check", "--endpoint", "cltv_summary").exit_code == 0


def test_missing_contracts_fail_until_update_creates_them(repo):
    shutil.rmtree(repo / "fixtures/contracts")
    failed = run("check", "--endpoint", "customer_cltv")
    assert failed.exit_code == 1
    assert "~ contract customer_cltv: new endpoint, no contract yet (compatible)" in failed.output
    assert "run `tbkit check --update` to accept" in failed.output
    assert run("check", "--endpoint", "customer_cltv", "--update").exit_code == 0
    assert (repo / "fixtures/contracts/customer_cltv.yaml").read_text() == (
        ROOT / "fixtures/contracts/customer_cltv.yaml"
    ).read_text()


def test_accept_breaking_needs_update(repo):
    result = invoke(["check", "--accept-breaking"])
    assert result.exit_code == 2 and "--accept-breaking only applies with --update" in result.output


def test_contracts_are_checked_over_http_from_the_columns_the_endpoints_answer_with(repo, start_server, monkeypatch):
    from tbkit.remote.client import TinybirdClient

    from .conftest import LANDING

    server = start_server()
    client = TinybirdClient(server.url, server.token)
    for name in LANDING:
        client.append_ndjson(name, repo / "fixtures" / f"{name}.ndjson")
    args = ["check", "--target", server.url, "--token", server.token]
    passed = run(*args)
    assert passed.exit_code == 0, passed.output
    assert "contract" not in passed.output
    # The contract file says what consumers rely on; the served endpoint answers `transactions`.
    edit(repo / "fixtures/contracts/customer_cltv.yaml", "- transactions: UInt64", "- transaction_count: UInt64")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    failed = run(*args, "--endpoint", "customer_cltv")
    assert failed.exit_code == 1
    assert "✗ contract customer_cltv: column transaction_count renamed to transactions (breaking)" in failed.output
    assert (
        "::error file=fixtures/contracts/customer_cltv.yaml,title=contract customer_cltv::contract customer_cltv: "
        "column transaction_count renamed to transactions (breaking)" in failed.output
    )
    # Over HTTP the contracts are only compared: --update leaves the file as it is.
    before = (repo / "fixtures/contracts/customer_cltv.yaml").read_text()
    run(*args, "--endpoint", "customer_cltv", "--update", "--accept-breaking")
    assert (repo / "fixtures/contracts/customer_cltv.yaml").read_text() == before
