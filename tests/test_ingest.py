"""Appending NDJSON: JSON paths, defaults, quarantine with Tinybird's columns, and counts that add up."""

from __future__ import annotations

import errno
import gzip
import json
import os

import pytest

from tbkit.engine import Workspace, ingest
from tbkit.engine import append as appends
from tbkit.errors import IngestError, NotFoundError, QueryError
from tbkit.project.datafiles import load_project
from tbkit.query import Reader

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
    return json.loads(Reader(workspace).sql(sql))["data"]


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
    monkeypatch.setattr(appends, "CHUNK_BYTES", 1000)
    body = ndjson(*[dict(EVENT, event_id=f"e{i}") for i in range(100)]) + b"garbage\n"
    path = tmp_path / "events.ndjson.gz"
    path.write_bytes(gzip.compress(body))
    progress = []
    result = workspace.append("customer_events", path, on_progress=progress.append)
    assert (result.successful_rows, result.quarantined_rows) == (100, 1)
    assert len(progress) > 10 and sum(progress) == len(body)
    assert workspace.row_count("customer_events") == 100


@pytest.mark.parametrize("copy", ["copy_file_range", "unsupported", "absent"])
def test_large_uncompressed_file_goes_in_slices_that_end_at_line_breaks(workspace, tmp_path, monkeypatch, copy):
    """A file larger than CHUNK_BYTES is appended in slices copied by the kernel, or by Python where the
    kernel cannot (another file system, another OS): the same rows either way."""
    monkeypatch.setattr(appends, "CHUNK_BYTES", 1000)
    if copy == "unsupported":
        monkeypatch.setattr(os, "copy_file_range", lambda *args: (_ for _ in ()).throw(OSError(errno.EXDEV, "")))
    elif copy == "absent":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    last = json.dumps(dict(EVENT, event_id="last")).encode()  # no line break at the end of the file
    body = ndjson(*[dict(EVENT, event_id=f"e{i}") for i in range(100)]) + b"garbage\n" + last
    path = tmp_path / "events.ndjson"
    path.write_bytes(body)
    slices = list(appends._file_slices(path))
    assert len(slices) > 10 and all(body[s.end - 1 : s.end] == b"\n" for s in slices[:-1])
    assert slices[0].start == 0 and slices[-1].end == len(body)
    assert all(a.end == b.start for a, b in zip(slices, slices[1:], strict=False))
    progress = []
    result = workspace.append("customer_events", path, on_progress=progress.append)
    assert (result.successful_rows, result.quarantined_rows) == (101, 1)
    assert sum(progress) == len(body) and len(progress) == len(slices)
    assert workspace.row_count("customer_events") == 101
    assert not list(workspace.engine.tmp_dir.glob("*.ndjson"))


def test_a_line_that_is_not_an_object_keeps_no_column_values_in_quarantine(workspace):
    """ClickHouse's JSONExtract reads an array's elements by position: an array line must not fill the columns."""
    line = json.dumps(list(EVENT.values()))
    result = workspace.append("customer_events", ndjson(line, dict(EVENT, event_value="free")))
    assert (result.successful_rows, result.quarantined_rows) == (0, 2)
    quarantined = rows(workspace, "SELECT * FROM customer_events_quarantine ORDER BY c__line")
    array_row = next(r for r in quarantined if r["c__line"] == line)
    assert array_row["c__error"] == ["the line is not a valid JSON object"]
    assert all(array_row[name] is None for name in EVENT), array_row
    object_row = next(r for r in quarantined if r["c__line"] != line)
    assert (object_row["event_id"], object_row["event_value"]) == ("e1", "free")


def test_chunked_bytes_keep_every_row(workspace, monkeypatch):
    monkeypatch.setattr(appends, "CHUNK_BYTES", 500)
    result = workspace.append("customer_events", ndjson(*[dict(EVENT, event_id=f"e{i}") for i in range(50)]))
    assert result.successful_rows == 50 == workspace.row_count("customer_events")


