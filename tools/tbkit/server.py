"""`tbkit serve`: Tinybird's HTTP API over the embedded engine.

The same paths, response shapes and status codes as Tinybird: the Events API, the Data Sources API
(append), endpoints under `/v0/pipes`, the Query API, an OpenAPI document and health. Engine calls run in
a thread pool, each thread with its own chDB connection, so a slow query never blocks ingestion. Errors
from `tbkit.errors` become HTTP statuses in exactly one place, `BaseHandler.write_error`.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import logging
import re
import signal
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web

from . import openapi, tinybird_adapter
from .engine import Engine
from .errors import (
    AuthError,
    IngestError,
    NotFoundError,
    ParameterError,
    PayloadTooLargeError,
    TbkitError,
    TooManyRequestsError,
)
from .project import load_project
from .tokens import Token
from .workspaces import Registry, Tenant

log = logging.getLogger("tbkit.server")
_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s]+")
_FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
# Content types the Events API reads as NDJSON: curl -d sends form-urlencoded, SDKs send JSON or NDJSON.
_EVENT_TYPES = {
    "",
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "application/gzip",
}


@dataclass
class ServerConfig:
    """Everything `tbkit serve` needs to know."""

    project_dir: Path = Path("tinybird")
    data_dir: Path = Path(".tbkit")
    host: str = "127.0.0.1"
    port: int = 7181
    admin_token: str | None = None
    workspace: str = "main"
    max_events_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_concurrency: int = 32
    query_timeout: float | None = None
    threads: int = 16
    local_api: bool = False


def redact(uri: str) -> str:
    """A URI with any `token=` value replaced, for logs and errors."""
    return _TOKEN_IN_QUERY.sub(r"\1***", uri)


class Service:
    """The served state: engine, workspaces, executor and the concurrency limit."""

    def __init__(self, config: ServerConfig):
        self.config = config
        project = load_project(config.project_dir)
        self.engine = Engine.open(config.data_dir, query_timeout=config.query_timeout)
        try:
            self.registry = Registry.open(self.engine, Path(config.data_dir), project, config.admin_token)
        except BaseException:
            self.engine.close()
            raise
        self.executor = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="tbkit")
        self.in_flight = 0
        self._columns: dict[tuple[str, int], dict[str, list[tuple[str, str]]]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}

    def record_job(self, tenant: Tenant, kind: str, datasource: str, result: dict, job_id: str) -> dict[str, Any]:
        """Remember a finished job (appends run to completion before answering) for the Jobs API."""
        job = {
            "id": job_id,
            "kind": kind,
            "status": "done",
            "workspace": tenant.id,
            "datasource": {"id": datasource, "name": datasource},
            "statistics": result,
            **result,
        }
        self.jobs[job_id] = job
        while len(self.jobs) > 1000:
            self.jobs.pop(next(iter(self.jobs)))
        return job

    @property
    def main(self) -> Tenant:
        """The workspace built from the served project folder."""
        return self.registry.main

    async def run(self, function: Callable, *args: Any) -> Any:
        """Run a blocking engine call in the thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def endpoint_columns(self, tenant: Tenant) -> dict[str, list[tuple[str, str]]]:
        """Columns of every endpoint of a workspace, computed once per deployment."""
        key = (tenant.name, len(tenant.deployments))
        if key not in self._columns:
            self._columns[key] = {name: tenant.workspace.endpoint_columns(name) for name in tenant.project.endpoints}
        return self._columns[key]

    def close(self) -> None:
        """Stop the thread pool and release the engine."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.engine.close()


class BaseHandler(tornado.web.RequestHandler):
    """Shared behaviour: JSON errors, tokens, parameters and the concurrency limit."""

    service: Service

    def initialize(self, service: Service) -> None:
        self.service = service
        self._counted = False

    def prepare(self) -> None:
        if self.service.in_flight >= self.service.config.max_concurrency:
            raise TooManyRequestsError(
                f"Too many requests: the server is at its limit of {self.service.config.max_concurrency} "
                "concurrent requests; retry after the time in Retry-After",
                retry_after=1,
            )
        self.service.in_flight += 1
        self._counted = True

    def on_finish(self) -> None:
        if self._counted:
            self.service.in_flight -= 1
            self._counted = False

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Access-Control-Allow-Origin", "*")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place errors become HTTP responses: `{"error": "..."}` with Tinybird's statuses."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, TbkitError):
            self.set_status(error.status)
            message = error.message
            if isinstance(error, TooManyRequestsError):
                self.set_header("Retry-After", str(error.retry_after))
        elif isinstance(error, tornado.web.HTTPError):
            message = error.log_message or self._reason
        else:
            message = "Internal server error"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, TbkitError):
            return  # expected: answered with its status, not logged as a failure
        if isinstance(value, tornado.web.HTTPError):
            return super().log_exception(typ, value, tb)
        log.error("unexpected error on %s %s", self.request.method, redact(self.request.uri), exc_info=(typ, value, tb))

    def token_value(self) -> str | None:
        """The token sent with the request, as `Authorization: Bearer` or `?token=`."""
        header = self.request.headers.get("Authorization", "")
        value = header[7:].strip() if header.lower().startswith("bearer ") else None
        return value or self.get_query_argument("token", None)

    def auth(self) -> tuple[Tenant, Token]:
        """The workspace and token of the request's token (AuthError when missing or unknown)."""
        return self.service.registry.authenticate(self.token_value())

    def query_params(self) -> dict[str, str]:
        """Query parameters as single strings (the last value wins), `token` removed."""
        params = {k: v[-1].decode("utf-8", "replace") for k, v in self.request.query_arguments.items()}
        params.pop("token", None)
        return params

    def send_json(self, content: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(content))


