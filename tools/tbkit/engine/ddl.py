"""ClickHouse DDL for a project: tables for datasources and their quarantine, materialized views."""

from __future__ import annotations

from ..errors import ProjectError, SqlParseError
from ..project import tinybird_adapter
from ..project.datafiles import Datasource, Pipe, Project
from . import ingest
from .ingest import identifier

# Tinybird's ENGINE_* settings that become engine arguments, in argument order.
_ENGINE_ARGUMENTS = {
    "ReplacingMergeTree": ("ver", "is_deleted"),
    "CollapsingMergeTree": ("sign",),
    "VersionedCollapsingMergeTree": ("sign", "version"),
    "SummingMergeTree": ("columns",),
}


def table_name(database: str, name: str) -> str:
    """A fully qualified table name."""
    return f"{identifier(database)}.{identifier(name)}"


def _engine_clause(datasource: Datasource) -> str:
    engine = datasource.engine
    args = datasource.engine_args
    if engine == "Null":
        return "ENGINE = Null"
    values = [args[key] for key in _ENGINE_ARGUMENTS.get(engine, ()) if args.get(key)]
    if engine == "SummingMergeTree" and values:
        values = [f"({values[0]})"]
    clause = f"ENGINE = {engine}({', '.join(values)})"
    if args.get("partition_key"):
        clause += f"\nPARTITION BY {args['partition_key']}"
    if args.get("primary_key"):
        clause += f"\nPRIMARY KEY ({args['primary_key']})"
    clause += f"\nORDER BY ({args.get('sorting_key') or 'tuple()'})"
    if args.get("ttl"):
        clause += f"\nTTL {args['ttl']}"
    if args.get("settings"):
        clause += f"\nSETTINGS {args['settings']}"
    return clause


def create_table(database: str, datasource: Datasource) -> str:
    """CREATE TABLE for a datasource, with its engine, keys, defaults, codecs and indexes."""
    definitions = []
    for column in datasource.columns:
        definition = f"{identifier(column.name)} {column.full_type}"
        if column.default is not None:
            definition += f" DEFAULT {column.default}"
        if column.codec:
            definition += f" {column.codec}"
        definitions.append(definition)
    for index in datasource.indexes:
        definitions.append(f"INDEX {index.name} {index.expr} TYPE {index.type_full} GRANULARITY {index.granularity}")
    body = ",\n    ".join(definitions)
    name = table_name(database, datasource.name)
    return f"CREATE TABLE IF NOT EXISTS {name}\n(\n    {body}\n)\n{_engine_clause(datasource)}"


def create_quarantine_table(database: str, datasource: Datasource) -> str:
    """CREATE TABLE for `<datasource>_quarantine`."""
    name = table_name(database, datasource.name + ingest.QUARANTINE_SUFFIX)
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ({ingest.quarantine_columns(datasource)}) "
        "ENGINE = MergeTree ORDER BY insertion_date"
    )


def view_name(pipe: Pipe) -> str:
    """The ClickHouse materialized view behind a materialization pipe."""
    return f"{pipe.name}__mv"


def materialized_select(database: str, project: Project, pipe: Pipe) -> str:
    """The SELECT of a materialization pipe: earlier nodes inlined, datasources qualified with `database`."""
    output = pipe.output_node
    replacements: dict[str, tuple[str, str]] = {name: (database, name) for name in project.datasources}
    for node in pipe.nodes:
        if node is output:
            break
        replacements[node.name] = ("", f"({node.sql})")
    try:
        return tinybird_adapter.replace_tables(output.sql, replacements)
    except SqlParseError as e:
        raise ProjectError(
            f"materialized node '{output.name}': {e}",
            path=str(pipe.path),
            line=output.line,
        ) from None


def create_materialized_view(database: str, project: Project, pipe: Pipe) -> str:
    """CREATE MATERIALIZED VIEW ... TO target AS the pipe's SQL, nodes inlined, tables qualified."""
    select = materialized_select(database, project, pipe)
    view = table_name(database, view_name(pipe))
    target = table_name(database, pipe.output_node.datasource)
    return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} TO {target}\nAS {select}"


def populate(database: str, project: Project, pipe: Pipe) -> str:
    """INSERT into a materialization's target what its SELECT gives over the whole of its sources."""
    target = table_name(database, pipe.output_node.datasource)
    return f"INSERT INTO {target}\n{materialized_select(database, project, pipe)}"


def sources(project: Project, pipe: Pipe) -> set[str]:
    """The datasources a pipe reads (through any of its nodes)."""
    return {table for node in pipe.nodes for table in node.reads if table in project.datasources}


def materializations_reading(project: Project, datasource: str) -> list[Pipe]:
    """The materialization pipes that read `datasource`, by name."""
    pipes = project.materializations.values()
    return sorted((p for p in pipes if datasource in sources(project, p)), key=lambda p: p.name)


def downstream(project: Project, datasource: str) -> list[str]:
    """Every datasource fed from `datasource` through materializations, directly or not, nearest first."""
    found: list[str] = []
    frontier = [datasource]
    while frontier:
        current = frontier.pop(0)
        for pipe in materializations_reading(project, current):
            target = pipe.output_node.datasource
            if target and target != datasource and target not in found:
                found.append(target)
                frontier.append(target)
    return found
