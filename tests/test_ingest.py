"""Appending NDJSON: JSON paths, defaults, quarantine with Tinybird's columns, and counts that add up."""

from __future__ import annotations

import gzip
import json

import pytest

from tbkit import engine as engine_module
from tbkit.errors import IngestError, NotFoundError

MALFORMED = {
    # datasource: (successful, quarantined) for fixtures/malformed/<datasource>.ndjson
    "customers": (1, 7),
    "customer_events": (1, 6),
    "customer_transactions": (1, 4),
    "customer_demographics": (1, 5),
}
EVENT = {
    "event_id": "e1",
    "customer_id": "cust_1",
    "event_type": "purchase",
    "event_value": 10.5,
    "product_id": "p1",
    "category": "books",
    "timestamp": "2025-01-02 03:04:05",
}


def ndjson(*rows) -> bytes:
    return b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in rows)


def rows(workspace, sql: str) -> list[dict]:
    return json.loads(workspace.sql(sql))["data"]


@pytest.mark.parametrize("datasource", sorted(MALFORMED))
def test_malformed_fixture_counts(workspace, layout, datasource):
    path = layout.fixtures_dir / "malformed" / f"{datasource}.ndjson"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    result = workspace.append(datasource, path)
    assert (result.successful_rows, result.quarantined_rows) == MALFORMED[datasource]
    assert result.successful_rows + result.quarantined_rows == len(lines)
    assert workspace.row_count(datasource) == result.successful_rows
    assert workspace.row_count(f"{datasource}_quarantine") == result.quarantined_rows


def test_quarantine_keeps_original_values_and_names_the_column(workspace):
    bad = dict(EVENT, event_value="free")
    result = workspace.append("customer_events", ndjson(bad))
    assert (result.successful_rows, result.quarantined_rows) == (0, 1)
    [row] = rows(workspace, "SELECT * FROM customer_events_quarantine")
    assert row["c__error_column"] == ["event_value"]
    assert row["c__error"] == ["value 'free' on column 'event_value' is not Float64"]
    assert row["c__import_id"] == result.import_id
    assert row["event_value"] == "free"
    assert row["customer_id"] == "cust_1"
    assert json.loads(row["c__line"]) == bad


def test_every_bad_column_is_reported(workspace):
    result = workspace.append("customer_demographics", ndjson({"customer_id": "c", "age": 300}))
    assert result.quarantined_rows == 1
    [row] = rows(workspace, "SELECT c__error_column, c__error FROM customer_demographics_quarantine")
    assert row["c__error_column"] == ["age", "location"]
    assert "missing value for column 'location'" in row["c__error"][1]


def test_lines_that_are_not_json_objects_are_kept_verbatim(workspace):
    result = workspace.append("customer_events", ndjson("not json", "[1, 2]", "null", '{"unclosed": '))
    assert (result.successful_rows, result.quarantined_rows) == (0, 4)
    data = rows(workspace, "SELECT c__line, c__error FROM customer_events_quarantine ORDER BY c__line")
    assert sorted(r["c__line"] for r in data) == sorted(["not json", "[1, 2]", "null", '{"unclosed": '])
    assert all(r["c__error"] == ["the line is not a valid JSON object"] for r in data)


def test_events_without_product_category_or_value_take_defaults(workspace):
    login = {"event_id": "e2", "customer_id": "c", "event_type": "login", "timestamp": "2025-01-01 00:00:00"}
    result = workspace.append("customer_events", ndjson(login, dict(login, event_id="e3", product_id=None)))
    assert (result.successful_rows, result.quarantined_rows) == (2, 0)
    data = rows(workspace, "SELECT event_value, product_id, category FROM customer_events")
    assert data == [{"event_value": 0, "product_id": "", "category": ""}] * 2


def test_blank_lines_and_crlf_are_not_rows(workspace):
    body = b"\r\n" + ndjson(EVENT).replace(b"\n", b"\r\n") + b"   \n\n" + ndjson(dict(EVENT, event_id="e2"))
    result = workspace.append("customer_events", body)
    assert (result.successful_rows, result.quarantined_rows) == (2, 0)
    assert [r["event_id"] for r in rows(workspace, "SELECT event_id FROM customer_events ORDER BY event_id")] == [
        "e1",
        "e2",
    ]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(0, True), (255, True), (256, False), (-1, False), ("42", True), (42.5, False), (True, False), ("", False)],
)
def test_uint8_bounds(workspace, value, accepted):
    result = workspace.append("customer_demographics", ndjson({"customer_id": "c", "age": value, "location": "x"}))
    assert result.successful_rows == int(accepted)
    assert result.quarantined_rows == int(not accepted)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2025-01-02 03:04:05", "2025-01-02 03:04:05"),
        ("2025-01-02T03:04:05Z", "2025-01-02 03:04:05"),
        (1735787045, "2025-01-02 03:04:05"),
        ("2025-02-30 00:00:00", None),
        ("9999-01-01 00:00:00", None),
        ("1969-12-31 23:59:59", None),
        ("soon", None),
    ],
)
def test_datetime_values(workspace, value, stored):
    result = workspace.append("customer_events", ndjson(dict(EVENT, timestamp=value)))
    assert result.quarantined_rows == (stored is None)
    if stored:
        assert rows(workspace, "SELECT timestamp FROM customer_events") == [{"timestamp": stored}]


def test_gzipped_file_and_chunked_append(workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "CHUNK_BYTES", 1000)
    body = ndjson(*[dict(EVENT, event_id=f"e{i}") for i in range(100)]) + b"garbage\n"
    path = tmp_path / "events.ndjson.gz"
    path.write_bytes(gzip.compress(body))
    progress = []
    result = workspace.append("customer_events", path, on_progress=progress.append)
    assert (result.successful_rows, result.quarantined_rows) == (100, 1)
    assert len(progress) > 10 and sum(progress) == len(body)
    assert workspace.row_count("customer_events") == 100


def test_chunked_bytes_keep_every_row(workspace, monkeypatch):
    monkeypatch.setattr(engine_module, "CHUNK_BYTES", 500)
    result = workspace.append("customer_events", ndjson(*[dict(EVENT, event_id=f"e{i}") for i in range(50)]))
    assert result.successful_rows == 50 == workspace.row_count("customer_events")


def test_appends_feed_the_materializations(workspace):
    workspace.append("customer_events", ndjson(EVENT, dict(EVENT, event_id="e2", customer_id=" CUST_1")))
    data = rows(workspace, "SELECT customer_id, events AS n FROM customer_engagement_mv FINAL")
    assert data == [{"customer_id": "cust_1", "n": 2}]
    copies = rows(
        workspace, "SELECT customer_id, count() AS n FROM customer_events_by_customer_mv GROUP BY customer_id"
    )
    assert copies == [{"customer_id": "cust_1", "n": 2}]


def test_unknown_datasource_and_missing_file(workspace, tmp_path):
    with pytest.raises(NotFoundError, match="nope"):
        workspace.append("nope", b"{}\n")
    with pytest.raises(IngestError, match="not found"):
        workspace.append("customers", tmp_path / "missing.ndjson")
