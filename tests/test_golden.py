"""Comparing responses with golden files as data, and reading and writing golden files."""

from __future__ import annotations

import json

import pytest

from tbkit.checks import golden
from tbkit.checks.golden import Case, Response, compare
from tbkit.errors import NotFoundError, ProjectError

CASE = Case("customer_cltv", "example", {"customer_id": "c1"})
META = [
    {"name": "customer_id", "type": "String"},
    {"name": "cltv", "type": "Float64"},
    {"name": "transactions", "type": "UInt64"},
]


def response(*rows, meta=META) -> Response:
    return Response(status=200, meta=meta, data=[dict(r) for r in rows])


ROW = {"customer_id": "c1", "cltv": 100.25, "transactions": 3}


def test_identical_responses_have_no_differences():
    assert compare(response(ROW), response(ROW), CASE) == []


def test_64_bit_integers_match_as_numbers_or_strings():
    assert compare(response(ROW), response(dict(ROW, transactions="3")), CASE) == []
    assert compare(response(ROW), response(dict(ROW, transactions="4")), CASE) != []


def test_floats_match_within_the_relative_tolerance():
    close = dict(ROW, cltv=100.25 * (1 + 1e-12))
    assert compare(response(ROW), response(close), CASE) == []
    off = dict(ROW, cltv=100.26)
    assert compare(response(ROW), response(off), CASE) == ['~ row 1 customer_id="c1" changed: cltv: 100.25 -> 100.26']
    assert compare(response(ROW), response(off), CASE, rel_tol=1e-3) == []


def test_a_changed_row_names_the_columns_with_old_and_new_values():
    changed = dict(ROW, cltv=7.5, transactions=9)
    [line] = compare(response(ROW), response(changed), CASE)
    assert "cltv: 100.25 -> 7.5" in line and "transactions: 3 -> 9" in line


def test_added_and_removed_rows():
    other = {"customer_id": "c2", "cltv": 1.0, "transactions": 1}
    assert compare(response(ROW), response(ROW, other), CASE) == [
        "rows: expected 1, got 2",
        '+ row 2 added: {customer_id: "c2", cltv: 1.0, transactions: 1}',
    ]
    assert compare(response(ROW, other), response(other), CASE) == [
        "rows: expected 2, got 1",
        '- row 1 removed: {customer_id: "c1", cltv: 100.25, transactions: 3}',
    ]


def test_row_order_matters():
    other = {"customer_id": "c2", "cltv": 1.0, "transactions": 1}
    lines = compare(response(ROW, other), response(other, ROW), CASE)
    assert lines and any("moved" in line for line in lines)


def test_schema_changes_are_reported_as_such():
    meta = [META[0], {"name": "cltv", "type": "Float32"}, {"name": "orders", "type": "UInt64"}]
    actual = response({"customer_id": "c1", "cltv": 100.25, "orders": 3}, meta=meta)
    lines = compare(response(ROW), actual, CASE)
    assert "schema: column 'transactions' removed (was UInt64)" in lines
    assert "schema: column 'orders' added (UInt64)" in lines
    assert "schema: column 'cltv' retyped Float64 -> Float32" in lines


def test_statistics_are_ignored():
    body = {"meta": META, "data": [ROW], "rows": 1, "statistics": {"elapsed": 1.0, "rows_read": 5}}
    other = dict(body, statistics={"elapsed": 9.0, "rows_read": 500})
    assert compare(Response.from_json(200, body), Response.from_json(200, other), CASE) == []


def test_error_cases_compare_status_and_only_the_phrase_asked_for():
    case = Case("customer_cltv", "missing", {}, error_phrase="customer_id")
    expected = Response(status=400, error="Missing required parameter customer_id")
    assert compare(expected, Response(status=400, error="[Error] customer_id is required"), case) == []
    assert compare(expected, Response(status=400, error="something else"), case) == [
        "error message does not contain 'customer_id': 'something else'"
    ]
    assert compare(expected, response(ROW), case)[0] == "status: expected 400, got 200"


def test_golden_files_round_trip_with_stable_key_order(tmp_path):
    actual = response(ROW)
    assert golden.write_golden(CASE, actual, tmp_path) is True
    assert golden.write_golden(CASE, actual, tmp_path) is False
    path = CASE.golden_path(tmp_path)
    content = json.loads(path.read_text())
    assert list(content) == ["endpoint", "case", "params", "status", "meta", "data"]
    assert list(content["data"][0]) == ["customer_id", "cltv", "transactions"]
    assert golden.read_golden(CASE, tmp_path) == actual


def test_case_files_are_validated(tmp_path, project):
    (tmp_path / "customer_cltv.yaml").write_text("cases:\n  - name: a\n    params: {customer: x}\n")
    with pytest.raises(ProjectError, match="does not declare"):
        golden.load_cases(tmp_path, project)
    (tmp_path / "customer_cltv.yaml").write_text("cases:\n  - name: a\n  - name: a\n")
    with pytest.raises(ProjectError, match="defined twice"):
        golden.load_cases(tmp_path, project)
    (tmp_path / "customer_cltv.yaml").write_text("cases: [\n")
    with pytest.raises(ProjectError, match="customer_cltv.yaml:2"):
        golden.load_cases(tmp_path, project)
    (tmp_path / "customer_cltv.yaml").unlink()
    (tmp_path / "nope.yaml").write_text("cases: []\n")
    with pytest.raises(ProjectError, match="no endpoint 'nope'"):
        golden.load_cases(tmp_path, project)


def test_defaults_apply_to_every_case(tmp_path, project):
    (tmp_path / "customer_cltv.yaml").write_text(
        "defaults: {customer_id: a}\ncases:\n  - name: one\n  - name: two\n    params: {customer_id: 7}\n"
    )
    one, two = golden.load_cases(tmp_path, project)
    assert one.params == {"customer_id": "a"} and two.params == {"customer_id": "7"}


def test_selecting_an_unknown_case_suggests_close_names(layout, project):
    cases = golden.load_cases(layout.cases_dir, project)
    with pytest.raises(NotFoundError, match="did you mean seed_outlier"):
        golden.select_cases(cases, case="seed_outlie")
    with pytest.raises(NotFoundError, match="no cases for endpoint 'nope'"):
        golden.select_cases(cases, endpoint="nope")
