"""Endpoint requests, recorded for the service datasources `tinybird.pipe_stats_rt` and `tinybird.pipe_stats`.

Every call of an endpoint is recorded (pipe, start time, duration, rows and bytes the query read, rows returned,
status code, error, token name, parameters) into the tables `tbkit.query.service_datasources` defines.

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
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine
from ..errors import TbkitError
from ..query.service_datasources import DATABASE, DDL

log = logging.getLogger("tbkit.stats")

BATCH_ROWS = 1000  # a batch this large is written at once
FLUSH_AFTER = 1.0  # seconds a recorded request waits, at most, before its batch is written


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
    """The batch of requests a server recorded, and its writes into the engine's service tables."""

    def __init__(self, engine: Engine):
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
        for statement in DDL:
            self._engine.execute(statement)
        self._tables_ready.set()

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
