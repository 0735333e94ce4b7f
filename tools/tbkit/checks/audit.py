"""Materialization audits: is each materialized datasource what its materializations make of their sources?

For every target of a materialization (`TYPE MATERIALIZED`, `DATASOURCE <target>`), the audit recomputes the
target from its sources with the SELECTs of all the materializations that feed it (UNION ALL), applies the
merge the target's engine applies (SimpleAggregateFunction / AggregateFunction columns of an
AggregatingMergeTree, the latest version of a ReplacingMergeTree, every row of a MergeTree), and compares
that, grouped by the target's sorting key, with the target itself read the same way. Floats are compared with
a relative tolerance, since sums are added up in another order.

The SQL is one Query API query per target (tables unqualified), so it runs on the embedded engine
(`Reader.sql`) and on any Tinybird API (`/v0/sql`) alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine, ddl
from ..engine.ingest import identifier
from ..errors import ProjectError
from ..project.datafiles import Datasource, Pipe, Project, load_project
from ..project.layout import Layout
from ..query import Reader
from . import targets

REL_TOL = 1e-9
_SIMPLE = re.compile(r"^SimpleAggregateFunction\(\s*(\w+)\s*,\s*(.+)\)$", re.S)
_AGGREGATE = re.compile(r"^AggregateFunction\(\s*(\w+)", re.S)
_IDENTIFIER = re.compile(r"^`?([A-Za-z_][A-Za-z0-9_]*)`?$")

# Runs one Query API query (unqualified tables) and returns its JSON response.
RunSql = Callable[[str], dict[str, Any]]


@dataclass
class Difference:
    """One key whose values differ: what the materializations give (None: no row) and what the target holds."""

    key: dict[str, Any]
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "expected": self.expected, "actual": self.actual}


@dataclass
class TargetAudit:
    """The audit of one materialized datasource."""

    target: str
    materializations: list[str]
    rows_compared: int = 0
    expected_rows: int = 0
    actual_rows: int = 0
    differing: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.differing == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "materializations": self.materializations,
            "ok": self.ok,
            "rows_compared": self.rows_compared,
            "expected_rows": self.expected_rows,
            "actual_rows": self.actual_rows,
            "differing": self.differing,
            "differences": [d.to_dict() for d in self.differences],
        }


@dataclass
class AuditReport:
    """The audits of every materialized datasource of a project."""

    targets: list[TargetAudit]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "targets": [t.to_dict() for t in self.targets]}


@dataclass(frozen=True)
class _Column:
    name: str
    merge: str  # the aggregate expression, over column `name`, that the engine's merge amounts to
    cast: str  # the type a materialization's column is inserted as
    is_float: bool


def feeders(project: Project) -> dict[str, list[Pipe]]:
    """Every materialized datasource and the materialization pipes that write it, by name."""
    found: dict[str, list[Pipe]] = {}
    for pipe in sorted(project.materializations.values(), key=lambda p: p.name):
        target = pipe.output_node.datasource
        if target:
            found.setdefault(target, []).append(pipe)
    return dict(sorted(found.items()))


def _keys(datasource: Datasource) -> list[str]:
    sorting_key = datasource.engine_args.get("sorting_key") or ""
    keys = []
    for part in sorting_key.split(","):
        match = _IDENTIFIER.match(part.strip())
        if not match:
            raise ProjectError(
                f"cannot audit '{datasource.name}': its sorting key '{sorting_key}' is not a list of columns"
            )
        keys.append(match.group(1))
    return keys


def _columns(datasource: Datasource, keys: list[str]) -> list[_Column]:
    engine = datasource.engine
    version = datasource.engine_args.get("ver")
    columns = []
    for column in datasource.columns:
        if column.name in keys:
            continue
        name = identifier(column.name)
        full_type = column.full_type
        if engine == "AggregatingMergeTree":
            simple = _SIMPLE.match(full_type)
            aggregate = _AGGREGATE.match(full_type)
            if simple:
                function, inner = simple.group(1), simple.group(2).strip()
                merge = f"{function}({name})"
                if inner.startswith("Array("):
                    merge = f"arraySort({merge})"
                columns.append(_Column(column.name, merge, inner, "Float" in inner and "Array" not in inner))
            elif aggregate:
                columns.append(_Column(column.name, f"{aggregate.group(1)}Merge({name})", full_type, False))
            else:
                columns.append(_Column(column.name, f"any({name})", full_type, False))
        elif engine == "ReplacingMergeTree":
            merge = f"argMax({name}, {identifier(version)})" if version else f"any({name})"
            columns.append(_Column(column.name, merge, full_type, "Float" in full_type))
        elif engine == "MergeTree":
            columns.append(_Column(column.name, "", full_type, False))
        else:
            raise ProjectError(f"cannot audit '{datasource.name}': engine {engine} is not supported")
    if engine == "MergeTree":
        # No merge: the rows of each key, as a sorted list of their other columns.
        values = ", ".join(identifier(c.name) for c in columns)
        merged = f"arraySort(groupArray(tuple({values})))" if columns else "count()"
        return [_Column("rows", "count()", "", False), _Column("values", merged, "", False)]
    return columns


def _equal(left: str, right: str, is_float: bool) -> str:
    if is_float:
        return (
            f"if(isNull({left}) OR isNull({right}), isNull({left}) AND isNull({right}), "
            f"abs({left} - {right}) <= {REL_TOL} * greatest(abs({left}), abs({right}), 1))"
        )
    return f"ifNull({left} = {right}, isNull({left}) AND isNull({right}))"


def audit_sql(project: Project, target: str, pipes: list[Pipe]) -> tuple[list[str], list[str], str]:
    """(key columns, value columns, the joined comparison of expected and actual rows) for one target.

    The query's rows are every key of either side, with `e__<column>` / `a__<column>` values, `e__present` /
    `a__present` (0 when a side has no row for the key) and `same` (1 when both sides agree).
    """
    datasource = project.datasource(target)
    keys = _keys(datasource)
    columns = _columns(datasource, keys)
    stored = datasource.columns
    inserted = []
    for pipe in pipes:
        select = ddl.materialized_select("", project, pipe)
        parts = []
        for column in stored:
            inner = _SIMPLE.match(column.full_type)
            cast = inner.group(2).strip() if inner and datasource.engine == "AggregatingMergeTree" else column.full_type
            parts.append(f"CAST({identifier(column.name)} AS {cast}) AS {identifier(column.name)}")
        inserted.append(f"SELECT {', '.join(parts)} FROM ({select})")
    union = " UNION ALL ".join(inserted)
    final = " FINAL" if datasource.engine == "ReplacingMergeTree" else ""
    key_list = ", ".join(identifier(k) for k in keys)
    merged = ", ".join(f"{c.merge} AS {identifier('v__' + c.name)}" for c in columns)

    def side(relation: str) -> str:
        return f"SELECT {key_list}, {merged}, toUInt8(1) AS present FROM {relation} GROUP BY {key_list}"

    expected = side(f"({union})")
    actual = side(f"{identifier(target)}{final}")
    same = " AND ".join(
        ["e.present = 1", "a.present = 1"]
        + [_equal(f"e.{identifier('v__' + c.name)}", f"a.{identifier('v__' + c.name)}", c.is_float) for c in columns]
    )
    values = ", ".join(
        f"e.{identifier('v__' + c.name)} AS {identifier('e__' + c.name)}, "
        f"a.{identifier('v__' + c.name)} AS {identifier('a__' + c.name)}"
        for c in columns
    )
    sql = (
        f"SELECT {key_list}, {values}, e.present AS e__present, a.present AS a__present, ({same}) AS same "
        f"FROM ({expected}) AS e FULL OUTER JOIN ({actual}) AS a USING ({key_list})"
    )
    return keys, [c.name for c in columns], sql


def audit_target(run: RunSql, project: Project, target: str, pipes: list[Pipe], limit: int = 10) -> TargetAudit:
    """Compare one materialized datasource with what its materializations make of their sources."""
    keys, names, joined = audit_sql(project, target, pipes)
    result = TargetAudit(target, [p.name for p in pipes])
    summary = run(
        "SELECT count() AS compared, countIf(e__present = 1) AS expected, countIf(a__present = 1) AS actual, "
        f"countIf(same = 0) AS differing FROM ({joined})"
    )["data"][0]
    result.rows_compared = int(summary["compared"])
    result.expected_rows = int(summary["expected"])
    result.actual_rows = int(summary["actual"])
    result.differing = int(summary["differing"])
    if result.differing:
        order = ", ".join(identifier(k) for k in keys)
        rows = run(f"SELECT * FROM ({joined}) WHERE same = 0 ORDER BY {order} LIMIT {int(limit)}")["data"]
        for row in rows:
            key = {k: row[k] for k in keys}
            expected = {n: row[f"e__{n}"] for n in names} if row["e__present"] else None
            actual = {n: row[f"a__{n}"] for n in names} if row["a__present"] else None
            result.differences.append(Difference(key, expected, actual))
    return result


def audit_with(run: RunSql, project: Project, limit: int = 10) -> AuditReport:
    """Audit every materialized datasource of `project`, running the SQL with `run` (Query API JSON)."""
    return AuditReport([audit_target(run, project, t, pipes, limit) for t, pipes in feeders(project).items()])


def audit(reader: Reader, limit: int = 10) -> AuditReport:
    """Audit every materialized datasource of an embedded workspace."""
    return audit_with(lambda sql: json.loads(reader.sql(sql)), reader.project, limit)


def run_audit(
    layout: Layout, target: str = "embedded", token: str | None = None, limit: int = 10, engine: Engine | None = None
) -> AuditReport:
    """Audit a fresh embedded workspace seeded with the fixtures (in `engine`, else a temporary one), or the data of
    a Tinybird API as it is: `local` (Tinybird Local), `cloud` (TB_HOST/TB_TOKEN) or a URL, as `tbkit check
    --target` names them."""
    project = load_project(layout.project_dir)
    if target != "embedded":
        return audit_with(targets.remote_as_it_is(target, project, layout, token).sql, project, limit)
    with Engine.or_temporary(engine) as engine:
        embedded = targets.EmbeddedTarget(project, engine)
        try:
            embedded.prepare(layout.fixtures_dir)
            return audit_with(embedded.sql, project, limit)
        finally:
            embedded.close()
