"""chDB connections over one data directory: pooled by their settings, on either chDB generation.

chDB 4 gives every connection a session of its own, so a read connection is made read-only (`readonly = 2`)
with its time and memory limits set once. chDB 3.x holds one session per process (settings are process-wide,
closing any connection closes them all, queries run one at a time): there every connection is that session, and
a read carries its settings in its own SETTINGS clause (`ReadOnlyStatements`). The first connection finds out
which generation this is.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chdb

from ..errors import TbkitError

# Session settings of every connection: answers in UTC with 64-bit integers as JSON numbers, as Tinybird.
SESSION = (
    "SET session_timezone = 'UTC'",
    "SET output_format_json_quote_64bit_integers = 0",
    "SET output_format_json_quote_denormals = 0",
    "SET insert_null_as_default = 1",
)
# What a read-only connection over a shared session (chDB 3.x) runs: one SELECT, WITH ... SELECT or DESCRIBE.
_READ_STATEMENT = re.compile(r"^(SELECT|WITH|DESCRIBE)\b")
# A pool's settings: read-only, the read's time limit, and whether its answers are formatted on one thread.
PoolKey = tuple[bool, float | None, bool]


@dataclass(frozen=True)
class MemoryLimits:
    """Memory an engine's queries may use, in bytes (None: no limit of tbkit's own).

    `query` binds every read (ClickHouse's `max_memory_usage` on read-only connections: the Query API and
    endpoints); `write` binds each write (appends, builds, populates); `server` binds the whole engine
    (`max_server_memory_usage`, fixed when chDB starts in the process), so one query cannot starve the others.
    """

    query: int | None = None
    write: int | None = None
    server: int | None = None


class ReadOnlyStatements:
    """A read-only connection over the one session that every connection shares (chDB 3.x).

    There, `SET readonly = 2` on one connection would make every connection read-only for good, and a time
    limit set for reads would bind writes too. So each read carries its settings in its own SETTINGS clause,
    after ClickHouse's parser has normalized it (`formatQuerySingleLine`: no comment, no second statement
    that would run without them) and it has been checked to be one SELECT, WITH ... SELECT or DESCRIBE.
    """

    def __init__(self, session: Any, timeout: float | None, max_memory: int | None = None, serial_output: bool = False):
        self._session = session
        settings = ["readonly = 2"] + (["output_format_parallel_formatting = 0"] if serial_output else [])
        if max_memory:
            settings.append(f"max_memory_usage = {int(max_memory)}")
        if timeout:
            settings += [f"max_execution_time = {float(timeout)}", "timeout_before_checking_execution_speed = 0"]
        self._settings = ", ".join(settings)

    def query(self, sql: str, fmt: str = "CSV") -> Any:
        literal = "'" + sql.replace("\\", "\\\\").replace("'", "\\'") + "'"
        normalized = self._session.query(f"SELECT formatQuerySingleLine({literal})", "RawBLOB").bytes().decode()
        if not _READ_STATEMENT.match(normalized):
            raise RuntimeError(  # worded as ClickHouse's own refusal on a readonly = 2 connection
                "Code: 164. DB::Exception: Cannot execute query in readonly mode: a read-only connection runs "
                "one SELECT, WITH ... SELECT or DESCRIBE. (READONLY)"
            )
        return self._session.query(f"{normalized} SETTINGS {self._settings}", fmt)

    def close(self) -> None:
        """Nothing to release: the pool closes the shared session."""


class Connections:
    """The chDB connections of one data directory, in pools by settings; each pool is a list used as a stack
    (append and pop are atomic), so borrowing a connection takes no lock."""

    def __init__(self, path: Path, memory: MemoryLimits):
        self.path = path
        self.memory = memory
        self._pools: dict[PoolKey, list[Any]] = {}
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._server_option = True  # chDB takes max_server_memory_usage in a connection string (chDB 4)
        # chDB's one session when every connection shares it (chDB 3.x); None when each has its own (chDB 4).
        self.shared: Any = None
        self._probed = False
        self._probe_lock = threading.Lock()
        self.closed = False

    @contextlib.contextmanager
    def connection(
        self, readonly: bool = False, timeout: float | None = None, serial_output: bool = False
    ) -> Iterator[Any]:
        """Borrow a connection for one operation: read-only (limited to `timeout` seconds) or read-write."""
        pool, conn = self.borrow(readonly, timeout, serial_output)
        try:
            yield conn
        except BaseException:
            # A failed or cancelled query can leave its partial output in the connection's buffer, where it
            # would be prepended to the next answer: never reuse such a connection.
            self.discard(conn)
            raise
        pool.append(conn)

    def borrow(self, readonly: bool, timeout: float | None, serial_output: bool) -> tuple[list[Any], Any]:
        """The pool for these settings and a connection from it (a new one when it is empty); give it back with
        `pool.append(conn)`, or `discard` it."""
        if self.closed:
            raise TbkitError("the embedded engine is closed")
        key = (readonly, timeout if readonly else None, serial_output and readonly)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools.setdefault(key, [])
        try:
            return pool, pool.pop()
        except IndexError:
            return pool, self._connect(*key)

    def discard(self, conn: Any) -> None:
        """Close a connection that must not be used again (a failed query may have left output in it)."""
        if self.shared is not None:  # one session: closing it would close every connection
            return
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def close(self) -> None:
        """Close every connection: chDB releases the data directory once none is left."""
        self.closed = True
        for conn in self._all:
            with contextlib.suppress(Exception):
                conn.close()

    def _connect(self, readonly: bool, timeout: float | None, serial_output: bool = False) -> Any:
        if self.shared is None:
            # chDB before 4 starts the task that finishes DROP ... SYNC only when a data directory already has
            # metadata/: without it, on a new directory, every DROP ... SYNC would wait forever.
            (self.path / "chdb" / "metadata").mkdir(parents=True, exist_ok=True)
            conn = self._chdb_connect()
            # Kept until the engine closes: chDB 3.x closes its one session when any connection is collected.
            with self._lock:
                self._all.append(conn)
            for statement in SESSION:
                conn.query(statement)
            if self.memory.write:  # reads set their own limit below (or, over a shared session, per query)
                conn.query(f"SET max_memory_usage = {int(self.memory.write)}")
            with self._probe_lock:  # the first connection finds out, before any other is used
                if not self._probed and self._shares_session(conn):
                    self.shared = conn
                self._probed = True
        if self.shared is not None:
            if readonly:
                return ReadOnlyStatements(self.shared, timeout, self.memory.query, serial_output)
            return self.shared
        if readonly and self.memory.query:
            conn.query(f"SET max_memory_usage = {int(self.memory.query)}")
        if readonly and timeout:
            conn.query(f"SET max_execution_time = {float(timeout)}")
            conn.query("SET timeout_before_checking_execution_speed = 0")
        if serial_output:
            conn.query("SET output_format_parallel_formatting = 0")
        if readonly:
            conn.query("SET readonly = 2")
        return conn

    def _chdb_connect(self) -> Any:
        """A chDB connection, under the server's memory limit: chDB 4 takes `max_server_memory_usage` from the
        first connection string of the process (ClickHouse cannot change it with SET); chDB 3.x refuses that
        option, so there the limit is `max_memory_usage_for_user`, which binds every query (all run as one user)."""
        path = str(self.path / "chdb")
        if not self.memory.server:
            return chdb.connect(path)
        if self._server_option:
            try:
                return chdb.connect(f"{path}?max_server_memory_usage={int(self.memory.server)}")
            except RuntimeError as e:
                if "max_server_memory_usage" not in str(e):
                    raise
                self._server_option = False
        conn = chdb.connect(path)
        conn.query(f"SET max_memory_usage_for_user = {int(self.memory.server)}")
        return conn

    def _shares_session(self, conn: Any) -> bool:
        """True when a setting made on another connection shows on `conn`: chDB holds one session per process."""
        other = chdb.connect(str(self.path / "chdb"))
        marker = uuid.uuid4().hex
        other.query(f"SET log_comment = '{marker}'")
        shared = conn.query("SELECT getSetting('log_comment')", "RawBLOB").bytes().decode() == marker
        other.query("SET log_comment = ''")
        if shared:  # the session itself: closing or collecting it would close every connection
            with self._lock:
                self._all.append(other)
        else:
            other.close()
        return shared