def test_the_quarantine_is_written_beside_the_accepted_rows_and_waited_for(workspace, monkeypatch):
    """Both writes of an append end before it returns, even when one fails: the stage they read is dropped
    only then, and the first error is the one raised."""
    monkeypatch.setattr(ingest, "insert_accepted", lambda *args: "INSERT INTO no_such_table SELECT 1")
    with pytest.raises(QueryError, match="no_such_table"):
        workspace.append("customer_events", ndjson(EVENT, "garbage"))
    assert workspace.row_count("customer_events_quarantine") == 1
    assert workspace.row_count("customer_events") == 0
    database = ingest.quote(workspace.name)
    stages = f"SELECT count() FROM system.tables WHERE database = {database} AND startsWith(name, '__stage_')"
    assert workspace.engine.scalar(stages) == "0"
    monkeypatch.undo()
    result = workspace.append("customer_events", ndjson(EVENT, "garbage"))
    assert (result.successful_rows, result.quarantined_rows) == (1, 1)


def test_appends_feed_the_materializations(workspace):
    workspace.append("customer_events", ndjson(EVENT, dict(EVENT, event_id="e2", customer_id=" CUST_1")))
    data = rows(workspace, "SELECT customer_id, events AS n FROM customer_engagement_mv FINAL")
    assert data == [{"customer_id": "cust_1", "n": 2}]
    copies = rows(
        workspace, "SELECT customer_id, count() AS n FROM customer_events_by_customer_mv GROUP BY customer_id"
    )
    assert copies == [{"customer_id": "cust_1", "n": 2}]


def test_an_append_interrupted_between_a_datasource_and_its_views_is_repaired_at_start(workspace, monkeypatch):
    """A kill can land after an append's rows reached the datasource and before they reached every target (ClickHouse
    does not write a table and its views atomically). The stage it leaves names the datasource, and the next start
    rebuilds that datasource's targets from their sources."""
    workspace.append("customer_events", ndjson(EVENT, dict(EVENT, event_id="e2")))
    stages = []
    real_execute = workspace.engine.execute

    def killed_after_the_datasource(sql, *args, **kwargs):
        if sql.startswith("CREATE TABLE") and "__stage_" in sql:
            stages.append(sql)
        if sql.startswith("DROP TABLE IF EXISTS") and "__stage_" in sql:
            raise KeyboardInterrupt  # the process dies before dropping its stage
        return real_execute(sql, *args, **kwargs)

    monkeypatch.setattr(workspace.engine, "execute", killed_after_the_datasource)
    with pytest.raises(KeyboardInterrupt):
        workspace.append("customer_events", ndjson(dict(EVENT, event_id="e3", timestamp="2025-03-04 05:06:07")))
    monkeypatch.undo()
    assert "COMMENT 'customer_events'" in stages[0]
    # ... and the by-customer copy never got the row.
    workspace.engine.execute(
        f"ALTER TABLE {workspace.name}.customer_events_by_customer_mv DELETE WHERE timestamp = '2025-03-04 05:06:07'"
        " SETTINGS mutations_sync = 2"
    )
    copies = "SELECT count() AS n FROM customer_events_by_customer_mv"
    assert rows(workspace, copies) == [{"n": 2}] and workspace.row_count("customer_events") == 3

    workspace.build()  # what a start does

    database = ingest.quote(workspace.name)
    leftover = f"SELECT count() FROM system.tables WHERE database = {database} AND startsWith(name, '__stage_')"
    assert workspace.engine.scalar(leftover) == "0"
    assert rows(workspace, copies) == [{"n": 3}]
    assert rows(workspace, "SELECT sum(events) AS n FROM customer_engagement_mv") == [{"n": 3}]


def test_unknown_datasource_and_missing_file(workspace, tmp_path):
    with pytest.raises(NotFoundError, match="nope"):
        workspace.append("nope", b"{}\n")
    with pytest.raises(IngestError, match="not found"):
        workspace.append("customers", tmp_path / "missing.ndjson")


