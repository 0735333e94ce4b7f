"""The embedded engine: a Tinybird project built and run in-process on chDB.

An `Engine` is one chDB instance over one data directory (chDB holds a single data path per process).
A `Workspace` is one database inside it, holding a project's datasources, quarantine datasources and
materialized views. Each thread borrows its own chDB connection from a pool, so a slow query never
blocks another request.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import chdb

from ..errors import (
    IngestError,
    MemoryLimitError,
    NotFoundError,
    ParameterError,
    ProjectError,
    QueryError,
    QueryTimeoutError,
    ServerMemoryError,
    StorageFullError,
    TbkitError,
)
from ..project.datafiles import Project
from ..query import pipes as query
from ..query import policy as query_api
from ..sizes import format_size
from . import ddl, ingest

_CLICKHOUSE_CODE = re.compile(r"Code: (\d+)\.")
# Trailing "(ERROR_NAME) (version 26.9.2.1)" decorations of ClickHouse messages.
_CLICKHOUSE_SUFFIX = re.compile(r"(\s*\((?:[A-Z_]+|version [^)]*)\)\.?)+\s*$")
_TIMEOUT_CODES = {159, 394}  # TIMEOUT_EXCEEDED, QUERY_WAS_CANCELLED
_MEMORY_CODE = 241  # MEMORY_LIMIT_EXCEEDED: the query's own limit, or the server's ("(total)", OvercommitTracker)
_SERVER_MEMORY = re.compile(r"\(total\)|OvercommitTracker")
_SPACE_CODE = 243  # NOT_ENOUGH_SPACE: a part could not reserve room on the data directory's disk
_NO_SPACE = re.compile(r"No space left on device|errno: 28\b|ENOSPC", re.IGNORECASE)
# An append is refused before it writes anything when the data directory's disk has less free space than its
# input, plus the inputs of the appends in flight, plus this: parts are compressed, so an input's size covers the
# parts it writes, materialized views' included, and what is left keeps room for merges and metadata. (A disk
# that fills during an insert makes ClickHouse fail it midway, possibly after some of its parts were written.)
MIN_FREE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_FORMATS = {"json": "JSON", "csv": "CSVWithNames", "ndjson": "JSONEachRow", "parquet": "Parquet"}
# Session settings of every connection: answers in UTC with 64-bit integers as JSON numbers, as Tinybird.
_SESSION = (
    "SET session_timezone = 'UTC'",
    "SET output_format_json_quote_64bit_integers = 0",
    "SET output_format_json_quote_denormals = 0",
    "SET insert_null_as_default = 1",
)
# What a read-only connection over a shared session (chDB 3.x) runs: one SELECT, WITH ... SELECT or DESCRIBE.
# The target of a materialized view, in ClickHouse's `create_table_query`.
_VIEW_TARGET = re.compile(r"CREATE MATERIALIZED VIEW \S+ TO (\S+)")
_READ_STATEMENT = re.compile(r"^(SELECT|WITH|DESCRIBE)\b")


GZIP_MAGIC = b"\x1f\x8b"
# An endpoint whose last answer was under this many bytes has its next answer formatted on one thread: ClickHouse's
# parallel formatting costs 0.1-0.2 ms of thread hand-offs per query, and pays off only on large answers (2M rows
# of JSON: 0.43 s in parallel, 0.67 s on one thread, on 2 cores).
SMALL_ANSWER = 256 * 1024
# Appends larger than this are split into chunks of whole lines, so memory stays flat.
CHUNK_BYTES = 64 * 1024 * 1024


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _split_bytes(data: bytes) -> Iterator[bytes]:
    """Chunks of about CHUNK_BYTES of `data` that end at a line break."""
    size = CHUNK_BYTES
    start = 0
    while start < len(data):
        cut = data.rfind(b"\n", start, start + size) + 1
        end = len(data) if start + size >= len(data) or cut <= start else cut
        yield data[start:end]
        start = end


def _split_lines(path: Path, gzipped: bool) -> Iterator[bytes]:
    """Read a file (gzipped or not) in chunks of about CHUNK_BYTES that end at a line break."""
    size = CHUNK_BYTES
    with gzip.open(path) if gzipped else path.open("rb") as stream:
        rest = b""
        while True:
            block = stream.read(size)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut]
        if rest:
            yield rest


@dataclass(frozen=True)
class _Slice:
    """Bytes `start` to `end` of an uncompressed file: a chunk that is copied to its file by the kernel
    (`copy_file_range`), several times faster than reading it into Python and writing it back."""

    path: Path
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def write_to(self, target: Path) -> None:
        """Copy the slice to `target`; OSError (ENOSPC included) as a write would raise it."""
        copy = getattr(os, "copy_file_range", None)  # Linux only
        with self.path.open("rb") as source, target.open("wb") as out:
            offset = self.start
            try:
                while copy is not None and offset < self.end:
                    copied = copy(source.fileno(), out.fileno(), self.end - offset, offset)
                    if not copied:
                        break
                    offset += copied
            except OSError as e:  # not between these file systems, or not on this kernel: copy the rest below
                if e.errno == errno.ENOSPC:
                    raise
            source.seek(offset)
            while offset < self.end and (block := source.read(min(1 << 20, self.end - offset))):
                out.write(block)
                offset += len(block)


def _file_slices(path: Path) -> Iterator[_Slice]:
    """An uncompressed file in slices of about CHUNK_BYTES that end at a line break (or at the end of the file)."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        start = 0
        while start < size:
            end = start + CHUNK_BYTES
            if end < size:
                stream.seek(end - 1)
                end += len(stream.readline()) - 1  # up to the first line break from the byte before `end`
            end = min(end, size)
            yield _Slice(path, start, end)
            start = end


