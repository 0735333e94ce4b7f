"""The six endpoints over the fixtures, at the pinned as_of: segments, thresholds, IDs and errors."""

from __future__ import annotations

import pytest

from tbkit.checks import golden
from tbkit.checks.cases import run_check
from tbkit.checks.targets import EmbeddedTarget
from tbkit.errors import ParameterError
from tbkit.query import Reader

from .conftest import AS_OF


def lookup(ws, customer_id: str, **params) -> list[dict]:
    params = {"customer_id": customer_id, "as_of": AS_OF, **params}
    return Reader(ws).endpoint("customer_segment_lookup", params)["data"]


@pytest.mark.parametrize(
    ("customer", "lifetime_value", "segment"),
    [
        ("cust_001", 1000.00, "VIP"),
        ("cust_002", 999.99, "High Value"),
        ("cust_003", 1000.01, "VIP"),
        ("cust_004", 500.00, "High Value"),
        ("cust_005", 499.99, "Medium Value"),
        ("cust_006", 500.01, "High Value"),
        ("cust_007", 100.00, "Medium Value"),
        ("cust_008", 99.99, "Low Value"),
        ("cust_009", 100.01, "Medium Value"),
    ],
)
def test_value_segment_thresholds(seeded, customer, lifetime_value, segment):
    [row] = lookup(seeded, customer)
    assert (row["lifetime_value"], row["value_segment"]) == (lifetime_value, segment)


@pytest.mark.parametrize(
    ("customer", "tenure_days", "segment"),
    [
        ("cust_010", 730, "Loyal"),
        ("cust_011", 729, "Established"),
        ("cust_012", 731, "Loyal"),
        ("cust_013", 180, "Established"),
        ("cust_014", 179, "New"),
        ("cust_015", 181, "Established"),
    ],
)
def test_loyalty_segment_thresholds(seeded, customer, tenure_days, segment):
    [row] = lookup(seeded, customer)
    assert (row["tenure_days"], row["loyalty_segment"]) == (tenure_days, segment)


@pytest.mark.parametrize(
    ("customer", "days", "level"),
    [
        ("cust_016", 7, "Active"),
        ("cust_017", 8, "Recent"),
        ("cust_018", 6, "Active"),
        ("cust_019", 30, "Recent"),
        ("cust_020", 31, "Inactive"),
        ("cust_021", 29, "Recent"),
        ("cust_022", 90, "Inactive"),
        ("cust_023", 91, "Dormant"),
        ("cust_024", 89, "Inactive"),
        ("cust_025", None, "Dormant"),
    ],
)
def test_activity_level_thresholds(seeded, reader, customer, days, level):
    [row] = lookup(seeded, customer)
    assert (row["days_since_last_event"], row["activity_level"]) == (days, level)
    engagement = reader.endpoint(
        "customer_engagement_analysis", {"customer_id": customer, "as_of": AS_OF, "activity_level": level}
    )["data"]
    assert [r["customer_id"] for r in engagement] == ([customer] if days is not None else [])


@pytest.mark.parametrize("spelling", ["cust_032", "CUST_032", "  CUST_032  ", " Cust_032"])
def test_ids_match_whatever_their_case_and_padding(seeded, reader, spelling):
    [row] = lookup(seeded, spelling)
    assert row["customer_id"] == "cust_032"
    [cltv] = reader.endpoint("customer_cltv", {"customer_id": spelling})["data"]
    assert cltv["customer_id"] == "cust_032"
    assert cltv["transactions"] == 3  # sent as "  CUST_032  ", "CUST_032" and "cust_032"


def test_every_output_id_is_normalized(reader):
    data = reader.endpoint("customer_engagement_analysis", {"as_of": AS_OF, "limit": 10000})["data"]
    assert data and all(r["customer_id"] == r["customer_id"].strip().lower() for r in data)


def test_latest_record_wins_whatever_the_arrival_order(seeded):
    [row] = lookup(seeded, "CUST_026")
    assert (row["lifetime_value"], row["location"], row["value_segment"]) == (1250, "New York", "VIP")


def test_only_events_at_or_before_as_of_count(seeded):
    [row] = lookup(seeded, "cust_028")
    assert (row["total_events"], row["last_event_at"], row["activity_level"]) == (0, None, "Dormant")
    [row] = lookup(seeded, "cust_032")
    assert row["last_event_at"] == AS_OF  # an event exactly at as_of counts
    earlier = lookup(seeded, "cust_001", as_of="2025-01-01 00:00:00")
    assert earlier[0]["total_events"] < lookup(seeded, "cust_001")[0]["total_events"]


def test_customers_who_signed_up_after_as_of_are_unknown(seeded):
    assert lookup(seeded, "cust_027") == []
    assert lookup(seeded, "cust_999") == []


def test_engagement_window_bounds_are_inclusive_and_exact(reader):
    def customers(**params):
        data = reader.endpoint("customer_engagement_analysis", {"as_of": AS_OF, **params})["data"]
        return {r["customer_id"]: r["total_events"] for r in data}

    # The last events of cust_001, cust_002 and cust_003 are at 2025-06-28 08:30:00.
    assert "cust_001" in customers(start_date="2025-06-28 08:30:00")
    assert "cust_001" not in customers(start_date="2025-06-28 08:30:01")
    exact = customers(start_date="2025-06-28 08:30:00", end_date="2025-06-28 08:30:00")
    assert exact == {"cust_001": 1, "cust_002": 1, "cust_003": 1}