def test_strings_that_look_like_json_are_strings_but_objects_and_arrays_are_not(workspace):
    looks = [dict(EVENT, event_id='{"a": 1}'), dict(EVENT, event_id="e2", product_id="[1, 2]")]
    composite = [dict(EVENT, event_id={"a": 1}), dict(EVENT, event_id="e4", product_id=[1, 2])]
    result = workspace.append("customer_events", ndjson(*looks, *composite))
    assert (result.successful_rows, result.quarantined_rows) == (2, 2)
    stored = rows(workspace, "SELECT event_id, product_id FROM customer_events ORDER BY event_id")
    assert stored == [{"event_id": "e2", "product_id": "[1, 2]"}, {"event_id": '{"a": 1}', "product_id": "p1"}]
    quarantined = rows(workspace, "SELECT c__error_column, c__error FROM customer_events_quarantine ORDER BY c__error")
    assert quarantined == [
        {"c__error_column": ["product_id"], "c__error": ["value '[1,2]' on column 'product_id' is not String"]},
        {"c__error_column": ["event_id"], "c__error": ["value '{\"a\":1}' on column 'event_id' is not String"]},
    ]


def test_objects_after_whitespace_and_repeated_keys(workspace):
    # The first of repeated keys counts, as ClickHouse's JSON functions read it; an object may follow spaces.
    repeated = '{"event_id": "e1", "event_id": {"x": 1}' + json.dumps(EVENT)[1:].replace('"event_id": "e1", ', ", ")
    spaced = " \t" + json.dumps(dict(EVENT, event_id="e2"))
    result = workspace.append("customer_events", ndjson(repeated, spaced))
    assert (result.successful_rows, result.quarantined_rows) == (2, 0)
    assert [r["event_id"] for r in rows(workspace, "SELECT event_id FROM customer_events ORDER BY event_id")] == [
        "e1",
        "e2",
    ]


def test_an_array_with_a_value_in_every_position_is_not_an_object(workspace):
    result = workspace.append("customer_events", ndjson(json.dumps(list(EVENT.values()))))
    assert (result.successful_rows, result.quarantined_rows) == (0, 1)
    [row] = rows(workspace, "SELECT c__error_column, c__error FROM customer_events_quarantine")
    assert row == {"c__error_column": [], "c__error": ["the line is not a valid JSON object"]}


def test_datasource_without_required_columns(engine, tmp_path):
    (tmp_path / "datasources").mkdir()
    (tmp_path / "datasources" / "loose.datasource").write_text(
        "SCHEMA >\n"
        "    `name` String `json:$.name` DEFAULT 'none',\n"
        "    `score` Nullable(Int32) `json:$.score`,\n"
        "    `city` String `json:$.address.city` DEFAULT '',\n"
        "    `tags` Array(String) `json:$.tags[:]` DEFAULT []\n\n"
        "ENGINE MergeTree\nENGINE_SORTING_KEY name\n"
    )
    ws = Workspace(engine, f"loose_{os.getpid()}", load_project(tmp_path))
    ws.drop()
    ws.build()
    try:
        good = ["{}", '{"name": "a", "score": null, "address": {"city": "Oslo"}, "tags": ["x", "y"]}']
        bad = ['{"name": "b"', "[1, 2]", '{"address": {"city": {"n": 1}}}', '{"tags": "[1]"}', '{"score": "x"}']
        result = ws.append("loose", ndjson(*good, *bad))
        assert (result.successful_rows, result.quarantined_rows) == (2, 5)
        assert rows(ws, "SELECT name, score, city, tags FROM loose ORDER BY name") == [
            {"name": "a", "score": None, "city": "Oslo", "tags": ["x", "y"]},
            {"name": "none", "score": None, "city": "", "tags": []},
        ]
        errors = rows(ws, "SELECT c__line, c__error_column FROM loose_quarantine ORDER BY c__line")
        assert {r["c__line"]: r["c__error_column"] for r in errors} == {
            '{"name": "b"': [],
            "[1, 2]": [],
            '{"address": {"city": {"n": 1}}}': ["city"],
            '{"tags": "[1]"}': ["tags"],
            '{"score": "x"}': ["score"],
        }
    finally:
        ws.drop()
