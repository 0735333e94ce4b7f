"""The Query API's policy (`/v0/sql`, `Workspace.sql`): what a query may do and which resources it reads.

A query is planned once: `plan` parses it (with Tinybird's parser, through `tinybird_adapter`) and either
refuses it or answers which datasources, quarantine datasources and endpoints it reads, so a server can check a
token's scopes on the plan without parsing the SQL again. `render` then turns the plan into the SQL the engine
runs in one workspace: tables qualified with its database, endpoints inlined as subqueries.

The policy, as Tinybird's Query API: one SELECT (or WITH ... SELECT), an optional trailing `FORMAT <name>` among
the formats below, only the project's datasources, quarantine datasources and endpoints, plus Tinybird's service
datasources `tinybird.pipe_stats_rt` and `tinybird.pipe_stats` (no other database prefix, no system tables), only
the table functions and settings Tinybird enables, and no INTO OUTFILE. A service datasource shows a workspace its
own rows only (`service_datasources.subquery`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..engine import Condition
from ..engine.ingest import identifier
from ..errors import NotFoundError, ParameterError, QueryError, SqlParseError
from ..project import tinybird_adapter
from ..project.datafiles import Project
from . import pipes, service_datasources

FORMATS = frozenset({"JSON", "JSONCompact", "JSONEachRow", "CSV", "CSVWithNames", "TSV", "TSVWithNames", "Parquet"})

# ClickHouse's max_query_size: longer queries are refused before any parser sees them.
MAX_QUERY_BYTES = 256 * 1024
_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.I)
_SELECT = re.compile(r"^\s*(\(\s*)*(SELECT|WITH)\b", re.I)
_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.I)
# What cannot hide an INTO OUTFILE clause: string literals, quoted identifiers and comments. Only what is
# certainly not SQL is blanked (a `#` comment or a heredoc string is left in, at worst refusing a harmless query).
_NOT_CODE = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`|--[^\n]*|/\*.*?\*/""",
    re.S,
)


@dataclass(frozen=True)
class QueryPlan:
    """A Query API query that the policy allows, parsed once."""

    statement: str  # the query without trailing ';' and FORMAT clause
    fmt: str  # the output format (default "JSON"; from a trailing FORMAT clause)
    tables: tuple[tuple[str, str], ...]  # (database, table) as parsed, once
    resources: tuple[str, ...]  # sorted unique names of datasources / quarantine datasources / endpoints read
    pipeline: str | None = None  # the pipe whose nodes the query may read as tables (`?pipeline=`)
    nodes: tuple[str, ...] = ()  # the nodes of `pipeline` it reads


def _refuse_into_outfile(sql: str) -> None:
    if _INTO_OUTFILE.search(_NOT_CODE.sub(" ", sql)):
        raise ParameterError("[Error] INTO OUTFILE is not allowed in the Query API")