class HealthHandler(BaseHandler):
    """`GET /v0/health`: is the server up, and what does it serve."""

    def prepare(self) -> None:  # health is never refused by the concurrency limit
        pass

    def get(self) -> None:
        project = self.service.main.project
        self.send_json(
            {
                "status": "ok",
                "workspace": self.service.main.name,
                "datasources": len(project.datasources),
                "endpoints": len(project.endpoints),
                "requests_in_flight": self.service.in_flight,
            }
        )


class IndexHandler(BaseHandler):
    """`GET /`: a short page listing the endpoints with example URLs."""

    def prepare(self) -> None:
        pass

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        base = f"{self.request.protocol}://{self.request.host}"
        items = []
        for name, pipe in sorted(self.service.main.project.endpoints.items()):
            example = "&".join(f"{p.name}={_example_value(p)}" for p in pipe.parameters.values() if p.required)
            url = f"{base}/v0/pipes/{name}.json?{example + '&' if example else ''}token=$TB_TOKEN"
            description = html.escape(pipe.description)
            items.append(f"<li><b>{html.escape(name)}</b>: {description}<br><code>{html.escape(url)}</code></li>")
        spec = "<a href='/v0/pipes/openapi.json'>/v0/pipes/openapi.json</a>"
        self.finish(
            "<!doctype html><title>tbkit</title><h1>Customer analytics API</h1>"
            f"<p>Tinybird API on the embedded engine. OpenAPI: {spec}</p><ul>{''.join(items)}</ul>"
        )


def _example_value(parameter: Any) -> str:
    return "cust123" if parameter.name == "customer_id" else str(parameter.default or "")


