"""Tinybird's service datasources `tinybird.pipe_stats_rt` and `tinybird.pipe_stats`, as the Query API reads them.

The Query API shows each workspace its own rows: `tinybird.pipe_stats_rt` (one row per endpoint request, kept 7 days
as in Tinybird) and `tinybird.pipe_stats` (one row per day and pipe, with the `avg_duration_state` and
`quantile_timing_state` aggregate states that `tb endpoint stats` merges).

Storage: two tables of the engine in the database `tbkit_service`, shared by the workspaces of a data directory
(each row names its workspace's database), so statistics survive restarts like the data does. `pipe_stats` is an
AggregatingMergeTree fed by a materialized view over `pipe_stats_rt`, as in Tinybird, so it keeps days the
7-day TTL of `pipe_stats_rt` has dropped. A server creates them and records its requests in them
(`tbkit.server.requests`).
"""

from __future__ import annotations

from ..engine.ingest import quote

DATABASE = "tbkit_service"
RT_TTL_DAYS = 7  # as Tinybird's pipe_stats_rt

# The columns of Tinybird's tinybird.pipe_stats_rt, in its order.
RT_COLUMNS = (
    ("start_datetime", "DateTime"),
    ("pipe_id", "String"),
    ("pipe_name", "String"),
    ("duration", "Float32"),
    ("read_bytes", "UInt64"),
    ("read_rows", "UInt64"),
    ("result_rows", "UInt64"),
    ("url", "Nullable(String)"),
    ("error", "UInt8"),
    ("request_id", "String"),
    ("token", "String"),
    ("token_name", "String"),
    ("status_code", "Int32"),
    ("method", "String"),
    ("parameters", "Map(String, String)"),
    ("release", "String"),
    ("user_agent", "Nullable(String)"),
    ("resource_tags", "Array(String)"),
    ("cpu_time", "Float32"),
)
# The columns of Tinybird's tinybird.pipe_stats (per day and pipe), as they read in a query.
DAILY_COLUMNS = (
    ("date", "Date"),
    ("pipe_id", "String"),
    ("pipe_name", "String"),
    ("view_count", "UInt64"),
    ("error_count", "UInt64"),
    ("avg_duration_state", "AggregateFunction(avg, Float32)"),
    ("quantile_timing_state", "AggregateFunction(quantilesTiming(0.9, 0.95, 0.99), Float64)"),
    ("read_bytes_sum", "UInt64"),
    ("read_rows_sum", "UInt64"),
    ("resource_tags", "Array(String)"),
)
# How the daily table stores them: sums as SimpleAggregateFunction, so merged parts add up.
_DAILY_STORED = {
    "view_count": "SimpleAggregateFunction(sum, UInt64)",
    "error_count": "SimpleAggregateFunction(sum, UInt64)",
    "read_bytes_sum": "SimpleAggregateFunction(sum, UInt64)",
    "read_rows_sum": "SimpleAggregateFunction(sum, UInt64)",
    "resource_tags": "SimpleAggregateFunction(groupUniqArrayArray, Array(String))",
}
# Service datasource name -> (table in DATABASE, columns).
SERVICE_DATASOURCES = {
    "tinybird.pipe_stats_rt": ("pipe_stats_rt", RT_COLUMNS),
    "tinybird.pipe_stats": ("pipe_stats", DAILY_COLUMNS),
}

DDL = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.pipe_stats_rt (workspace String, "
    + ", ".join(f"{name} {kind}" for name, kind in RT_COLUMNS)
    + ") ENGINE = MergeTree PARTITION BY toYYYYMMDD(start_datetime) ORDER BY (workspace, pipe_id, start_datetime) "
    f"TTL start_datetime + INTERVAL {RT_TTL_DAYS} DAY",
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.pipe_stats (workspace String, "
    + ", ".join(f"{name} {_DAILY_STORED.get(name, kind)}" for name, kind in DAILY_COLUMNS)
    + ") ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(date) ORDER BY (workspace, date, pipe_id, pipe_name)",
    f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.pipe_stats_mv TO {DATABASE}.pipe_stats AS "
    "SELECT workspace, toDate(start_datetime) AS date, pipe_id, pipe_name, count() AS view_count, "
    "toUInt64(sum(error)) AS error_count, avgState(duration) AS avg_duration_state, "
    "quantilesTimingState(0.9, 0.95, 0.99)(toFloat64(duration) * 1000) AS quantile_timing_state, "
    "sum(read_bytes) AS read_bytes_sum, sum(read_rows) AS read_rows_sum, "
    "groupUniqArrayArray(resource_tags) AS resource_tags "
    f"FROM {DATABASE}.pipe_stats_rt GROUP BY workspace, date, pipe_id, pipe_name",
)


def subquery(name: str, database: str, tables_exist: bool) -> str:
    """The SELECT that reads service datasource `name` for the workspace whose engine database is `database`.

    Where the tables do not exist (no server recorded anything in this data directory), an empty table of the same
    columns: nothing was recorded.
    """
    table, columns = SERVICE_DATASOURCES[name]
    names = ", ".join(column for column, _ in columns)
    if not tables_exist:
        structure = ", ".join(f"{column} {kind}" for column, kind in columns)
        return f"SELECT {names} FROM null({quote(structure)})"
    return f"SELECT {names} FROM {DATABASE}.{table} WHERE workspace = {quote(database)}"
