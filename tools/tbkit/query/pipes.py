"""Turn an endpoint request (a pipe and its query parameters) into one ClickHouse SELECT.

Each node is rendered with Tinybird's template engine (so parameter types, defaults, quoting and
`{{ error(...) }}` behave as in Tinybird), then the output node's references to earlier nodes become
subqueries and references to datasources become qualified tables, with Tinybird's table rewriter (once per
query shape: `tbkit.skeletons`).
"""

from __future__ import annotations

from typing import Any

from ..engine import ingest
from ..errors import ParameterError, QueryError, SqlParseError
from ..project import tinybird_adapter
from ..project.datafiles import Pipe, Project
from .skeletons import Skeletons

# Query parameters that Tinybird's API consumes itself and never passes to the template.
RESERVED_PARAMETERS = frozenset({"token", "q", "format", "pipeline", "debug", "from", "tag", "query_id"})


def template_variables(params: dict[str, Any]) -> dict[str, Any]:
    """The request parameters a template sees: reserved names dropped, empty values left out."""
    return {key: value for key, value in params.items() if key not in RESERVED_PARAMETERS}


def table_replacements(project: Project, database: str) -> dict[str, tuple[str, str]]:
    """Every datasource and quarantine datasource name mapped to its qualified table."""
    replacements = {}
    for name in project.datasources:
        replacements[name] = (database, name)
        replacements[name + ingest.QUARANTINE_SUFFIX] = (database, name + ingest.QUARANTINE_SUFFIX)
    return replacements


def render_pipe(
    project: Project,
    pipe: Pipe,
    params: dict[str, Any],
    database: str,
    depth: int = 0,
    placeholders: bool = False,
    node: str | None = None,
    secrets: dict[str, str] | None = None,
    skeletons: Skeletons | None = None,
) -> str:
    """The SELECT that answers `pipe` (or its node called `node`) for `params`, with every reference resolved.

    With `placeholders`, parameters take Tinybird's placeholder values instead (to learn the columns);
    `secrets` are the workspace's, for `tb_secret()`; `skeletons` caches the table rewrite by query shape (without
    it, every query is rewritten).
    """
    if depth > 8:
        raise QueryError(f"pipe '{pipe.name}' reads other endpoints more than 8 levels deep")
    variables = template_variables(params)
    replacements = table_replacements(project, database)
    output = pipe.output_node if node is None else next(n for n in pipe.nodes if n.name == node)
    sql = ""
    for each in pipe.nodes:
        if not each.is_template:
            sql = each.sql
        elif placeholders:
            sql = tinybird_adapter.render_template_for_check(each.template, each.name)
        else:
            sql = tinybird_adapter.render_template(each.template, variables, each.name, secrets)
        if not sql.strip():
            raise ParameterError(f"node '{each.name}' of pipe '{pipe.name}' renders to an empty query")
        if each is output:
            break
        replacements[each.name] = ("", f"({sql})")
    for each in pipe.nodes:
        for name in each.reads:
            if name not in replacements and name in project.endpoints:
                other = project.endpoints[name]
                other_sql = render_pipe(
                    project, other, params, database, depth + 1, placeholders, secrets=secrets, skeletons=skeletons
                )
                replacements[name] = ("", f"({other_sql})")
    try:
        if placeholders or skeletons is None:
            return tinybird_adapter.replace_tables(sql, replacements)
        return skeletons.rewrite(sql, replacements, tinybird_adapter.replace_tables)
    except SqlParseError as e:
        raise SqlParseError(f"[Error] {e}") from None
