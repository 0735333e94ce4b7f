"""Per-customer endpoints read a bounded number of rows however large the event tables grow."""

from __future__ import annotations

import pytest

from tbkit.query import Reader

from .conftest import AS_OF, LANDING

pytestmark = pytest.mark.slow


def add_events(ws, count: int, offset: int) -> None:
    """Append `count` synthetic events of 50k other customers over the three years before AS_OF."""
    ws.engine.execute(
        f"INSERT INTO {ws.name}.customer_events "
        "SELECT concat('syn_', toString(number)), concat('CUST_S', toString(number % 50000)), "
        "['purchase', 'login', 'page_view'][number % 3 + 1], number % 97, '', '', "
        f"toDateTime('{AS_OF}') - toIntervalSecond(number * 7919 % (3 * 365 * 86400)) "
        f"FROM numbers({offset}, {count})"
    )


def add_transactions(ws, count: int, offset: int) -> None:
    ws.engine.execute(
        f"INSERT INTO {ws.name}.customer_transactions "
        "SELECT concat('cust_s', toString(number % 50000)), "
        f"toDateTime('{AS_OF}') - toIntervalSecond(number * 7919 % (3 * 365 * 86400)), number % 500 "
        f"FROM numbers({offset}, {count})"
    )


def settle(ws) -> None:
    """Merge parts as background merges eventually would, so both measurements see steady state."""
    for table in (
        "customer_events",
        "customer_events_by_customer_mv",
        "customer_transactions",
        "customer_cltv_mv",
    ):
        ws.engine.execute(f"OPTIMIZE TABLE {ws.name}.{table} FINAL")


def rows_read(ws) -> dict[str, int]:
    reads = {}
    for endpoint in ("customer_segment_lookup", "customer_cltv"):
        response = Reader(ws).endpoint(endpoint, {"customer_id": "cust_034", "as_of": AS_OF})
        assert response["rows"] == 1
        reads[endpoint] = response["statistics"]["rows_read"]
    return reads


def test_per_customer_reads_do_not_grow_with_the_event_tables(workspace, layout):
    for name in LANDING:
        workspace.append(name, layout.fixtures_dir / f"{name}.ndjson")
    add_events(workspace, 200_000, 0)
    add_transactions(workspace, 100_000, 0)
    settle(workspace)
    before = rows_read(workspace)
    events_before = workspace.row_count("customer_events")

    add_events(workspace, 1_800_000, 200_000)
    add_transactions(workspace, 900_000, 100_000)
    settle(workspace)
    after = rows_read(workspace)
    events_after = workspace.row_count("customer_events")

    assert events_after >= 10 * events_before * 0.99
    for endpoint, read in after.items():
        # Granule-bounded: the same order of rows as before, and a tiny share of the table.
        assert read <= before[endpoint] * 1.5 + 8192, (endpoint, before, after)
        assert read < events_after / 20, (endpoint, read, events_after)
