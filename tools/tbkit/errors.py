"""The one error hierarchy of tbkit.

Every error carries a sentence for the user. The HTTP server maps the classes to status codes in one
place (`server.py`) and the CLI maps them to exit codes in one place (`cli.py`).
"""

from __future__ import annotations


class TbkitError(Exception):
    """Base class: something the user can fix, with a message that says what and where."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ProjectError(TbkitError):
    """A datafile is missing, malformed or inconsistent (names the file and, when known, the line)."""

    status = 400

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class ParameterError(TbkitError):
    """A request parameter is missing or has the wrong type or value (HTTP 400)."""

    status = 400


class QueryError(TbkitError):
    """The engine rejected a query built from valid parameters (HTTP 400, as Tinybird answers)."""

    status = 400


class SqlParseError(QueryError):
    """Tinybird's SQL parser refused a query (HTTP 400): a syntax error, a statement that is not a SELECT, a
    restricted function, table function or setting, or subqueries that read each other in a cycle.

    Raised by `tinybird_adapter` with the parser's message; callers add where it came from (file, node, or the
    Query API's `[Error]` prefix).
    """

    status = 400


class TemplateError(TbkitError):
    """A node's `%` template cannot be parsed, typed or rendered with placeholder values (HTTP 400).

    Raised by `tinybird_adapter` with the template engine's message; callers add the file, line and node.
    """

    status = 400


class AuthError(TbkitError):
    """The token is missing, unknown or lacks the scope for the resource (HTTP 403)."""

    status = 403


class NotFoundError(TbkitError):
    """An unknown datasource, pipe, endpoint, case or workspace (HTTP 404)."""

    status = 404


class IngestError(TbkitError):
    """A body or file cannot be appended at all, e.g. it is not NDJSON or not gzip (HTTP 400)."""

    status = 400


class PayloadTooLargeError(IngestError):
    """A request body is over the size limit (HTTP 413)."""

    status = 413


class QueryTimeoutError(TbkitError):
    """A query ran past its time limit and was cancelled (HTTP 408)."""

    status = 408


class TooManyRequestsError(TbkitError):
    """The server is at its concurrency limit; retry after `retry_after` seconds (HTTP 429)."""

    status = 429

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class TbCommandError(TbkitError):
    """The `tb` CLI is missing, or a `tb` command failed."""

    status = 500


class MemoryLimitError(QueryError):
    """A query needed more memory than its per-query limit and was cancelled (HTTP 400, as Tinybird answers
    ClickHouse's MEMORY_LIMIT_EXCEEDED)."""

    status = 400


class ServerMemoryError(TbkitError):
    """The server as a whole is at its memory limit; the request may succeed once others finish (HTTP 503)."""

    status = 503


class StorageFullError(TbkitError):
    """The data directory's disk is full: nothing more can be stored until space is freed (HTTP 507)."""

    status = 507
