"""Appends: NDJSON into a workspace's datasource, staged and validated, misfits to its quarantine.

An input (bytes, or a file, gzipped or not) is appended in chunks of whole lines, so memory stays flat; each
chunk is read one line at a time into a staging table (`ingest.py` writes the SQL), whose accepted rows go to
the datasource and misfits to `<datasource>_quarantine`, both before the append returns. A chunk first reserves
room on the data directory's disk (`Engine.reserve`), so a full disk refuses it before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import IngestError, StorageFullError
from ..project.datafiles import Project
from . import ingest
from .instance import Engine


class Tables(Protocol):
    """What an append needs of a workspace (`workspace.Workspace`): its engine, its project and the qualified name
    of each of its tables."""

    engine: Engine
    project: Project

    def table(self, name: str) -> str: ...


GZIP_MAGIC = b"\x1f\x8b"
# Appends larger than this are split into chunks of whole lines, so memory stays flat.
CHUNK_BYTES = 64 * 1024 * 1024


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def split_bytes(data: bytes) -> Iterator[bytes]:
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


def append(
    workspace: Tables,
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
    target = workspace.project.datasource(datasource)
    ingest.check_appendable(target)
    import_id = import_id or uuid.uuid4().hex
    try:
        return _append(workspace, target, source, import_id, on_progress)
    except StorageFullError as e:
        raise StorageFullError(f"[Error] Cannot append to '{target.name}': {e.message}") from None


def _append(
    workspace: Tables,
    target: Any,
    source: bytes | str | Path,
    import_id: str,
    on_progress: Callable[[int], object] | None,
) -> AppendResult:
    if isinstance(source, bytes | bytearray | memoryview):
        chunks: Iterator[bytes | _Slice] | None = split_bytes(bytes(source))
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
            with workspace.engine.reserve(size):
                inserting = True
                successful, quarantined = stage_file(workspace, target, direct, import_id)
                inserting = False
            if on_progress:
                on_progress(size)
        else:
            for number, chunk in enumerate(chunks or []):
                chunk_path = workspace.engine.tmp_dir / f"{import_id}.{number}.ndjson"
                with workspace.engine.reserve(len(chunk)):
                    try:
                        _write_chunk(chunk_path, chunk)
                        inserting = True
                        ok, bad = stage_file(workspace, target, chunk_path, import_id)
                        inserting = False
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        raise workspace.engine.storage_full(str(e)) from None
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
        raise workspace.engine.storage_full(getattr(e, "detail", e.message), stored) from None
    return AppendResult(target.name, successful, quarantined, import_id)


def stage_file(workspace: Tables, target: Any, path: Path, import_id: str, into: str | None = None) -> tuple[int, int]:
    """Stage one NDJSON file: accepted rows go to the datasource (or the table `into`), misfits to quarantine."""
    stage = workspace.table(f"__stage_{import_id}")
    source = f"file({ingest.quote(str(path))}, 'LineAsString', 'raw String')"
    workspace.engine.execute(
        f"CREATE TABLE {stage} ({ingest.staging_columns(target)}) ENGINE = Memory "
        f"COMMENT {ingest.quote(target.name)}"  # names the datasource if a kill leaves the stage behind
    )
    try:
        workspace.engine.execute(f"INSERT INTO {stage} {ingest.staging_select(target, source)}")
        counts = workspace.engine.scalar(
            f"SELECT concat(toString(countIf(empty(c__errors))), ',', toString(countIf(notEmpty(c__errors)))) "
            f"FROM {stage}"
        )
        successful, quarantined = (int(n) for n in counts.split(","))
        beside = None  # the quarantine is written while the accepted rows are, both before the append returns
        if quarantined:
            quarantine = workspace.table(target.name + ingest.QUARANTINE_SUFFIX)
            beside = workspace.engine.execute_beside(ingest.insert_quarantined(target, quarantine, stage, import_id))
        try:
            if successful:
                workspace.engine.execute(ingest.insert_accepted(target, into or workspace.table(target.name), stage))
        except BaseException:
            if beside is not None:
                beside.exception()  # wait for it (it reads the stage), and raise the first error
            raise
        if beside is not None:
            beside.result()
    finally:
        workspace.engine.execute(f"DROP TABLE IF EXISTS {stage}")
    return successful, quarantined