def _write_chunk(target: Path, chunk: bytes | _Slice) -> None:
    if isinstance(chunk, _Slice):
        chunk.write_to(target)
    else:
        target.write_bytes(chunk)


def clickhouse_message(error: Exception) -> tuple[int | None, str]:
    """The ClickHouse error code and message of a chDB exception, without codes, names and versions."""
    text = str(error).strip()
    code = _CLICKHOUSE_CODE.search(text)
    message = text.rsplit("DB::Exception: ", 1)[-1]
    message = message.split("\nStack trace", 1)[0]
    message = _CLICKHOUSE_SUFFIX.sub("", message).strip()
    return (int(code.group(1)) if code else None), (message or text.splitlines()[0])


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


@dataclass(frozen=True)
class AppendResult:
    """What an append did: rows stored in the datasource and rows sent to its quarantine."""

    datasource: str
    successful_rows: int
    quarantined_rows: int
    import_id: str

    def to_dict(self) -> dict[str, Any]:
        """The Events API response body."""
        return {"successful_rows": self.successful_rows, "quarantined_rows": self.quarantined_rows}


class _ReadOnlyStatements:
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
        """Nothing to release: the engine closes the shared session."""


@contextlib.contextmanager
def _stderr_kept() -> Iterator[list[str]]:
    """Keep what the process writes to file descriptor 2 meanwhile (chDB prints there why it cannot start): on
    an error it is left in the list yielded for the caller to report; otherwise it is written to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    printed: list[str] = []
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        failed = True
        try:
            yield printed
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            kept.seek(0)
            text = kept.read()
            if failed:
                printed.append(text.decode("utf-8", "replace"))
            elif text:
                os.write(2, text)


# Held (flock) by the process whose engine has the data directory open, and released when it closes.
DATA_DIR_LOCK = ".tbkit.lock"


def claim_data_dir(path: Path) -> IO[str]:
    """Check that `path` can hold an engine's data, and lock it for this process (closing the handle unlocks).

    TbkitError naming the path when it is a file, cannot be created or written, holds a file where the engine
    keeps a folder, or another process has it open; nothing in it is changed or deleted then.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TbkitError(f"the data directory {path} is a file, not a directory: use another --data-dir") from None
    except OSError as e:
        raise TbkitError(f"cannot create the data directory {path}: {e.strerror}") from None
    for name in ("chdb", "tmp"):
        if (path / name).exists() and not (path / name).is_dir():
            raise TbkitError(
                f"{path / name} is a file where the engine keeps a folder: {path} is not a tbkit data directory, "
                "or it was damaged; move that file away or use another --data-dir (nothing was changed)"
            )
    if not os.access(path, os.W_OK | os.X_OK):
        raise TbkitError(f"the data directory {path} is not writable: fix its permissions or use another --data-dir")
    try:
        handle = (path / DATA_DIR_LOCK).open("a+", encoding="utf-8")
    except OSError as e:
        raise TbkitError(f"the data directory {path} is not writable ({e.strerror}): use another --data-dir") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise TbkitError(
            f"the data directory {path} is in use by {holder} (another tbkit serve or tbkit command): chDB "
            "opens a data directory from one process at a time; stop that one or use another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle


class Engine:
    """One chDB instance over a data directory, shared by every workspace of this process."""

    _current: ClassVar[Engine | None] = None
    _claim: IO[str] | None = None  # the data directory's lock, for a directory the caller gave
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, owns_path: bool, memory: MemoryLimits | None = None):
        self.path = path
        self._owns_path = owns_path
        self.memory = memory or MemoryLimits()
        self._server_option = True  # chDB takes max_server_memory_usage in a connection string (chDB 4)
        # Pools by (read-only, time limit, serial output): read connections are read-only (readonly = 2) and carry
        # their workspace's query time limit; write connections build and append without a time limit. Each pool
        # is a list used as a stack (append and pop are atomic), so borrowing one takes no lock.
        self._pools: dict[tuple[bool, float | None, bool], list[Any]] = {}
        self._all: list[Any] = []
        self._pool_lock = threading.Lock()
        # chDB's one session when every connection shares it (chDB 3.x: session settings are process-wide,
        # closing any connection closes them all, and queries run one at a time); None when each connection
        # has its own (chDB 4).
        self._shared: Any = None
        self._probed = False
        self._probe_lock = threading.Lock()
        self.tmp_dir = path / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._users = 1
        self._closed = False
        self._reserved = 0  # bytes of the appends in flight (Engine.reserve)
        self._beside = ThreadPoolExecutor(2, thread_name_prefix="tbkit-write")  # Engine.execute_beside

    @classmethod
    def open(cls, path: str | Path | None = None, memory: MemoryLimits | None = None) -> Engine:
        """The engine over `path`, or with None the one already open in this process (else a temporary one).

        chDB holds one data directory per process, so every caller shares one engine; pair each open()
        with a close(), and the last close() releases it. `memory` limits the queries of an engine this call
        opens (an engine already open keeps its own).
        """
        with cls._lock:
            current = cls._current
            if current is not None:
                if path is None or Path(path).resolve() == current.path:
                    current._users += 1
                    return current
                raise TbkitError(
                    f"the embedded engine already runs on {current.path} in this process; chDB holds one data "
                    f"directory per process, so close it before opening {Path(path).resolve()}"
                )
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
                with _stderr_kept() as printed, engine.connection():  # fail now, not on the first request
                    pass
            except (RuntimeError, OSError) as e:  # chDB refused its folder: say which file, change nothing
                engine._release_claim()
                lines = [line.strip(" .") for line in "".join(printed).splitlines() if line.strip(" .")]
                detail = (
                    _CLICKHOUSE_SUFFIX.sub("", lines[-1]) if lines else clickhouse_message(e)[1].strip(" .") or str(e)
                )
                raise TbkitError(
                    f"cannot open the data in {engine.path / 'chdb'}: {detail}. A file there is damaged or not "
                    "chDB's; nothing was changed or deleted: restore it from a backup or use another --data-dir"
                ) from None
            cls._current = engine
            return engine

    def _connect(self, readonly: bool, timeout: float | None, serial_output: bool = False) -> Any:
        if self._shared is None:
            # chDB before 4 starts the task that finishes DROP ... SYNC only when a data directory already has
            # metadata/: without it, on a new directory, every DROP ... SYNC would wait forever.
            (self.path / "chdb" / "metadata").mkdir(parents=True, exist_ok=True)
            conn = self._chdb_connect()
            # Kept until the engine closes: chDB 3.x closes its one session when any connection is collected.
            with self._pool_lock:
                self._all.append(conn)
            for statement in _SESSION:
                conn.query(statement)
            if self.memory.write:  # reads set their own limit below (or, over a shared session, per query)
                conn.query(f"SET max_memory_usage = {int(self.memory.write)}")
            with self._probe_lock:  # the first connection finds out, before any other is used
                if not self._probed and self._shares_session(conn):
                    self._shared = conn
                self._probed = True
        if self._shared is not None:
            if readonly:
                return _ReadOnlyStatements(self._shared, timeout, self.memory.query, serial_output)
            return self._shared
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
            with self._pool_lock:
                self._all.append(other)
        else:
            other.close()
        return shared

    @contextlib.contextmanager
    def connection(
        self, readonly: bool = False, timeout: float | None = None, serial_output: bool = False
    ) -> Iterator[Any]:
        """Borrow a connection for one operation: read-only (limited to `timeout` seconds) or read-write."""
        pool, conn = self._borrow(readonly, timeout, serial_output)
        try:
            yield conn
        except BaseException:
            # A failed or cancelled query can leave its partial output in the connection's buffer, where it
            # would be prepended to the next answer: never reuse such a connection.
            self._discard(conn)
            raise
        pool.append(conn)

    def _borrow(self, readonly: bool, timeout: float | None, serial_output: bool) -> tuple[list[Any], Any]:
        """The pool for these settings and a connection from it (a new one when it is empty)."""
        if self._closed:
            raise TbkitError("the embedded engine is closed")
        key = (readonly, timeout if readonly else None, serial_output and readonly)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools.setdefault(key, [])
        try:
            return pool, pool.pop()
        except IndexError:
            return pool, self._connect(*key)

    def _discard(self, conn: Any) -> None:
        if self._shared is not None:  # one session: closing it would close every connection
            return
        with self._pool_lock:
            if conn in self._all:
                self._all.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

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
        pool, conn = self._borrow(readonly, timeout, serial_output)
        try:
            result = conn.query(sql, fmt)
        except BaseException as e:
            # A failed or cancelled query can leave its partial output in the connection's buffer, where it
            # would be prepended to the next answer: never reuse such a connection.
            self._discard(conn)
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
        with self._pool_lock:
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
            with self._pool_lock:
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

    def workspace(self, name: str, project: Project, query_timeout: float | None = None) -> Workspace:
        """The workspace called `name` (a database), serving `project`, its reads limited to `query_timeout` s."""
        return Workspace(self, name, project, query_timeout)

    def workspaces(self) -> list[str]:
        """Names of the workspaces (databases) in this engine."""
        text = self.execute(
            "SELECT name FROM system.databases WHERE engine = 'Atomic' "
            "AND name NOT IN ('system', 'default', 'information_schema', 'INFORMATION_SCHEMA') ORDER BY name"
        )
        return [line for line in text.bytes().decode().splitlines() if line]

    def _release_claim(self) -> None:
        if self._claim is not None:
            self._claim.close()  # unlocks the data directory
            self._claim = None

    def close(self) -> None:
        """Release this user of the engine; the last one closes every connection (and a temporary directory)."""
        with Engine._lock:
            if self._closed:
                return
            self._users -= 1
            if self._users > 0:
                return
            self._closed = True
            self._beside.shutdown(wait=True)
            for conn in self._all:
                with contextlib.suppress(Exception):
                    conn.close()
            Engine._current = None
        self._release_claim()
        if self._owns_path:
            shutil.rmtree(self.path, ignore_errors=True)