def plan(project: Project, text: str, fmt: str = "JSON", pipeline: str | None = None) -> QueryPlan:
    """Check a Query API query against the policy and list what it reads.

    With `pipeline` (a pipe's name, as `/v0/sql?pipeline=` takes it, which `tb dev` sends), the query may also
    read that pipe's nodes as tables; reading one needs READ on the pipe, which is then among the resources.

    Raises ParameterError (an unsupported format, not a SELECT, INTO OUTFILE), SqlParseError (a QueryError:
    SQL that Tinybird's parser refuses, a disabled table function) or NotFoundError (a table that is not a
    datasource, quarantine datasource or endpoint of `project`, or any `database.table`).
    """
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_QUERY_BYTES:
        raise ParameterError(
            f"[Error] the query is {size} bytes, over the Query API's limit of {MAX_QUERY_BYTES} bytes "
            "(ClickHouse's max_query_size)"
        )
    statement = text.strip().rstrip(";").strip()
    match = _FORMAT_CLAUSE.search(statement)
    if match:
        fmt = match.group(1)
        statement = statement[: match.start()].rstrip()
    if fmt not in FORMATS:
        raise ParameterError(f"[Error] unsupported format '{fmt}': use one of {', '.join(sorted(FORMATS))}")
    if not _SELECT.match(statement):
        raise ParameterError("[Error] only SELECT queries are allowed in the Query API")
    _refuse_into_outfile(statement)
    try:
        tables, functions = tinybird_adapter.used_tables_and_functions(statement)
    except SqlParseError as e:
        raise SqlParseError(f"[Error] {e}") from None
    known = pipes.table_replacements(project, "").keys() | project.endpoints.keys()
    node_names = _node_names(project, pipeline)
    nodes = tuple(sorted({table for database, table in tables if not database and table in node_names}))
    for database, table in tables:
        name = f"{database}.{table}" if database else table
        if name not in service_datasources.SERVICE_DATASOURCES and (database or table not in known | node_names):
            raise NotFoundError(f"[Error] Resource '{name}' not found")
    try:
        tinybird_adapter.refuse_disabled_table_functions(functions)
    except SqlParseError as e:
        raise SqlParseError(f"[Error] {e}") from None
    read = {f"{database}.{table}" if database else table for database, table in tables} - set(nodes)
    resources = tuple(sorted(read | ({pipeline} if nodes and pipeline else set())))
    return QueryPlan(statement, fmt, tuple(tables), resources, pipeline if nodes else None, nodes)


def _node_names(project: Project, pipeline: str | None) -> set[str]:
    """The node names of the pipe `pipeline` (none without one); NotFoundError for an unknown pipe."""
    if not pipeline:
        return set()
    pipe = project.pipes.get(pipeline)
    if pipe is None:
        raise NotFoundError(f"[Error] Pipe '{pipeline}' not found (the pipeline parameter)")
    return {node.name for node in pipe.nodes}


def render(
    plan: QueryPlan,
    project: Project,
    database: str,
    params: dict[str, Any],
    secrets: dict[str, str] | None = None,
    service_tables: bool = False,
) -> str:
    """The SQL that answers `plan` in workspace `database`: tables qualified, endpoints inlined for `params`.

    Endpoint parameters raise ParameterError as on the endpoint itself; INTO OUTFILE is refused again on the
    final SQL (Tinybird's formatting of it, so no comment or spacing can hide the clause from the check).
    """
    replacements = pipes.table_replacements(project, database)
    for name in plan.nodes:
        pipe = project.pipes[plan.pipeline or ""]
        replacements[name] = ("", f"({pipes.render_pipe(project, pipe, params, database, node=name, secrets=secrets)})")
    for name in plan.resources:
        if name == plan.pipeline and ("", name) not in plan.tables:
            continue  # read through its nodes only
        pipe = project.endpoints.get(name)
        if pipe is not None:
            replacements[name] = ("", f"({pipes.render_pipe(project, pipe, params, database, secrets=secrets)})")
        elif name in service_datasources.SERVICE_DATASOURCES:
            replacements[name] = ("", f"({service_datasources.subquery(name, database, service_tables)})")
    try:
        sql = tinybird_adapter.replace_tables(plan.statement, replacements, check_functions=True)
    except SqlParseError as e:
        raise SqlParseError(f"[Error] {e}") from None
    _refuse_into_outfile(sql)
    return sql


def check_condition(project: Project, datasource: str, condition: str | None) -> Condition:
    """A SQL condition on a datasource's columns (a delete's or a replace's), checked with the Query API's parser;
    ParameterError if it is empty, does not parse, or reads anything but the datasource itself."""
    project.datasource(datasource)
    if not condition or not condition.strip():
        raise ParameterError("The SQL condition is empty: give a condition on the datasource's columns")
    text = f"SELECT count() FROM {identifier(datasource)} WHERE ({condition})"
    try:
        checked = plan(project, text)
    except (QueryError, NotFoundError) as e:
        raise ParameterError(f"Invalid SQL condition '{condition}': {e}") from None
    if set(checked.resources) != {datasource}:
        raise ParameterError(f"Invalid SQL condition '{condition}': it may only refer to the columns of '{datasource}'")
    return Condition(datasource, condition)
