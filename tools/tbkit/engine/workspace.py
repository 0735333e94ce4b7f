"""A workspace's tables: a project's datasources, quarantine datasources and materialized views, built into one
database of the engine, and the statements that change them as a whole (replace, delete, truncate, rebuild).

Appends are `append.py`'s; copying parts between two builds, `parts.py`'s; the DDL, `ddl.py`'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError, ProjectError, QueryError
from ..project.datafiles import Project
from . import append, ddl, ingest
from .append import AppendResult

if TYPE_CHECKING:
    from .instance import Engine

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# The target of a materialized view, in ClickHouse's `create_table_query`.
_VIEW_TARGET = re.compile(r"CREATE MATERIALIZED VIEW \S+ TO (\S+)")


@dataclass(frozen=True)
class Condition:
    """A SQL condition on one datasource's columns that the Query API's policy checked
    (`tbkit.query.policy.check_condition`): a delete's or a replace's. The engine runs no other."""

    datasource: str
    sql: str


def _checked(datasource: str, condition: Condition) -> str:
    if not isinstance(condition, Condition) or condition.datasource != datasource:
        raise TypeError(f"a condition on {datasource} must be checked by the Query API's policy first")
    return condition.sql


class Workspace:
    """A project's tables in one database of the engine: built, appended to, replaced, emptied, dropped.

    Reading it (endpoint calls, the Query API) is the query layer's (`tbkit.query.Reader`).
    """

    def __init__(self, engine: Engine, name: str, project: Project, query_timeout: float | None = None):
        if not _NAME.match(name):
            raise ParameterError(f"invalid workspace name '{name}': use letters, digits and _ (max 64)")
        self.engine = engine
        self.name = name
        self.project = project
        self.query_timeout = query_timeout

    def read(self, sql: str, fmt: str) -> Any:
        """Run a read-only query within the workspace's time limit."""
        return self.engine.execute(sql, fmt, readonly=True, timeout=self.query_timeout)

    def table(self, name: str) -> str:
        """The qualified name of one of the workspace's tables (a datasource, its quarantine, a view)."""
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
                self.engine.execute(f"DROP VIEW IF EXISTS {self.table(view)}")
        if replace_changed:
            keep = set(self.project.datasources) | {n + ingest.QUARANTINE_SUFFIX for n in self.project.datasources}
            for table in existing:
                if table not in keep or table.removesuffix(ingest.QUARANTINE_SUFFIX) in {d.name for d in changed}:
                    self.engine.execute(f"DROP TABLE IF EXISTS {self.table(table)} SYNC")
        for datasource in self.project.datasources.values():
            self.engine.execute(ddl.create_table(self.name, datasource))
            self.engine.execute(ddl.create_quarantine_table(self.name, datasource))
        targets = self._view_targets()
        for pipe in self.project.materializations.values():
            view = self.table(ddl.view_name(pipe))
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
            self.engine.execute(f"DROP TABLE IF EXISTS {self.table(table)}")
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

    def truncate(self, datasource: str | None = None) -> None:
        """Empty one datasource (and its quarantine), or every datasource when None.

        As Tinybird, truncating a datasource leaves the datasources its materializations feed as they are
        (`tb datasource truncate --cascade` truncates them one by one).
        """
        names = [datasource] if datasource else list(self.project.datasources)
        for name in names:
            self.project.datasource(name)
            self.engine.execute(f"TRUNCATE TABLE IF EXISTS {self.table(name)}")
            self.engine.execute(f"TRUNCATE TABLE IF EXISTS {self.table(name + ingest.QUARANTINE_SUFFIX)}")

    def count_where(self, datasource: str, condition: Condition) -> int:
        """Rows of a datasource matching a condition the Query API's policy checked."""
        condition = _checked(datasource, condition)
        try:
            return int(self.engine.scalar(f"SELECT count() FROM {self.table(datasource)} WHERE ({condition})"))
        except QueryError as e:
            message = str(e).split(" In scope ", 1)[0]  # ClickHouse's scope names the workspace's database
            raise ParameterError(f"Invalid SQL condition '{condition}': {message}") from None

    def delete_rows(self, datasource: str, condition: Condition, dry_run: bool = False) -> int:
        """Delete the rows matching `condition`; the number of rows deleted (or, with `dry_run`, to delete).

        As Tinybird, the delete does not cascade to the datasources materializations feed from this one.
        """
        rows = self.count_where(datasource, condition)
        if rows and not dry_run and self.project.datasource(datasource).engine != "Null":
            self.engine.execute(
                f"ALTER TABLE {self.table(datasource)} DELETE WHERE ({condition.sql}) SETTINGS mutations_sync = 2"
            )
        return rows

    def replace(
        self, datasource: str, source: bytes, condition: Condition | None = None, import_id: str | None = None
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
        checked = None if condition is None else _checked(datasource, condition)
        import_id = import_id or uuid.uuid4().hex
        holding = self.table(f"__stage_{import_id}_new")
        self.engine.execute(
            f"CREATE TABLE {holding} AS {self.table(datasource)} ENGINE = Memory COMMENT {ingest.quote(datasource)}"
        )
        try:
            successful = quarantined = 0
            for number, chunk in enumerate(append.split_bytes(bytes(source))):
                chunk_path = self.engine.tmp_dir / f"{import_id}.{number}.ndjson"
                chunk_path.write_bytes(chunk)
                try:
                    ok, bad = append.stage_file(self, target, chunk_path, import_id, into=holding)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(chunk_path)
                successful, quarantined = successful + ok, quarantined + bad
            where = ""
            if checked is not None:
                where = f" WHERE ({checked})"
                successful = int(self.engine.scalar(f"SELECT count() FROM {holding}{where}"))
            if checked is None:
                self.engine.execute(f"TRUNCATE TABLE {self.table(datasource)}")
            elif target.engine != "Null":
                self.engine.execute(
                    f"ALTER TABLE {self.table(datasource)} DELETE WHERE ({checked}) SETTINGS mutations_sync = 2"
                )
            self.rebuild_downstream(datasource)
            self.engine.execute(f"INSERT INTO {self.table(datasource)} SELECT * FROM {holding}{where}")
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
            self.engine.execute(f"TRUNCATE TABLE IF EXISTS {self.table(name)}")
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

    def append(
        self,
        datasource: str,
        source: bytes | str | Path,
        import_id: str | None = None,
        on_progress: Callable[[int], object] | None = None,
    ) -> AppendResult:
        """Append NDJSON (bytes, or a file, gzipped or not) to a datasource; misfits go to quarantine (`append.py`)."""
        return append.append(self, datasource, source, import_id, on_progress)

    def row_count(self, datasource: str) -> int:
        """Rows currently stored in a datasource (or `<name>_quarantine`)."""
        base = datasource.removesuffix(ingest.QUARANTINE_SUFFIX)
        self.project.datasource(base)
        return int(self.engine.scalar(f"SELECT count() FROM {self.table(datasource)}"))