def _decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body, gunzipped when it says or looks gzip; IngestError when it claims gzip and is not."""
    if (encoding or "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = decompressor.decompress(body, limit + 1)
            if len(data) > limit or decompressor.unconsumed_tail:
                raise PayloadTooLargeError(f"The decompressed body is larger than the limit of {limit} bytes")
            if not decompressor.eof:
                raise IngestError("The body is not valid gzip: it ends before the gzip stream does")
            return data
        except zlib.error as e:
            raise IngestError(f"The body is not valid gzip ({e})") from None
    return body


class EventsHandler(BaseHandler):
    """`POST /v0/events?name=<datasource>[&wait=true]`: the Events API (NDJSON)."""

    async def post(self) -> None:
        name = self.get_query_argument("name", None)
        if not name:
            raise ParameterError("The 'name' parameter is required: /v0/events?name=<datasource>")
        tenant, token = self.auth()
        tenant.project.datasource(name)
        if not token.can_append(name):
            raise AuthError(f"Forbidden: this token has no APPEND scope on the Data Source '{name}'")
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in _EVENT_TYPES:
            raise IngestError(
                f"Unsupported Content-Type '{content_type}': send NDJSON (application/x-ndjson or application/json)"
            )
        limit = self.service.config.max_events_bytes
        if len(self.request.body) > limit:
            raise PayloadTooLargeError(f"The body is larger than the Events API limit of {limit} bytes")
        body = _decompress(self.request.body, self.request.headers.get("Content-Encoding"), limit)
        result = await self.service.run(tenant.workspace.append, name, body)
        self.set_header("X-Tbkit-Import-Id", result.import_id)
        wait = self.get_query_argument("wait", "false").lower() in ("true", "1")
        self.send_json(result.to_dict(), 200 if wait else 202)


class DatasourcesHandler(BaseHandler):
    """`POST /v0/datasources?name=<ds>&mode=append&format=ndjson|csv` with a file; `GET` lists them."""

    async def post(self) -> None:
        name = self.get_query_argument("name", None)
        if not name:
            raise ParameterError("The 'name' parameter is required: /v0/datasources?name=<datasource>&mode=append")
        mode = self.get_query_argument("mode", "append")
        if mode != "append":
            raise ParameterError(f"Unsupported mode '{mode}': this server supports mode=append")
        tenant, token = self.auth()
        datasource = tenant.project.datasource(name)
        if not token.can_append(name):
            raise AuthError(f"Forbidden: this token has no APPEND scope on the Data Source '{name}'")
        data, filename = self._upload()
        fmt = self.get_query_argument("format", None) or _format_of(filename)
        data = _decompress(data, None, self.service.config.max_upload_bytes)
        if fmt == "csv":
            data = csv_to_ndjson(data, [c.name for c in datasource.columns])
        elif fmt not in ("ndjson", "jsonl", "json"):
            raise ParameterError(f"Unsupported format '{fmt}': use format=ndjson or format=csv")
        started = time.perf_counter()
        result = await self.service.run(tenant.workspace.append, name, data)
        self.send_json(
            {
                "id": result.import_id,
                "import_id": result.import_id,
                "job_id": result.import_id,
                "datasource": {"id": name, "name": name},
                "successful_rows": result.successful_rows,
                "quarantined_rows": result.quarantined_rows,
                "quarantine_rows": result.quarantined_rows,
                "invalid_lines": 0,
                "error": False,
                "elapsed": round(time.perf_counter() - started, 3),
            }
        )

    def _upload(self) -> tuple[bytes, str]:
        if len(self.request.body) > self.service.config.max_upload_bytes:
            raise PayloadTooLargeError(f"The upload is larger than the limit of {self.service.config.max_upload_bytes}")
        for files in self.request.files.values():
            if files:
                return files[0].body, files[0].filename or ""
        if self.request.body and not self.request.headers.get("Content-Type", "").startswith("multipart/"):
            return self.request.body, ""
        raise ParameterError(
            "Send the file as a multipart upload (e.g. curl -F csv=@file.csv or -F ndjson=@file.ndjson)"
        )

    async def get(self) -> None:
        tenant, token = self.auth()
        if not token.admin:
            raise AuthError("Forbidden: listing Data Sources needs the admin token")
        names = sorted(tenant.project.datasources)
        self.send_json({"datasources": [{"name": n, "type": "ndjson"} for n in names]})


def _format_of(filename: str) -> str:
    name = filename.lower().removesuffix(".gz")
    return "csv" if name.endswith(".csv") else "ndjson"


def csv_to_ndjson(data: bytes, columns: list[str]) -> bytes:
    """CSV rows as NDJSON objects, by header when the first row names the columns, else by position."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig", "replace")))
    rows = [row for row in reader if row]
    if rows and set(rows[0]) <= set(columns) and rows[0]:
        header, rows = rows[0], rows[1:]
    else:
        header = columns
    out = io.StringIO()
    for row in rows:
        record = {name: value for name, value in zip(header, row, strict=False) if value != ""}
        out.write(json.dumps(record) + "\n")
    return out.getvalue().encode()