# A part's place in its table: partition and range of block numbers. A part merged from others covers their
# ranges, so "already copied" survives a merge that ends after the copy.
Blocks = tuple[str, int, int]
Parts = dict[str, tuple[int, Blocks]]  # rows and blocks by part name


def _covered(blocks: Blocks, copied: set[Blocks]) -> bool:
    """True when every block of `blocks` is in one of the `copied` ranges (a merged part spans several)."""
    partition, low, high = blocks
    for lo, hi in sorted((lo, hi) for p, lo, hi in copied if p == partition):
        if lo > low:
            return False
        low = max(low, hi + 1)
        if low > high:
            return True
    return False


def _parts_attached(before: Parts, now: Parts, rows: int) -> set[Blocks]:
    """The blocks an ATTACH PARTITION ALL FROM copied, holding `rows` rows: those of `before` (the parts when
    merges stopped), then the parts written since, in order, while the rows add up. Parts written after the copy
    are left out, so that `copy_parts` carries them."""
    copied = {blocks for _, blocks in before.values()}
    total = sum(count for count, _ in before.values())
    for count, blocks in now.values():
        if total >= rows:
            break
        if not _covered(blocks, copied):
            copied.add(blocks)
            total += count
    if total != rows:
        raise TbkitError(f"could not tell which parts were copied ({rows} rows copied, {total} counted)")
    return copied


