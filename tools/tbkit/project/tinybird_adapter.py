"""The one module that calls into the `tinybird` package (the Tinybird Forward CLI).

tbkit reuses Tinybird's own datafile parser, SQL template engine and table rewriter rather than
re-implementing them, so that quoting, type checks and datafile syntax are exactly Tinybird's. The
package's internals are not a public API: keeping every call here means a version bump touches one file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
from tinybird.datafile.common import DatafileSyntaxError, DatafileValidationError
from tinybird.datafile.parse_datasource import parse_datasource
from tinybird.datafile.parse_pipe import parse_pipe
from tinybird.tornado_template import ParseError, SecurityException, UnClosedIfError

from tinybird import sql_template, sql_toolset

from ..errors import ParameterError, ProjectError, SqlParseError, TemplateError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LINE_IN_MESSAGE = re.compile(r":(\d+) ")

# What Tinybird's template parser raises for a template it cannot read (checked on this version by reading
# sql_template.py / tornado_template.py and by feeding it random templates): tornado's ParseError, an unclosed
# `{% if %}`, a forbidden name or operator (SecurityException, usually wrapped in SQLTemplateException, a
# ValueError), Python's own SyntaxError/IndentationError for a bad expression, ValueError for a reserved
# variable name, and RecursionError or MemoryError from Python's parser for absurdly nested expressions.
_TEMPLATE_PARSE_ERRORS = (
    ParseError,
    UnClosedIfError,
    SecurityException,
    SyntaxError,
    ValueError,
    RecursionError,
    MemoryError,
)


def _clean(message: str) -> str:
    """Strip the terminal colours and emoji prefix that tb's feedback messages carry."""
    text = _ANSI.sub("", message).strip()
    return re.sub(r"^\W+\s*Error:\s*", "", text)


def parse_datafile(path: str, kind: str) -> Any:
    """Parse a `.datasource` or `.pipe` file with Tinybird's parser; raise ProjectError on failure."""
    parser = parse_datasource if kind == "datasource" else parse_pipe
    try:
        return parser(path, replace_includes=True).datafile
    except DatafileSyntaxError as e:
        detail = e.message + (f" ({e.hint})" if e.hint else "")
        raise ProjectError(detail, path=path, line=e.lineno) from None
    except DatafileValidationError as e:
        raise ProjectError(_clean(str(e)), path=path) from None
    except click.ClickException as e:
        message = _clean(e.format_message())
        match = _LINE_IN_MESSAGE.search(message)
        line = int(match.group(1)) if match and match.group(1) != "-1" else None
        message = re.sub(r"^error parsing \S+?:-?\d*\s*", "", message)
        raise ProjectError(message, path=path, line=line) from None
    except ParseError as e:
        # The template engine's own syntax errors escape parse_pipe: `filename` is the node, `lineno` the line
        # in its template.
        line = _template_line(path, e.filename, e.lineno)
        raise ProjectError(f"node '{e.filename}': {e.message}", path=path, line=line) from None
    except (ValueError, SyntaxError) as e:
        raise ProjectError(_clean(str(e)), path=path) from None
    except Exception as e:
        # Broad on purpose: parse_pipe renders every `%` node with placeholder values, and render_sql_template
        # re-raises whatever the template's own expressions raise (`{% set y = 1 / 0 %}`: ZeroDivisionError).
        raise ProjectError(f"a template fails when rendered with placeholder values: {e}", path=path) from None


def _template_line(path: str, node: str, lineno: int) -> int | None:
    """The line of `path` holding line `lineno` of node `node`'s template (line 1 is the one with the `%`)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    start = next((n for n, text in enumerate(lines) if re.match(rf"NODE\s+{re.escape(node)}\s*$", text)), None)
    if start is None:
        return None
    in_sql = False
    for number, text in enumerate(lines[start + 1 :], start + 2):
        if text.startswith("NODE "):
            return None
        if re.match(r"SQL\s*>", text):
            in_sql = True
        elif in_sql and text.strip():
            return number + lineno - 1 if text.strip().startswith("%") else None
    return None


def template_parameters(sql: str, node_name: str) -> list[dict]:
    """List the typed parameters a `%` template declares: name, type, default, description, ...

    A template the engine cannot parse raises TemplateError.
    """
    try:
        template, _, _ = sql_template.get_template_and_variables(sql, node_name)
        return sql_template.get_var_names_and_types(template, node_name)
    except _TEMPLATE_PARSE_ERRORS as e:
        raise TemplateError(str(e)) from None


def template_if_chains(sql: str, node_name: str) -> list[tuple[int, list[str]]]:
    """Every `{% if %}` of a `%` template, in the order they appear (outer before inner): the line of the
    `if` in the template and the statement of each of its arms (`if x`, `elif y`, `else`), from Tinybird's own
    template parser. A template the engine cannot parse raises TemplateError.
    """
    try:
        template, _, _ = sql_template.get_template_and_variables(sql, node_name)
    except _TEMPLATE_PARSE_ERRORS as e:
        raise TemplateError(str(e)) from None
    chains: list[tuple[int, list[str]]] = []

    def walk(chunks: list[Any]) -> None:
        for chunk in chunks:
            statement = getattr(chunk, "statement", None)
            body = getattr(chunk, "body", None)
            if statement is None or body is None:
                continue
            if statement.split(None, 1)[0] == "if":
                arms = [statement] + [
                    c.statement for c in body.chunks if type(c).__name__ == "_IntermediateControlBlock"
                ]
                chains.append((chunk.line, [" ".join(a.split()) for a in arms]))
            walk(body.chunks)

    walk(template.file.body.chunks)
    return chains


def template_file_line(path: str | Path, node: str, lineno: int) -> int | None:
    """The line of the `.pipe` file at `path` that holds line `lineno` of node `node`'s template."""
    return _template_line(str(path), node, lineno)


