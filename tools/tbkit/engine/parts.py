"""Copying a datasource's parts from one build of a workspace to another (the dev loop's rebuilds).

ClickHouse copies parts by hard links (`ATTACH PARTITION ALL FROM`), so the size of the data does not matter,
and runs no materialized view. Merges of the source stop first, so parts appended to it afterwards keep names
of their own; the blocks copied are tracked by table, so that a later `copy_parts` appends only the rows written
since (a merged part is told by its blocks, which survive a merge that ends after the copy).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import TbkitError
from . import ingest

if TYPE_CHECKING:
    from .workspace import Workspace


# A part's place in its table: partition and range of block numbers. A part merged from others covers their
# ranges, so "already copied" survives a merge that ends after the copy.
Blocks = tuple[str, int, int]
Parts = dict[str, tuple[int, Blocks]]  # rows and blocks by part name


def covered(blocks: Blocks, copied: set[Blocks]) -> bool:
    """True when every block of `blocks` is in one of the `copied` ranges (a merged part spans several)."""
    partition, low, high = blocks
    for lo, hi in sorted((lo, hi) for p, lo, hi in copied if p == partition):
        if lo > low:
            return False
        low = max(low, hi + 1)
        if low > high:
            return True
    return False


def parts_attached(before: Parts, now: Parts, rows: int) -> set[Blocks]:
    """The blocks an ATTACH PARTITION ALL FROM copied, holding `rows` rows: those of `before` (the parts when
    merges stopped), then the parts written since, in order, while the rows add up. Parts written after the copy
    are left out, so that `copy_parts` carries them."""
    copied = {blocks for _, blocks in before.values()}
    total = sum(count for count, _ in before.values())
    for count, blocks in now.values():
        if total >= rows:
            break
        if not covered(blocks, copied):
            copied.add(blocks)
            total += count
    if total != rows:
        raise TbkitError(f"could not tell which parts were copied ({rows} rows copied, {total} counted)")
    return copied


def attach_rows(into: Workspace, source: Workspace, datasource: str, track: bool = False) -> dict[str, set[Blocks]]:
    """Copy a datasource's rows and its quarantine's from `source` into `into`, where its table has the same schema.

    What the datasource fed downstream is copied, or rebuilt, on its own. With `track`, merges of the source's
    tables stop first, and the blocks copied are returned by table, for `copy_parts` to copy the later ones.
    """
    names = [datasource + ingest.QUARANTINE_SUFFIX]
    if into.project.datasource(datasource).engine != "Null":  # a Null table holds no rows
        names.append(datasource)
    copied: dict[str, set[Blocks]] = {}
    for name in names:
        if track:
            into.engine.execute(f"SYSTEM STOP MERGES {source.table(name)}")
            before = active_parts(source, name)
        into.engine.execute(f"ALTER TABLE {into.table(name)} ATTACH PARTITION ALL FROM {source.table(name)}")
        if track:
            rows = int(into.engine.scalar(f"SELECT count() FROM {into.table(name)}"))
            copied[name] = parts_attached(before, active_parts(source, name), rows)
    return copied


def resume_merges(workspace: Workspace, tables: Iterable[str]) -> None:
    """Merge the parts of these tables again (after `attach_rows(track=True)` stopped it)."""
    for name in tables:
        workspace.engine.execute(f"SYSTEM START MERGES {workspace.table(name)}")


def copy_parts(into: Workspace, source: Workspace, table: str, copied: set[Blocks]) -> set[Blocks]:
    """Append the rows of the source table's parts whose blocks are not in `copied` (materialized views run, as
    for any append); the blocks copied now."""
    new = {name: blocks for name, (_, blocks) in active_parts(source, table).items() if not covered(blocks, copied)}
    if new:
        names = ", ".join(ingest.quote(part) for part in sorted(new))
        into.engine.execute(
            f"INSERT INTO {into.table(table)} SELECT * FROM {source.table(table)} WHERE _part IN ({names})"
        )
    return set(new.values())


def active_parts(workspace: Workspace, table: str) -> Parts:
    """The active parts of a table, in the order they were written: rows and blocks by part name."""
    text = workspace.engine.execute(
        "SELECT name, rows, partition_id, min_block_number, max_block_number FROM system.parts "
        f"WHERE database = {ingest.quote(workspace.name)} AND table = {ingest.quote(table)} AND active "
        "ORDER BY min_block_number"
    )
    parts = {}
    for line in text.bytes().decode().splitlines():
        name, rows, partition, low, high = line.split("\t")
        parts[name] = (int(rows), (partition, int(low), int(high)))
    return parts