class TruncateHandler(BaseHandler):
    """`POST /v0/datasources/<name>/truncate` (admin): empty a datasource and its quarantine."""

    async def post(self, name: str) -> None:
        tenant, token = self.auth()
        if not token.admin:
            raise AuthError("Forbidden: truncating a Data Source needs the admin token")
        await self.service.run(tenant.workspace.truncate, name)
        self.send_json({"result": "ok", "datasource": name})


class DatasourceInfoHandler(BaseHandler):
    """`GET /v0/datasources/<name>`: a datasource's schema, engine and row count."""

    async def get(self, name: str) -> None:
        tenant, token = self.auth()
        datasource = tenant.project.datasource(name)
        if not (token.admin or token.can_append(name) or token.can_query([name])):
            raise AuthError(f"Forbidden: this token has no scope on the Data Source '{name}'")
        rows = await self.service.run(tenant.workspace.row_count, name)
        self.send_json(
            {
                "id": name,
                "name": name,
                "description": datasource.description,
                "type": "ndjson",
                "engine": {"engine": datasource.engine, **datasource.engine_args},
                "columns": [{"name": c.name, "type": c.full_type, "jsonpath": c.jsonpath} for c in datasource.columns],
                "statistics": {"row_count": rows},
            }
        )


class PipeInfoHandler(BaseHandler):
    """`GET /v0/pipes/<name>`: a pipe's nodes and their types, as `tb test run` reads them."""

    def get(self, name: str) -> None:
        tenant, token = self.auth()
        if name not in tenant.project.pipes:
            raise NotFoundError(f"The pipe '{name}' does not exist")
        if not token.can_read_pipe(name):
            raise AuthError(f"Forbidden: this token has no READ scope on the pipe '{name}'")
        pipe = tenant.project.pipes[name]
        output = pipe.output_node
        nodes = [
            {
                "id": node.name,
                "name": node.name,
                "sql": node.sql,
                "description": node.description,
                "node_type": node.type if node is output and pipe.kind != "pipe" else "standard",
            }
            for node in pipe.nodes
        ]
        self.send_json({"id": name, "name": name, "description": pipe.description, "type": pipe.kind, "nodes": nodes})


class PipeHandler(BaseHandler):
    """`GET|POST /v0/pipes/<name>.json|.csv|.ndjson`: call an endpoint."""

    async def get(self, name: str, fmt: str) -> None:
        await self._answer(name, fmt, self.query_params())

    async def post(self, name: str, fmt: str) -> None:
        params = self.query_params()
        if self.request.body and "json" in self.request.headers.get("Content-Type", ""):
            try:
                params.update({k: str(v) for k, v in json.loads(self.request.body).items()})
            except (ValueError, AttributeError):
                raise ParameterError("The body must be a JSON object of parameters") from None
        await self._answer(name, fmt, params)

    async def _answer(self, name: str, fmt: str, params: dict[str, str]) -> None:
        tenant, token = self.auth()
        tenant.project.endpoint(name)
        if not token.can_read_pipe(name):
            raise AuthError(f"Forbidden: this token has no READ scope on the pipe '{name}'")
        body = await self.service.run(tenant.workspace.query_endpoint, name, params, fmt)
        self.set_header("Content-Type", _FORMATS[fmt])
        self.finish(body)


