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

from tinybird import sql_template, sql_toolset

from .errors import ParameterError, ProjectError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LINE_IN_MESSAGE = re.compile(r":(\d+) ")


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
    except (ValueError, SyntaxError) as e:
        raise ProjectError(_clean(str(e)), path=path) from None


def template_parameters(sql: str, node_name: str) -> list[dict]:
    """List the typed parameters a `%` template declares: name, type, default, description, ..."""
    template, _, _ = sql_template.get_template_and_variables(sql, node_name)
    return sql_template.get_var_names_and_types(template, node_name)


def render_template(sql: str, variables: dict[str, Any], node_name: str) -> str:
    """Render a `%` template with request parameters; bad or missing parameters raise ParameterError."""
    try:
        rendered, _, _ = sql_template.render_sql_template(sql, dict(variables), name=node_name)
    except sql_template.SQLTemplateCustomError as e:
        err = e.err.get("error", e.err) if isinstance(e.err, dict) else e.err
        raise ParameterError(str(err)) from None
    except sql_template.SQLTemplateException as e:
        raise ParameterError(str(e)) from None
    except (ValueError, TypeError, SyntaxError) as e:
        # `{{ error('...') }}` in a template raises a plain ValueError carrying the message.
        raise ParameterError(str(e)) from None
    return rendered


def render_template_for_check(sql: str, node_name: str) -> str:
    """Render a template with placeholder values, as `tb` does to validate a pipe without a request."""
    rendered, _, _ = sql_template.render_sql_template(sql, name=node_name, test_mode=True)
    return rendered


def used_tables(sql: str) -> list[str]:
    """Names of the tables (datasources or nodes) a SELECT reads, without database prefixes."""
    tables = sql_toolset.sql_get_used_tables(sql, raising=True, default_database="")
    return [table for _, table, *_ in tables if table]


def used_tables_with_database(sql: str) -> list[tuple[str, str]]:
    """(database, table) for every table a SELECT reads (table functions are not listed)."""
    tables = sql_toolset.sql_get_used_tables(sql, raising=True, default_database="")
    return [(database, table) for database, table, *_ in tables if table]


def replace_tables(sql: str, replacements: dict[str, tuple[str, str]], check_functions: bool = False) -> str:
    """Rewrite table references: each name maps to (database, table) or ("", "(subquery)")."""
    mapping = {("", name): target for name, target in replacements.items()}
    return sql_toolset.replace_tables(sql, mapping, default_database="", check_functions=check_functions)


def format_sql_error(error: Exception) -> str:
    """The message of an exception raised by the table rewriter, for a ProjectError or QueryError."""
    return _clean(str(error))


def local_build_workspace_name(project_dir: str | Path) -> str:
    """The workspace name `tb --local build|deploy` uses for a project folder (a hash of its path)."""
    from tinybird.tb.modules.local_common import get_build_workspace_name

    return get_build_workspace_name(os.path.normpath(os.path.abspath(project_dir)))