def render_template(sql: str, variables: dict[str, Any], node_name: str, secrets: dict[str, str] | None = None) -> str:
    """Render a `%` template with request parameters; bad or missing parameters raise ParameterError.

    `secrets` are the workspace's secrets by name: `{{ tb_secret('NAME') }}` becomes the quoted value where
    Tinybird would bind it as a query parameter, and its default (or an error) when the secret is not set.
    """
    names = [sql_template.secret_template_key(name) for name in secrets] if secrets else None
    try:
        rendered, results, _ = sql_template.render_sql_template(sql, dict(variables), secrets=names, name=node_name)
    except sql_template.SQLTemplateCustomError as e:
        err = e.err.get("error", e.err) if isinstance(e.err, dict) else e.err
        raise ParameterError(str(err)) from None
    except sql_template.SQLTemplateException as e:
        raise ParameterError(str(e)) from None
    except Exception as e:
        # Broad on purpose: `{{ error('...') }}` raises a plain ValueError carrying the message, a bad value a
        # ValueError or TypeError, and the template runs its own expressions, whose errors render_sql_template
        # re-raises whatever their type (`{% set r = 10 / Int32(d, 1) %}` with d=0 raises ZeroDivisionError).
        raise ParameterError(str(e)) from None
    for name in results.ch_params if secrets else ():
        placeholder = "{" + sql_template.sqlescape(name) + ": String}"
        rendered = rendered.replace(placeholder, "'" + sql_template.sqlescape(secrets[name]) + "'")
    return rendered


def render_template_for_check(sql: str, node_name: str) -> str:
    """Render a template with placeholder values, as `tb` does to validate a pipe without a request.

    A template that cannot be parsed or rendered raises TemplateError.
    """
    try:
        rendered, _, _ = sql_template.render_sql_template(sql, name=node_name, test_mode=True)
    except Exception as e:
        # Broad on purpose: besides the parse errors above, rendering runs the template's own expressions and
        # render_sql_template re-raises whatever they raise (ZeroDivisionError, TypeError, ...), of any type.
        raise TemplateError(str(e)) from None
    return rendered


def _sql_error(error: ValueError) -> SqlParseError:
    return SqlParseError(_clean(str(error)))


def _tables(sql: str) -> list[tuple[str, str, str]]:
    # Every failure of sql_toolset is a ValueError: the C++ parser's (syntax errors, "Only SELECT or DESCRIBE
    # queries are supported", unknown functions, a NUL byte), InvalidFunction (restricted functions, table
    # functions and settings), MissingResource, toposort's CircularDependencyError and UnicodeEncodeError.
    try:
        return sql_toolset.sql_get_used_tables(sql, raising=True, default_database="")
    except ValueError as e:
        raise _sql_error(e) from None


def used_tables(sql: str) -> list[str]:
    """Names of the tables (datasources or nodes) a SELECT reads, without database prefixes.

    SQL that Tinybird's parser refuses raises SqlParseError.
    """
    return [table for _, table, *_ in _tables(sql) if table]


def used_tables_and_functions(sql: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(database, table) for every table a SELECT reads, and the table functions it calls, from one parse.

    SQL that Tinybird's parser refuses raises SqlParseError.
    """
    tables = _tables(sql)
    return [(d, t) for d, t, *_ in tables if t], [f for *_, f in tables if f]


def refuse_disabled_table_functions(functions: list[str]) -> None:
    """Raise SqlParseError for a table function Tinybird does not enable, as `replace_tables(...,
    check_functions=True)` does (`numbers`, `values`, `zeros`, ... are enabled; `cluster`, `format` are not)."""
    for function in functions:
        if function not in sql_toolset.ENABLED_TABLE_FUNCTIONS:
            raise _sql_error(sql_toolset.InvalidFunction(table_function_name=function))


def replace_tables(sql: str, replacements: dict[str, tuple[str, str]], check_functions: bool = False) -> str:
    """Rewrite table references: each name (`table`, or `database.table`) maps to (database, table) or
    ("", "(subquery)").

    SQL that Tinybird's parser refuses (in `sql` or in a subquery) raises SqlParseError.
    """
    mapping = {(*name.split(".", 1),) if "." in name else ("", name): target for name, target in replacements.items()}
    try:
        return sql_toolset.replace_tables(sql, mapping, default_database="", check_functions=check_functions)
    except ValueError as e:  # see _tables: every failure of sql_toolset is a ValueError
        raise _sql_error(e) from None


def local_build_workspace_name(project_dir: str | Path) -> str:
    """The workspace name `tb --local build|deploy` uses for a project folder (a hash of its path)."""
    from tinybird.tb.modules.local_common import get_build_workspace_name

    return get_build_workspace_name(os.path.normpath(os.path.abspath(project_dir)))
