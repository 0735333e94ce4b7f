"""Endpoint request statistics: Tinybird's service datasources `tinybird.pipe_stats_rt` and `tinybird.pipe_stats`.

Every call of an endpoint is recorded (pipe, start time, duration, rows and bytes the query read, rows returned,
status code, error, token name, parameters). The Query API shows each workspace its own rows as
`tinybird.pipe_stats_rt` (one row per request, kept 7 days as in Tinybird) and `tinybird.pipe_stats` (one row
per day and pipe, with the `avg_duration_state` and `quantile_timing_state` aggregate states that
`tb endpoint stats` merges).

Storage: two tables of the engine in the database `tbkit_service`, shared by the workspaces of a data directory
(each row names its workspace's database), so statistics survive restarts like the data does. `pipe_stats` is an
AggregatingMergeTree fed by a materialized view over `pipe_stats_rt`, as in Tinybird, so it keeps days the
7-day TTL of `pipe_stats_rt` has dropped.

Recording keeps the request path free of engine work: answering a request only appends a row to an in-memory
batch (a lock held for a list append). The batch is written with one INSERT in the thread pool a second after its
first row, or at once when it holds BATCH_ROWS rows, so steady traffic costs the engine about one insert a second.
An in-memory ring read through a `values(...)` table function was the alternative; it was not chosen because a
query embedding the rows is bounded by ClickHouse's max_query_size (256 KiB, a few hundred requests) and nothing
would survive a restart. The price: as with Tinybird's own service datasources, a request shows up in them a
moment (about a second) after it is answered, and the requests of that last second are lost if the server stops.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import uuid
import weakref
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ..engine.ingest import quote
from ..errors import TbkitError

log = logging.getLogger("tbkit.stats")

DATABASE = "tbkit_service"
BATCH_ROWS = 1000  # a batch this large is written at once
FLUSH_AFTER = 1.0  # seconds a recorded request waits, at most, before its batch is written
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

_DDL = (
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

# Whether the tables exist, as far as this process knows (chDB holds one data directory per process).
_tables_ready = threading.Event()


def subquery(name: str, database: str) -> str:
    """The SELECT that reads service datasource `name` for the workspace whose engine database is `database`.

    Before this process has made sure the tables exist (on its first recorded request or pipe listing), an
    empty table of the same columns: nothing was recorded yet, or not in a table this process has seen.
    """
    table, columns = SERVICE_DATASOURCES[name]
    names = ", ".join(column for column, _ in columns)
    if not _tables_ready.is_set():
        structure = ", ".join(f"{column} {kind}" for column, kind in columns)
        return f"SELECT {names} FROM null({quote(structure)})"
    return f"SELECT {names} FROM {DATABASE}.{table} WHERE workspace = {quote(database)}"


@dataclass
class EndpointRequest:
    """One answered endpoint request, as pipe_stats_rt records it."""

    pipe_id: str
    pipe_name: str
    started: float  # epoch seconds
    duration: float  # seconds
    status_code: int
    method: str
    url: str  # without token values
    token_name: str
    parameters: dict[str, str] = field(default_factory=dict)
    read_rows: int = 0
    read_bytes: int = 0
    result_rows: int = 0
    user_agent: str | None = None

    def row(self, database: str) -> dict[str, Any]:
        """The pipe_stats_rt row (JSONEachRow) for the workspace whose engine database is `database`."""
        start = dt.datetime.fromtimestamp(self.started, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        return {
            "workspace": database,
            "start_datetime": start,
            "pipe_id": self.pipe_id,
            "pipe_name": self.pipe_name,
            "duration": round(self.duration, 6),
            "read_bytes": self.read_bytes,
            "read_rows": self.read_rows,
            "result_rows": self.result_rows,
            "url": self.url,
            "error": int(self.status_code >= 400),
            "request_id": uuid.uuid4().hex,
            "token": self.token_name,  # tokens are identified by name (the Tokens API takes name or id)
            "token_name": self.token_name,
            "status_code": self.status_code,
            "method": self.method,
            "parameters": self.parameters,
            "release": "",
            "user_agent": self.user_agent,
            "resource_tags": [],
            "cpu_time": 0.0,  # chDB reports no per-query CPU time
        }


class RequestLog:
    """The batch of recorded requests of one engine, and its writes."""

    def __init__(self, engine: Any):
        self._engine = engine
        self._pending: list[tuple[str, EndpointRequest]] = []
        self._lock = threading.Lock()  # guards _pending and _scheduled; never held during engine work
        self._flush_lock = threading.Lock()  # one write at a time, in recording order
        self._scheduled = False
        self._tables_ready = threading.Event()

    def ensure_tables(self) -> None:
        """Create the service tables once (idempotent: they may already exist in the data directory)."""
        if self._tables_ready.is_set():
            return
        for statement in _DDL:
            self._engine.execute(statement)
        self._tables_ready.set()
        _tables_ready.set()

    def record(self, database: str, request: EndpointRequest, executor: Executor) -> None:
        """Add a request to the batch (on the event loop); the batch is written in `executor` soon after."""
        with self._lock:
            self._pending.append((database, request))  # made a row when written, off the event loop
            full = len(self._pending) >= BATCH_ROWS
            first = not self._scheduled
            self._scheduled = True
        loop = asyncio.get_running_loop()
        if full:
            loop.run_in_executor(executor, self.flush)
        elif first:
            loop.call_later(FLUSH_AFTER, loop.run_in_executor, executor, self.flush)

    @property
    def pending(self) -> int:
        """Requests recorded but not written yet."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write the batch with one INSERT; the number of requests written."""
        with self._flush_lock:
            with self._lock:
                rows, self._pending, self._scheduled = self._pending, [], False
            if not rows:
                return 0
            data = "\n".join(json.dumps(request.row(database)) for database, request in rows)
            try:
                self.ensure_tables()
                self._engine.execute(f"INSERT INTO {DATABASE}.pipe_stats_rt FORMAT JSONEachRow\n{data}")
            except TbkitError as e:  # statistics are best effort: a failed write never fails a request
                log.warning("could not record %d endpoint requests: %s", len(rows), e)
                return 0
            return len(rows)


_logs: weakref.WeakKeyDictionary[Any, RequestLog] = weakref.WeakKeyDictionary()
_logs_lock = threading.Lock()


def request_log(engine: Any) -> RequestLog:
    """The request log of an engine (one per engine, shared by the servers and workspaces over it)."""
    with _logs_lock:
        found = _logs.get(engine)
        if found is None:
            found = _logs[engine] = RequestLog(engine)
        return found