class Workspace:
    """A project built into one database of the engine: append to datasources, query endpoints."""

    def __init__(self, engine: Engine, name: str, project: Project, query_timeout: float | None = None):
        if not _NAME.match(name):
            raise ParameterError(f"invalid workspace name '{name}': use letters, digits and _ (max 64)")
        self.engine = engine
        self.name = name
        self.project = project
        self.query_timeout = query_timeout
        # The workspace's secrets by name, for `tb_secret()` in templates (its server sets the source).
        self.secrets: Callable[[], dict[str, str]] = dict
        # Endpoints whose last answer was small: the next call formats its answer on one thread (SMALL_ANSWER).
        self._small_answers: dict[str, bool] = {}

    def _read(self, sql: str, fmt: str) -> Any:
        """Run a read-only query within the workspace's time limit."""
        return self.engine.execute(sql, fmt, readonly=True, timeout=self.query_timeout)

    def _table(self, name: str) -> str:
        return ddl.table_name(self.name, name)

    # -- building -------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the workspace's database exists."""
        return self.engine.scalar(f"SELECT count() FROM system.databases WHERE name = {ingest.quote(self.name)}") == "1"

    def build(self, replace_changed: bool = False, drop_stages: bool = True) -> None:
        """Create the tables and materialized views; keep existing data, refuse incompatible schemas.

        With `replace_changed` (a deliberate, destructive deployment), datasources whose columns changed are
        recreated empty, and tables and views that are no longer in the project are dropped. A view that
        exists with the same target gets its new query in place, so an append running meanwhile feeds the
        old query or the new one, never neither. `drop_stages` drops the staging tables interrupted appends
        left (at start); a deployment on a live server passes False, as those belong to appends in flight.
        """
        self.engine.execute(f"CREATE DATABASE IF NOT EXISTS {ingest.identifier(self.name)}")
        interrupted = self._drop_stages() if drop_stages else set()
        existing = self._existing_columns()
        changed = [ds for ds in self.project.datasources.values() if self._columns_differ(ds, existing.get(ds.name))]
        if not replace_changed:
            self.check_compatible()
        expected_views = {ddl.view_name(pipe) for pipe in self.project.materializations.values()}
        for view in self._views():
            if view not in expected_views or replace_changed:
                self.engine.execute(f"DROP VIEW IF EXISTS {self._table(view)}")
        if replace_changed:
            keep = set(self.project.datasources) | {n + ingest.QUARANTINE_SUFFIX for n in self.project.datasources}
            for table in existing:
                if table not in keep or table.removesuffix(ingest.QUARANTINE_SUFFIX) in {d.name for d in changed}:
                    self.engine.execute(f"DROP TABLE IF EXISTS {self._table(table)} SYNC")
        for datasource in self.project.datasources.values():
            self.engine.execute(ddl.create_table(self.name, datasource))
            self.engine.execute(ddl.create_quarantine_table(self.name, datasource))
        targets = self._view_targets()
        for pipe in self.project.materializations.values():
            view = self._table(ddl.view_name(pipe))
            try:
                if targets.get(ddl.view_name(pipe)) == f"{self.name}.{pipe.output_node.datasource}":
                    select = ddl.materialized_select(self.name, self.project, pipe)
                    self.engine.execute(f"ALTER TABLE {view} MODIFY QUERY {select}")
                else:
                    self.engine.execute(f"DROP VIEW IF EXISTS {view}")
                    self.engine.execute(ddl.create_materialized_view(self.name, self.project, pipe))
            except QueryError as e:
                raise ProjectError(str(e), path=str(pipe.path), line=pipe.output_node.line) from None
        for datasource in sorted(interrupted & set(self.project.datasources)):
            # The kill may have come between the datasource's insert and its views' inserts (ClickHouse does not
            # write a table and its materializations atomically): rebuild the targets from their sources.
            self.rebuild_downstream(datasource)

    def _view_targets(self) -> dict[str, str]:
        """The target (`database.table`) of every materialized view of the workspace, by view name."""
        text = self.engine.execute(
            "SELECT name, create_table_query FROM system.tables "
            f"WHERE database = {ingest.quote(self.name)} AND engine = 'MaterializedView'"
        )
        targets = {}
        for line in text.bytes().decode().splitlines():
            name, query_text = line.split("\t", 1)
            found = _VIEW_TARGET.match(query_text)
            if found:
                targets[name] = found.group(1).replace("`", "")
        return targets

    def _drop_stages(self) -> set[str]:
        """Drop staging tables an interrupted append left behind (they only ever hold unacknowledged rows); the
        datasources those appends were writing to (each stage's comment names its datasource)."""
        text = self.engine.execute(
            "SELECT name, comment FROM system.tables "
            f"WHERE database = {ingest.quote(self.name)} AND name LIKE '\\_\\_stage\\_%'"
        )
        interrupted = set()
        for line in text.bytes().decode().splitlines():
            table, _, datasource = line.partition("\t")
            self.engine.execute(f"DROP TABLE IF EXISTS {self._table(table)}")
            interrupted.add(datasource)
        return interrupted

    def check_compatible(self) -> None:
        """Raise ProjectError when a datasource's stored columns differ from its datafile's."""
        existing = self._existing_columns()
        for datasource in self.project.datasources.values():
            if self._columns_differ(datasource, existing.get(datasource.name)):
                self._refuse_change(datasource, existing[datasource.name])

    def _views(self) -> list[str]:
        text = self.engine.execute(
            f"SELECT name FROM system.tables WHERE database = {ingest.quote(self.name)} AND engine = 'MaterializedView'"
        )
        return [line for line in text.bytes().decode().splitlines() if line]

    @staticmethod
    def _columns_differ(datasource: Any, actual: list[tuple[str, str]] | None) -> bool:
        if actual is None:
            return False
        expected = [(c.name, c.full_type.replace(", ", ",")) for c in datasource.columns]
        return [(n, t.replace(", ", ",")) for n, t in actual] != expected

    def _existing_columns(self) -> dict[str, list[tuple[str, str]]]:
        text = self.engine.execute(
            f"SELECT table, name, type FROM system.columns WHERE database = {ingest.quote(self.name)} "
            "ORDER BY table, position"
        )
        tables: dict[str, list[tuple[str, str]]] = {}
        for line in text.bytes().decode().splitlines():
            table, name, column_type = line.split("\t")
            tables.setdefault(table, []).append((name, column_type))
        return tables

    def _refuse_change(self, datasource: Any, actual: list[tuple[str, str]]) -> None:
        expected = [(c.name, c.full_type) for c in datasource.columns]
        raise ProjectError(
            f"workspace '{self.name}' already holds datasource '{datasource.name}' with columns "
            f"{', '.join(f'{n} {t}' for n, t in actual)}, but the datafile declares "
            f"{', '.join(f'{n} {t}' for n, t in expected)}. Data is never dropped implicitly: use a new "
            "data directory or workspace, or deploy with --allow-destructive-operations to recreate it empty",
            path=str(datasource.path),
        )

    def drop(self) -> None:
        """Delete the workspace and all its data."""
        self.engine.execute(f"DROP DATABASE IF EXISTS {ingest.identifier(self.name)} SYNC")

    def rename(self, name: str) -> Workspace:
        """Move the workspace's database to `name` (which must not exist); the workspace under its new name."""
        self.engine.execute(f"RENAME DATABASE {ingest.identifier(self.name)} TO {ingest.identifier(name)}")
        return Workspace(self.engine, name, self.project, self.query_timeout)

    def attach_rows(self, source: Workspace, datasource: str, track: bool = False) -> dict[str, set[Blocks]]:
        """Copy a datasource's rows and its quarantine's from `source`, where its table has the same schema.

        ClickHouse copies the parts (hard links, so the size of the data does not matter) and runs no materialized
        view: what the datasource fed downstream is copied, or rebuilt, on its own. With `track`, merges of the
        source's tables stop first, so parts appended to it afterwards keep names of their own, and the blocks
        copied are returned by table, for `copy_parts` to copy the later ones.
        """
        names = [datasource + ingest.QUARANTINE_SUFFIX]
        if self.project.datasource(datasource).engine != "Null":  # a Null table holds no rows
            names.append(datasource)
        copied: dict[str, set[Blocks]] = {}
        for name in names:
            if track:
                self.engine.execute(f"SYSTEM STOP MERGES {source._table(name)}")
                before = source._parts(name)
            self.engine.execute(f"ALTER TABLE {self._table(name)} ATTACH PARTITION ALL FROM {source._table(name)}")
            if track:
                rows = int(self.engine.scalar(f"SELECT count() FROM {self._table(name)}"))
                copied[name] = _parts_attached(before, source._parts(name), rows)
        return copied

    def resume_merges(self, tables: Iterable[str]) -> None:
        """Merge the parts of these tables again (after `attach_rows(track=True)` stopped it)."""
        for name in tables:
            self.engine.execute(f"SYSTEM START MERGES {self._table(name)}")

    def copy_parts(self, source: Workspace, table: str, copied: set[Blocks]) -> set[Blocks]:
        """Append the rows of the source table's parts whose blocks are not in `copied` (materialized views run, as
        for any append); the blocks copied now."""
        new = {name: blocks for name, (_, blocks) in source._parts(table).items() if not _covered(blocks, copied)}
        if new:
            names = ", ".join(ingest.quote(part) for part in sorted(new))
            self.engine.execute(
                f"INSERT INTO {self._table(table)} SELECT * FROM {source._table(table)} WHERE _part IN ({names})"
            )
        return set(new.values())

    def _parts(self, table: str) -> Parts:
        """The active parts of a table, in the order they were written: rows and blocks by part name."""
        text = self.engine.execute(
            "SELECT name, rows, partition_id, min_block_number, max_block_number FROM system.parts "
            f"WHERE database = {ingest.quote(self.name)} AND table = {ingest.quote(table)} AND active "
            "ORDER BY min_block_number"
        )
        parts = {}
        for line in text.bytes().decode().splitlines():
            name, rows, partition, low, high = line.split("\t")
            parts[name] = (int(rows), (partition, int(low), int(high)))
        return parts

    def truncate(self, datasource: str | None = None) -> None:
        """Empty one datasource (and its quarantine), or every datasource when None.

        As Tinybird, truncating a datasource leaves the datasources its materializations feed as they are
        (`tb datasource truncate --cascade` truncates them one by one).
        """
        names = [datasource] if datasource else list(self.project.datasources)
        for name in names:
            self.project.datasource(name)
            self.engine.execute(f"TRUNCATE TABLE IF EXISTS {self._table(name)}")
            self.engine.execute(f"TRUNCATE TABLE IF EXISTS {self._table(name + ingest.QUARANTINE_SUFFIX)}")

    def check_condition(self, datasource: str, condition: str) -> str:
        """A SQL condition on a datasource's columns, checked with the Query API's parser; ParameterError if not.

        The condition may only read the datasource itself (no other table, no subquery on other resources).
        """
        self.project.datasource(datasource)
        if not condition or not condition.strip():
            raise ParameterError("The SQL condition is empty: give a condition on the datasource's columns")
        text = f"SELECT count() FROM {ingest.identifier(datasource)} WHERE ({condition})"
        try:
            plan = query_api.plan(self.project, text)
        except (QueryError, NotFoundError) as e:
            raise ParameterError(f"Invalid SQL condition '{condition}': {e}") from None
        if set(plan.resources) != {datasource}:
            raise ParameterError(
                f"Invalid SQL condition '{condition}': it may only refer to the columns of '{datasource}'"
            )
        return condition

    def count_where(self, datasource: str, condition: str) -> int:
        """Rows of a datasource matching a condition (`check_condition` first)."""
        condition = self.check_condition(datasource, condition)
        try:
            return int(self.engine.scalar(f"SELECT count() FROM {self._table(datasource)} WHERE ({condition})"))
        except QueryError as e:
            message = str(e).split(" In scope ", 1)[0]  # ClickHouse's scope names the workspace's database
            raise ParameterError(f"Invalid SQL condition '{condition}': {message}") from None

    def delete_rows(self, datasource: str, condition: str, dry_run: bool = False) -> int:
        """Delete the rows matching `condition`; the number of rows deleted (or, with `dry_run`, to delete).

        As Tinybird, the delete does not cascade to the datasources materializations feed from this one.
        """
        rows = self.count_where(datasource, condition)
        if rows and not dry_run and self.project.datasource(datasource).engine != "Null":
            self.engine.execute(
                f"ALTER TABLE {self._table(datasource)} DELETE WHERE ({condition}) SETTINGS mutations_sync = 2"
            )
        return rows

    def replace(
        self, datasource: str, source: bytes, condition: str | None = None, import_id: str | None = None
    ) -> AppendResult:
        """Replace a datasource's rows with the rows of NDJSON `source`; misfits go to quarantine.

        Without `condition` every row is replaced; with one, as Tinybird's `replace_condition`, the rows that
        match it are deleted and only the new rows that match it are inserted. The new rows are staged and
        validated before anything is deleted, so a bad file never loses data.

        Materializations: Tinybird re-runs the materialized views that depend on the datasource for the
        replaced data. Here every datasource fed from this one through materializations (directly or not) is
        emptied and rebuilt from what its sources now hold: the views are populated from the sources' remaining
        rows, then the new rows are inserted, which feeds the views as an append does. Every target then holds
        exactly what appending all its sources' current rows would have given. Readers may see the datasource
        and its targets partly rebuilt while a replace runs.
        """
        target = self.project.datasource(datasource)
        ingest.check_appendable(target)
        if condition is not None:
            condition = self.check_condition(datasource, condition)
        import_id = import_id or uuid.uuid4().hex
        holding = self._table(f"__stage_{import_id}_new")
        self.engine.execute(
            f"CREATE TABLE {holding} AS {self._table(datasource)} ENGINE = Memory COMMENT {ingest.quote(datasource)}"
        )
        try:
            successful = quarantined = 0
            for number, chunk in enumerate(_split_bytes(bytes(source))):
                chunk_path = self.engine.tmp_dir / f"{import_id}.{number}.ndjson"
                chunk_path.write_bytes(chunk)
                try:
                    ok, bad = self._append_file(target, chunk_path, import_id, into=holding)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(chunk_path)
                successful, quarantined = successful + ok, quarantined + bad
            where = ""
            if condition is not None:
                where = f" WHERE ({condition})"
                successful = int(self.engine.scalar(f"SELECT count() FROM {holding}{where}"))
            if condition is None:
                self.engine.execute(f"TRUNCATE TABLE {self._table(datasource)}")
            elif target.engine != "Null":
                self.engine.execute(
                    f"ALTER TABLE {self._table(datasource)} DELETE WHERE ({condition}) SETTINGS mutations_sync = 2"
                )
            self.rebuild_downstream(datasource)
            self.engine.execute(f"INSERT INTO {self._table(datasource)} SELECT * FROM {holding}{where}")
        finally:
            self.engine.execute(f"DROP TABLE IF EXISTS {holding}")
        return AppendResult(target.name, successful, quarantined, import_id)

    def rebuild_downstream(self, datasource: str) -> list[str]:
        """Empty the datasources fed from `datasource` through materializations and repopulate them from their
        sources; the datasources rebuilt, nearest first.

        A materialization reading a rebuilt datasource is fed by the rebuild itself (inserting into a
        datasource runs its views), so only those reading datasources outside the rebuilt set are populated.
        """
        targets = ddl.downstream(self.project, datasource)
        for name in targets:
            self.engine.execute(f"TRUNCATE TABLE IF EXISTS {self._table(name)}")
        rebuilt = set(targets)
        for pipe in sorted(self.project.materializations.values(), key=lambda p: p.name):
            if pipe.output_node.datasource in rebuilt and not ddl.sources(self.project, pipe) & rebuilt:
                self.engine.execute(ddl.populate(self.name, self.project, pipe))
        return targets

    def datasource_stats(self) -> dict[str, dict[str, Any]]:
        """Per datasource (and quarantine) table: rows and bytes of its active parts, when it was created and
        last written (UTC, `YYYY-MM-DD HH:MM:SS`)."""
        database = ingest.quote(self.name)
        text = self.engine.execute(
            "SELECT t.name, toString(t.metadata_modification_time), ifNull(p.rows, 0), ifNull(p.bytes, 0), "
            "if(p.modified IS NULL, '', toString(p.modified)) "
            "FROM system.tables AS t LEFT JOIN (SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes, "
            f"toNullable(max(modification_time)) AS modified FROM system.parts WHERE database = {database} "
            "AND active GROUP BY table) AS p ON p.table = t.name "
            f"WHERE t.database = {database} SETTINGS join_use_nulls = 1"
        )
        stats: dict[str, dict[str, Any]] = {}
        for line in text.bytes().decode().splitlines():
            name, created, rows, size, modified = line.split("\t")
            stats[name] = {
                "row_count": int(rows),
                "bytes": int(size),
                "created_at": created,
                "updated_at": max(modified or created, created),
            }
        return stats

    # -- appending ------------------------------------------------------------------------------------

    def append(
        self,
        datasource: str,
        source: bytes | str | Path,
        import_id: str | None = None,
        on_progress: Callable[[int], object] | None = None,
    ) -> AppendResult:
        """Append NDJSON (bytes, or a file, gzipped or not) to a datasource; misfits go to quarantine.

        Large inputs are appended in chunks of whole lines; `on_progress(n)` is told of every n bytes done.
        A chunk is refused with StorageFullError, before it writes anything, when the data directory's disk
        has less free space than the chunk plus MIN_FREE_BYTES; the error says which rows were stored.
        """
        target = self.project.datasource(datasource)
        ingest.check_appendable(target)
        import_id = import_id or uuid.uuid4().hex
        try:
            return self._append(target, source, import_id, on_progress)
        except StorageFullError as e:
            raise StorageFullError(f"[Error] Cannot append to '{target.name}': {e.message}") from None

    def _append(
        self, target: Any, source: bytes | str | Path, import_id: str, on_progress: Callable[[int], object] | None
    ) -> AppendResult:
        if isinstance(source, bytes | bytearray | memoryview):
            chunks: Iterator[bytes | _Slice] | None = _split_bytes(bytes(source))
            direct = None
        else:
            path = Path(source).resolve()
            if not path.is_file():
                raise IngestError(f"file not found: {source}")
            gzipped = _is_gzip(path)
            small = path.stat().st_size <= CHUNK_BYTES and not gzipped
            direct = path if small else None
            chunks = None if small else _split_lines(path, gzipped) if gzipped else _file_slices(path)
        successful = quarantined = 0
        inserting = False  # a disk filling while ClickHouse inserts may leave part of that chunk stored
        try:
            if direct is not None:
                size = direct.stat().st_size
                with self.engine.reserve(size):
                    inserting = True
                    successful, quarantined = self._append_file(target, direct, import_id)
                    inserting = False
                if on_progress:
                    on_progress(size)
            else:
                for number, chunk in enumerate(chunks or []):
                    chunk_path = self.engine.tmp_dir / f"{import_id}.{number}.ndjson"
                    with self.engine.reserve(len(chunk)):
                        try:
                            _write_chunk(chunk_path, chunk)
                            inserting = True
                            ok, bad = self._append_file(target, chunk_path, import_id)
                            inserting = False
                        except OSError as e:
                            if e.errno != errno.ENOSPC:
                                raise
                            raise self.engine.storage_full(str(e)) from None
                        finally:
                            with contextlib.suppress(OSError):
                                os.unlink(chunk_path)
                    successful, quarantined = successful + ok, quarantined + bad
                    if on_progress:
                        on_progress(len(chunk))
        except StorageFullError as e:
            done = successful + quarantined
            earlier = f"the {done} rows of its earlier chunks were stored (import id {import_id})" if done else ""
            if inserting:
                stored = (
                    "the disk filled while its rows were inserted, so part of them may be stored (in the datasource "
                    "or in those its materializations feed)"
                ) + (f"; {earlier}" if earlier else "")
            else:
                stored = earlier or "nothing of it was stored"
            raise self.engine.storage_full(getattr(e, "detail", e.message), stored) from None
        return AppendResult(target.name, successful, quarantined, import_id)

    def _append_file(self, target: Any, path: Path, import_id: str, into: str | None = None) -> tuple[int, int]:
        """Stage one NDJSON file: accepted rows go to the datasource (or the table `into`), misfits to quarantine."""
        stage = self._table(f"__stage_{import_id}")
        source = f"file({ingest.quote(str(path))}, 'LineAsString', 'raw String')"
        self.engine.execute(
            f"CREATE TABLE {stage} ({ingest.staging_columns(target)}) ENGINE = Memory "
            f"COMMENT {ingest.quote(target.name)}"  # names the datasource if a kill leaves the stage behind
        )
        try:
            self.engine.execute(f"INSERT INTO {stage} {ingest.staging_select(target, source)}")
            counts = self.engine.scalar(
                f"SELECT concat(toString(countIf(empty(c__errors))), ',', toString(countIf(notEmpty(c__errors)))) "
                f"FROM {stage}"
            )
            successful, quarantined = (int(n) for n in counts.split(","))
            beside = None  # the quarantine is written while the accepted rows are, both before the append returns
            if quarantined:
                quarantine = self._table(target.name + ingest.QUARANTINE_SUFFIX)
                beside = self.engine.execute_beside(ingest.insert_quarantined(target, quarantine, stage, import_id))
            try:
                if successful:
                    self.engine.execute(ingest.insert_accepted(target, into or self._table(target.name), stage))
            except BaseException:
                if beside is not None:
                    beside.exception()  # wait for it (it reads the stage), and raise the first error
                raise
            if beside is not None:
                beside.result()
        finally:
            self.engine.execute(f"DROP TABLE IF EXISTS {stage}")
        return successful, quarantined

    def row_count(self, datasource: str) -> int:
        """Rows currently stored in a datasource (or `<name>_quarantine`)."""
        base = datasource.removesuffix(ingest.QUARANTINE_SUFFIX)
        self.project.datasource(base)
        return int(self.engine.scalar(f"SELECT count() FROM {self._table(datasource)}"))

    # -- querying -------------------------------------------------------------------------------------

    def endpoint_sql(self, name: str, params: dict[str, Any]) -> str:
        """The SELECT that answers endpoint `name` for `params`."""
        pipe = self.project.endpoint(name)
        secrets = self.secrets() if self.project.reads_secrets else None  # no file read per call otherwise
        return query.render_pipe(self.project, pipe, params, self.name, secrets=secrets)

    def query_endpoint(self, name: str, params: dict[str, Any], fmt: str = "json") -> bytes:
        """Run an endpoint and return the response body in Tinybird's format (json, csv, ndjson)."""
        return self.call_endpoint(name, params, fmt)[0]

    def call_endpoint(self, name: str, params: dict[str, Any], fmt: str = "json") -> tuple[bytes, int, int]:
        """Run an endpoint: the response body, and the rows and bytes its query read from tables."""
        if fmt not in _FORMATS:
            raise NotFoundError(f"unknown format '.{fmt}': use one of {', '.join('.' + f for f in _FORMATS)}")
        sql = self.endpoint_sql(name, params)
        small = self._small_answers.get(name, False)
        result = self.engine.execute(sql, _FORMATS[fmt], readonly=True, timeout=self.query_timeout, serial_output=small)
        body = result.bytes()
        self._small_answers[name] = len(body) < SMALL_ANSWER
        # storage_*: what the query read from tables, as Tinybird's statistics (rows_read() counts the result's rows)
        return body, result.storage_rows_read(), result.storage_bytes_read()

    def endpoint_columns(self, name: str) -> list[tuple[str, str]]:
        """The (name, type) of every column an endpoint returns, without running it."""
        pipe = self.project.endpoint(name)
        sql = query.render_pipe(self.project, pipe, {}, self.name, placeholders=True)
        text = self._read(f"DESCRIBE TABLE ({sql})", "TSV").bytes().decode()
        return [tuple(line.split("\t")[:2]) for line in text.splitlines() if line]

    def endpoint(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run an endpoint and return Tinybird's JSON response as a dict (meta, data, rows, statistics)."""
        return json.loads(self.query_endpoint(name, params or {}, "json"))

    def sql(self, text: str, params: dict[str, Any] | None = None, fmt: str = "JSON") -> bytes:
        """Run a read-only query over the workspace's datasources and endpoints (the Query API)."""
        return self.run_query(query_api.plan(self.project, text, fmt), params)

    def run_query(self, plan: query_api.QueryPlan, params: dict[str, Any] | None = None) -> bytes:
        """Run a Query API query that `query_api.plan` allowed, read-only, and return the response body."""
        secrets = self.secrets() if self.project.reads_secrets else None
        sql = query_api.render(plan, self.project, self.name, params or {}, secrets)
        return self._read(sql, plan.fmt).bytes()