class OpenApiHandler(BaseHandler):
    """`GET /v0/pipes/openapi.json`: the OpenAPI 3 document of the endpoints the token can read."""

    async def get(self) -> None:
        tenant, token = self.auth()
        columns = await self.service.run(self.service.endpoint_columns, tenant)
        readable = {n: p for n, p in tenant.project.endpoints.items() if token.can_read_pipe(n)}
        url = f"{self.request.protocol}://{self.request.host}"
        self.send_json(openapi.document(readable, columns, url))


class SqlHandler(BaseHandler):
    """`GET|POST /v0/sql?q=...`: a read-only query over datasources and endpoints."""

    async def get(self) -> None:
        await self._answer(self.get_query_argument("q", None))

    async def post(self) -> None:
        q = self.get_query_argument("q", None) or self.get_body_argument("q", None)
        if q is None and self.request.body:
            q = self.request.body.decode("utf-8", "replace")
        await self._answer(q)

    async def _answer(self, q: str | None) -> None:
        if not q or not q.strip():
            raise ParameterError("The 'q' parameter is required: /v0/sql?q=SELECT ...")
        tenant, token = self.auth()
        if not token.admin:
            try:
                tables = [table for _, table in tinybird_adapter.used_tables_with_database(q)]
            except Exception as e:
                raise ParameterError(f"[Error] {tinybird_adapter.format_sql_error(e)}") from None
            if not token.can_query(tables):
                raise AuthError("Forbidden: this token cannot read every resource of the query")
        params = {k: v for k, v in self.query_params().items() if k != "q"}
        body = await self.service.run(tenant.workspace.sql, q, params)
        self.finish(body)


class NotFoundHandler(BaseHandler):
    """Anything else: Tinybird's 404 shape."""

    def prepare(self) -> None:
        raise NotFoundError(f"Not found: {self.request.method} {redact(self.request.path)}")


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without token values."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    logging.getLogger("tornado.access").log(
        level, "%d %s %s %.1fms", status, request.method, redact(request.uri), 1000 * request.request_time()
    )


def make_app(service: Service) -> tornado.web.Application:
    """The tornado application serving `service`."""
    args = {"service": service}
    routes = [
        (r"/", IndexHandler, args),
        (r"/v0/health", HealthHandler, args),
        (r"/v0/events", EventsHandler, args),
        (r"/v0/datasources", DatasourcesHandler, args),
        (r"/v0/datasources/([^/]+)/truncate", TruncateHandler, args),
        (r"/v0/datasources/([^/]+)", DatasourceInfoHandler, args),
        (r"/v0/pipes/openapi\.json", OpenApiHandler, args),
        (r"/v0/pipes/([^/.]+)\.(json|csv|ndjson)", PipeHandler, args),
        (r"/v0/pipes/([^/.]+)", PipeInfoHandler, args),
        (r"/v0/sql", SqlHandler, args),
    ]
    if service.config.local_api:
        from . import local_api  # imports this module: loaded only when the Local API is wanted

        routes = local_api.routes(service) + routes
    return tornado.web.Application(
        routes, default_handler_class=NotFoundHandler, default_handler_args=args, log_function=_log_request
    )


def listen(service: Service, host: str, port: int) -> tornado.httpserver.HTTPServer:
    """Start listening; the body limit is the largest upload (each API checks its own limit)."""
    server = tornado.httpserver.HTTPServer(
        make_app(service), max_body_size=service.config.max_upload_bytes + 1024 * 1024, xheaders=True
    )
    server.listen(port, address=host)
    return server


def serve(config: ServerConfig, on_ready: Callable[[Service, int], None] | None = None) -> None:
    """Build the workspace, serve until SIGINT or SIGTERM, then shut down cleanly."""
    service = Service(config)
    try:
        asyncio.run(_serve(service, on_ready))
    finally:
        service.close()


async def _serve(service: Service, on_ready: Callable[[Service, int], None] | None) -> None:
    server = listen(service, service.config.host, service.config.port)
    port = next(iter(server._sockets.values())).getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if on_ready:
        on_ready(service, port)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