def test_segments_summary_adds_up_to_the_customers_known_at_as_of(reader):
    data = reader.endpoint("customer_segments_summary", {"as_of": AS_OF})["data"]
    # 38 designed customers + cust123, minus cust_027 who signs up after as_of.
    assert sum(r["customers"] for r in data) == 38
    order = [(r["value_segment"], r["loyalty_segment"]) for r in data]
    assert order == sorted(
        order,
        key=lambda p: (
            ["VIP", "High Value", "Medium Value", "Low Value"].index(p[0]),
            ["Loyal", "Established", "New"].index(p[1]),
        ),
    )


def test_cltv_includes_the_seed_outlier(reader):
    [summary] = reader.endpoint("cltv_summary")["data"]
    assert summary["total_revenue"] > 184751118
    [row] = reader.endpoint("customer_cltv", {"customer_id": "cust_969"})["data"]
    assert row["cltv"] == 184751118
    locations = reader.endpoint("cltv_by_location")["data"]
    assert locations[0]["location"] == "San Diego"
    averages = [r["average_cltv"] for r in locations]
    assert averages == sorted(averages, reverse=True)


@pytest.mark.parametrize(
    ("endpoint", "params", "phrase"),
    [
        ("customer_segment_lookup", {}, "customer_id"),
        ("customer_segment_lookup", {"customer_id": " "}, "customer_id"),
        ("customer_segment_lookup", {"customer_id": "c", "as_of": "noon"}, "DateTime"),
        ("customer_cltv", {}, "customer_id"),
        ("customer_engagement_analysis", {"limit": "0"}, "limit"),
        ("customer_engagement_analysis", {"limit": "10001"}, "limit"),
        ("customer_engagement_analysis", {"limit": "x"}, "Int32"),
        ("customer_engagement_analysis", {"activity_level": "Asleep"}, "activity_level"),
        ("customer_engagement_analysis", {"start_date": "2025-01-01"}, "DateTime"),
        ("customer_segments_summary", {"min_age": "50", "max_age": "40"}, "min_age"),
        ("customer_segments_summary", {"min_age": "256"}, "UInt8"),
    ],
)
def test_bad_parameters_are_400s(reader, endpoint, params, phrase):
    with pytest.raises(ParameterError) as error:
        reader.endpoint(endpoint, params)
    assert error.value.status == 400
    assert phrase in str(error.value)


@pytest.mark.parametrize(
    "attack", ["cust_001' OR '1'='1", "cust_001\\' OR 1=1 --", "x' UNION SELECT * FROM customers --"]
)
def test_string_parameters_cannot_inject_sql(seeded, reader, attack):
    assert lookup(seeded, attack) == []
    assert reader.endpoint("customer_cltv", {"customer_id": attack})["data"] == []


def test_limit_reports_rows_before_limit(reader):
    response = reader.endpoint("customer_engagement_analysis", {"as_of": AS_OF, "limit": "5"})
    assert response["rows"] == 5
    assert response["rows_before_limit_at_least"] > 5
    assert set(response["statistics"]) >= {"elapsed", "rows_read", "bytes_read"}


def test_every_golden_case_passes_on_the_embedded_engine(engine, project, layout):
    cases = golden.load_cases(layout.cases_dir, project)
    assert len(cases) >= 40
    assert {c.endpoint for c in cases} == set(project.endpoints)
    target = EmbeddedTarget(project, engine)
    try:
        target.prepare(layout.fixtures_dir)
        report = run_check(cases, target, layout.golden_dir)
    finally:
        target.close()
    failures = {r.case.id: r.differences for r in report.results if not r.ok}
    assert failures == {}
    assert sum(r.ok for r in report.results) == len(report.results) == len(cases)


def _ranking(ws, **params) -> dict:
    return Reader(ws).endpoint("customer_engagement_analysis", {"limit": "10000", **params})


def test_unfiltered_engagement_reads_the_precomputed_ranking_and_agrees_with_the_events(seeded):
    fast = _ranking(seeded)
    exact = _ranking(seeded, end_date="2100-01-01 00:00:00")  # any filter takes the path over the events
    assert fast["data"] == exact["data"]
    assert fast["meta"] == exact["meta"]
    assert len(fast["data"]) == 37  # every customer with events by now, cust_028 included
    assert fast["statistics"]["rows_read"] < exact["statistics"]["rows_read"]


def test_events_dated_in_the_future_never_count_before_they_happen(workspace, layout):
    for name in ("customers", "customer_events"):
        workspace.append(name, layout.fixtures_dir / f"{name}.ndjson")
    future = '{"event_id": "f1", "customer_id": "cust_025", "event_type": "login", "timestamp": "2100-01-01 00:00:00"}'
    workspace.append("customer_events", future.encode() + b"\n")
    fast = _ranking(workspace)
    assert "cust_025" not in {row["customer_id"] for row in fast["data"]}
    assert fast["data"] == _ranking(workspace, start_date="1970-01-01 00:00:00")["data"]


def test_a_small_answer_is_formatted_on_one_thread_from_the_next_call(seeded, reader):
    engine = seeded.engine
    with engine.connections.connection(readonly=True) as conn:
        assert conn.query("SELECT getSetting('output_format_parallel_formatting')", "TSV").bytes() == b"true\n"
    with engine.connections.connection(readonly=True, serial_output=True) as conn:
        assert conn.query("SELECT getSetting('output_format_parallel_formatting')", "TSV").bytes() == b"false\n"
    params = {"customer_id": "cust_001", "as_of": AS_OF}
    reader.small_answers.pop("customer_segment_lookup", None)
    first = reader.endpoint("customer_segment_lookup", params)  # not known yet: formatted in parallel
    assert reader.small_answers["customer_segment_lookup"] is True
    second = reader.endpoint("customer_segment_lookup", params)  # small last time: on one thread
    assert {k: v for k, v in first.items() if k != "statistics"} == {
        k: v for k, v in second.items() if k != "statistics"
    }
    assert first["data"][0]["customer_id"] == "cust_001"
