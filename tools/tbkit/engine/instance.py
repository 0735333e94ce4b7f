"""The embedded engine: one chDB instance over a data directory, running the SQL of every workspace in it.

An `Engine` only runs SQL (sqlmesh's engine adapter is the model): it borrows a connection from its pools
(`connections.py`), turns ClickHouse's failures into tbkit's errors (a timeout, a memory limit, a full disk) and
keeps room on the disk for the appends in flight. What the SQL means (a workspace's tables, appends, endpoint
calls) is the business of the modules above it. chDB holds one data directory per process, so a process has at
most one open engine, which its callers share by passing it along.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from ..errors import (
    MemoryLimitError,
    QueryError,
    QueryTimeoutError,
    ServerMemoryError,
    StorageFullError,
    TbkitError,
)
from ..sizes import format_size
from .connections import Connections, MemoryLimits
from .datadir import claim_data_dir, stderr_kept

_CLICKHOUSE_CODE = re.compile(r"Code: (\d+)\.")
# Trailing "(ERROR_NAME) (version 26.9.2.1)" decorations of ClickHouse messages.
_CLICKHOUSE_SUFFIX = re.compile(r"(\s*\((?:[A-Z_]+|version [^)]*)\)\.?)+\s*$")
_TIMEOUT_CODES = {159, 394}  # TIMEOUT_EXCEEDED, QUERY_WAS_CANCELLED
_MEMORY_CODE = 241  # MEMORY_LIMIT_EXCEEDED: the query's own limit, or the server's ("(total)", OvercommitTracker)
_SERVER_MEMORY = re.compile(r"\(total\)|OvercommitTracker")
_SPACE_CODE = 243  # NOT_ENOUGH_SPACE: a part could not reserve room on the data directory's disk
_NO_SPACE = re.compile(r"No space left on device|errno: 28\b|ENOSPC", re.IGNORECASE)
# What chDB says when the process already holds another data directory.
_OTHER_PATH = re.compile(r"already initialized with path '([^']*)'")
# An append is refused before it writes anything when the data directory's disk has less free space than its
# input, plus the inputs of the appends in flight, plus this: parts are compressed, so an input's size covers the
# parts it writes, materialized views' included, and what is left keeps room for merges and metadata. (A disk
# that fills during an insert makes ClickHouse fail it midway, possibly after some of its parts were written.)
MIN_FREE_BYTES = 16 * 1024 * 1024


def clickhouse_message(error: Exception) -> tuple[int | None, str]:
    """The ClickHouse error code and message of a chDB exception, without codes, names and versions."""
    text = str(error).strip()
    code = _CLICKHOUSE_CODE.search(text)
    message = text.rsplit("DB::Exception: ", 1)[-1]
    message = message.split("\nStack trace", 1)[0]
    message = _CLICKHOUSE_SUFFIX.sub("", message).strip()
    return (int(code.group(1)) if code else None), (message or text.splitlines()[0])


class Engine:
    """One chDB instance over a data directory: runs the SQL of every workspace (a database) in it."""

    def __init__(self, path: Path, owns_path: bool, memory: MemoryLimits | None = None):
        self.path = path
        self._owns_path = owns_path
        self._claim: IO[str] | None = None  # the data directory's lock, for a directory the caller gave
        self.memory = memory or MemoryLimits()
        self.connections = Connections(path, self.memory)
        self.tmp_dir = path / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._reserved = 0  # bytes of the appends in flight (Engine.reserve)
        self._beside = ThreadPoolExecutor(2, thread_name_prefix="tbkit-write")  # Engine.execute_beside

    @classmethod
    def open(cls, path: str | Path | None = None, memory: MemoryLimits | None = None) -> Engine:
        """A new engine over the data directory `path` (locked for this process), or with None over a temporary
        folder that closing removes; `memory` limits its queries.

        chDB holds one data directory per process: while another engine of this process is open, TbkitError
        says so (pass that engine along instead, or close it first).
        """
        if path is None:
            engine = cls(Path(tempfile.mkdtemp(prefix="tbkit-")), owns_path=True, memory=memory)
        else:
            resolved = Path(path).resolve()
            claim = claim_data_dir(resolved)
            try:
                engine = cls(resolved, owns_path=False, memory=memory)
            except BaseException:
                claim.close()
                raise
            engine._claim = claim
        try:
            with stderr_kept() as printed, engine.connections.connection():  # fail now, not on the first request
                pass
        except (RuntimeError, OSError) as e:  # chDB refused its folder: say which file, change nothing
            engine._release()
            other = _OTHER_PATH.search(str(e))
            if other:
                raise TbkitError(
                    f"the embedded engine already runs on {Path(other.group(1)).parent} in this process; chDB holds "
                    f"one data directory per process, so close it before opening {engine.path}"
                ) from None
            lines = [line.strip(" .") for line in "".join(printed).splitlines() if line.strip(" .")]
            detail = _CLICKHOUSE_SUFFIX.sub("", lines[-1]) if lines else clickhouse_message(e)[1].strip(" .") or str(e)
            raise TbkitError(
                f"cannot open the data in {engine.path / 'chdb'}: {detail}. A file there is damaged or not "
                "chDB's; nothing was changed or deleted: restore it from a backup or use another --data-dir"
            ) from None
        return engine

    @classmethod
    @contextlib.contextmanager
    def or_temporary(cls, engine: Engine | None) -> Iterator[Engine]:
        """`engine` when the caller has one open (it stays open), else a temporary engine closed on exit."""
        if engine is not None:
            yield engine
            return
        engine = cls.open(None)
        try:
            yield engine
        finally:
            engine.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(
        self,
        sql: str,
        fmt: str = "TSV",
        readonly: bool = False,
        timeout: float | None = None,
        serial_output: bool = False,
    ) -> Any:
        """Run one statement (a read within `timeout` s); ClickHouse errors become QueryError or QueryTimeoutError.

        `serial_output` formats a read's answer on one thread: for a small answer that saves ClickHouse's parallel
        formatting hand-offs (0.1-0.2 ms a query on 2 cores); a large one formats faster in parallel.
        """
        pool, conn = self.connections.borrow(readonly, timeout, serial_output)
        try:
            result = conn.query(sql, fmt)
        except BaseException as e:
            # A failed or cancelled query can leave its partial output in the connection's buffer, where it
            # would be prepended to the next answer: never reuse such a connection.
            self.connections.discard(conn)
            if isinstance(e, RuntimeError):  # chDB raises ChdbError, a RuntimeError, for every failed query
                raise self._error(e, readonly, timeout) from None
            raise
        pool.append(conn)
        return result

    def _error(self, error: Exception, readonly: bool, timeout: float | None) -> TbkitError:
        """The tbkit error for a failed chDB query: timeouts, memory limits, a full disk, else QueryError."""
        code, message = clickhouse_message(error)
        if code in _TIMEOUT_CODES:
            return QueryTimeoutError(
                f"[Error] the query took longer than the {timeout or 0:g} s limit and was cancelled"
            )
        if code == _MEMORY_CODE and _SERVER_MEMORY.search(message):
            limit = f" of {format_size(self.memory.server)}" if self.memory.server else ""
            return ServerMemoryError(
                f"[Error] the server is at its memory limit{limit} (tbkit serve --max-server-memory), so this "
                "query was cancelled; retry when other queries have finished, or raise the limit"
            )
        if code == _MEMORY_CODE:
            limit = self.memory.query if readonly else self.memory.write
            if readonly:
                needed = f"more than {format_size(limit)}, " if limit else "more memory than "
                return MemoryLimitError(
                    f"[Error] the query needed {needed}the per-query memory limit (tbkit serve "
                    "--max-query-memory), and was cancelled: filter or aggregate earlier, add a LIMIT, or raise "
                    "the limit"
                )
            needed = f"more than {format_size(limit)}, " if limit else "more memory than "
            return MemoryLimitError(f"[Error] the statement needed {needed}the memory limit of a write: {message}")
        if code == _SPACE_CODE or _NO_SPACE.search(message):
            return self.storage_full(message)
        return QueryError(f"[Error] {message}")

    def execute_beside(self, sql: str) -> Future:
        """Run a write on another thread (and connection) while the caller runs another; the caller waits for it."""
        return self._beside.submit(self.execute, sql)

    @contextlib.contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        """Room for an append of `size` bytes on the data directory's disk, counting the appends in flight;
        StorageFullError, before anything is written, when the disk has less than that plus MIN_FREE_BYTES."""
        with self._lock:
            free = shutil.disk_usage(self.path).free - self._reserved
            if free < size + MIN_FREE_BYTES:
                raise self.storage_full(
                    f"an append of {format_size(size)} needs {format_size(size + MIN_FREE_BYTES)} free"
                    + (f", beside the appends in flight ({format_size(self._reserved)})" if self._reserved else "")
                )
            self._reserved += size
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= size

    def storage_full(self, detail: str, outcome: str = "") -> StorageFullError:
        """The error for a full disk: where the data is, what is free, what failed (`detail`), what was stored
        (`outcome`) and what to do; the error keeps `detail` for callers that add an outcome."""
        try:
            free = f" ({format_size(shutil.disk_usage(self.path).free)} free)"
        except OSError:
            free = ""
        detail, outcome = detail.rstrip(". "), f"; {outcome}" if outcome else ""
        error = StorageFullError(
            f"No space left on the device of the data directory {self.path}{free}: {detail}{outcome}. Free space "
            "(truncate or delete rows of a datasource, remove other files on that disk, or grow it) and retry"
        )
        error.detail = detail
        return error

    def scalar(self, sql: str) -> str:
        """The first value of the first row of a query, as text."""
        return self.execute(sql, "TSV").bytes().decode().split("\n", 1)[0].split("\t")[0]

    def workspaces(self) -> list[str]:
        """Names of the workspaces (databases) in this engine."""
        text = self.execute(
            "SELECT name FROM system.databases WHERE engine = 'Atomic' "
            "AND name NOT IN ('system', 'default', 'information_schema', 'INFORMATION_SCHEMA') ORDER BY name"
        )
        return [line for line in text.bytes().decode().splitlines() if line]

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.close()  # unlocks the data directory
            self._claim = None
        if self._owns_path:
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        """Close every connection (chDB then releases the data directory) and unlock it; a temporary folder is
        removed. Closing twice does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._beside.shutdown(wait=True)
        self.connections.close()
        self._release()
