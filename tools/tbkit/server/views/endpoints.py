"""Endpoint calls, `GET|POST /v0/pipes/<name>.json|.csv|.ndjson`, answered below `tornado.web`'s handlers.

Endpoints are read far more often than anything else the server answers, so their route (`EndpointCalls`, one
line of `routes()` like every other) skips tornado's RequestHandler machinery (a handler object per request,
output transforms, header bookkeeping: about 0.2 ms a call on a 2-core machine, as much as the rest of the HTTP
layer): the route table hands the request to `EndpointCall`, an HTTP message delegate that checks the token, runs
the call and writes the answer.
Everything a client sees is what the other routes give: the same access check (`base.check_scope`), error
bodies (`base.error_answer`), concurrency limit, `Connection: close` while draining, access log, and each call
recorded for `tinybird.pipe_stats_rt` once its token may read an existing endpoint.

An answer carries `Server-Timing: engine;dur=<ms>`, the time the call took inside the server (rendering and the
query), so a client can tell the server's own overhead per call: its round trip minus that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

import tornado.httputil
import tornado.iostream
import tornado.web

from ...errors import ParameterError, TbkitError
from ..base import authenticate, bearer, check_scope, error_answer, log_access, redact, too_many_requests
from ..requests import EndpointRequest
from ..service import Service
from ..workspaces.registry import Tenant
from ..workspaces.tokens import READ, Token

log = logging.getLogger("tbkit.server")

# Output format of an endpoint call: its content type.
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
# /v0/pipes/openapi.json is the OpenAPI document (a route of the application), as in Tinybird
PATH = re.compile(r"/v0/pipes/(?!openapi\.json$)([^/.]+)\.(json|csv|ndjson)$")
SERVER = f"TornadoServer/{tornado.version}"  # what every other route says
_JSON_ROWS = re.compile(rb'"rows":\s*(\d+)')


def result_rows(body: bytes, fmt: str) -> int:
    """Rows in a response body: JSON says it at its end; CSV has a header line; NDJSON a line per row."""
    if fmt == "json":
        found = _JSON_ROWS.findall(body[-512:])
        return int(found[-1]) if found else 0
    lines = body.count(b"\n")
    return max(lines - 1, 0) if fmt == "csv" else lines


class EndpointCalls(tornado.httputil.HTTPServerConnectionDelegate):
    """The route of endpoint calls (`routes()` maps PATH to it): each request gets an `EndpointCall`, an HTTP message
    delegate, so tornado's RequestHandler machinery is skipped. Its state is the service's, and the `Date` header's
    value, formatted once a second."""

    def __init__(self, service: Service):
        self.service = service
        self._second = -1
        self._date = ""

    def start_request(self, server_conn: object, request_conn: Any) -> tornado.httputil.HTTPMessageDelegate:
        return EndpointCall(self, request_conn)

    def date(self) -> str:
        """The `Date` header's value now."""
        now = time.time()
        if int(now) != self._second:
            self._second, self._date = int(now), tornado.httputil.format_timestamp(now)
        return self._date


class EndpointCall(tornado.httputil.HTTPMessageDelegate):
    """One endpoint call: parameters from the query string (and a POST's JSON or form body, whose values win)."""

    def __init__(self, route: EndpointCalls, connection: Any):
        self.route = route
        self.service = route.service
        self.connection = connection
        self.name = self.fmt = ""
        self.chunks: list[bytes] = []
        self.counted = False
        self.recorded: tuple[Tenant, Token, dict[str, str]] | None = None
        self.read = (0, 0, 0)

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> None:
        self.started = time.perf_counter()
        self.method: str = start_line.method
        self.uri: str = start_line.path
        self.headers = headers
        found = PATH.match(self.uri.partition("?")[0])  # the route matched it: the pipe's name and the format
        self.name, self.fmt = (unquote(found[1]), found[2]) if found else ("", "json")
        # read now: with `xheaders`, tornado restores the connection's own protocol once the request is read
        self.protocol: str = getattr(self.connection.context, "protocol", "http")

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def on_connection_close(self) -> None:
        self.chunks = []

    def finish(self) -> None:
        """The request is read: answer it now when it is fast and alone, else from the thread pool."""
        try:
            call = self._prepare()
        except Exception as error:  # the request's boundary: every error is answered (error_answer), 500 logged
            self._fail(error)
            return
        tenant, params = call
        workspace = tenant.workspace
        if self.service.in_flight <= 1 and self.service.engine_times.fast(workspace.name, self.name):
            started = time.perf_counter()
            try:
                outcome: tuple[bytes, int, int] | Exception = tenant.reader.call_endpoint(self.name, params, self.fmt)
            except Exception as error:  # the request's boundary: answered as every route answers it
                outcome = error
            self._settle(workspace.name, started, outcome)
        else:
            self.task = asyncio.ensure_future(self._pooled(tenant, params))  # held: the loop keeps weak references

    def _prepare(self) -> tuple[Tenant, dict[str, str]]:
        """The workspace and parameters of the call, once the method, the concurrency limit and the token allow it."""
        if self.method not in ("GET", "POST"):
            raise tornado.web.HTTPError(405)
        refused = too_many_requests(self.service)
        if refused:
            raise refused
        self.service.in_flight += 1
        self.counted = True
        query = self.uri.partition("?")[2]
        params = dict(parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"))
        token_value = bearer(self.headers.get("Authorization", "")) or params.get("token")
        tenant, token = authenticate(self.service, token_value)
        check_scope(tenant, token, READ, (self.name,))
        assert tenant is not None  # READ on a resource admits workspace tokens only
        tenant.project.endpoint(self.name)
        params.pop("token", None)
        self.recorded = (tenant, token, params)
        if self.method == "POST":
            params.update(self._body_parameters())
        return tenant, params

    def _body_parameters(self) -> dict[str, str]:
        """A POST body's parameters: a JSON object, or a form (urlencoded or multipart). Long parameters that
        would not fit a URL go here."""
        body = b"".join(self.chunks)
        if not body:
            return {}
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            try:
                return {k: str(v) for k, v in json.loads(body).items()}
            except (ValueError, AttributeError):
                raise ParameterError("The body must be a JSON object of parameters") from None
        form: dict[str, list[bytes]] = {}
        tornado.httputil.parse_body_arguments(content_type, body, form, {}, self.headers)
        return {k: v[-1].decode("utf-8", "replace") for k, v in form.items() if k != "token"}

    async def _pooled(self, tenant: Tenant, params: dict[str, str]) -> None:
        workspace = tenant.workspace
        started = time.perf_counter()
        try:
            outcome: tuple[bytes, int, int] | Exception = await self.service.run(
                tenant.reader.call_endpoint, self.name, params, self.fmt
            )
        except Exception as error:  # the request's boundary: answered as every route answers it
            outcome = error
        self._settle(workspace.name, started, outcome)

    def _settle(self, workspace: str, started: float, outcome: tuple[bytes, int, int] | Exception) -> None:
        """Time the engine call, then answer it: its body, or its error."""
        seconds = time.perf_counter() - started
        self.service.engine_times.add(workspace, self.name, seconds)
        if isinstance(outcome, Exception):
            self._fail(outcome)
            return
        body, rows_read, bytes_read = outcome
        self.read = (rows_read, bytes_read, result_rows(body, self.fmt))
        self._write(200, {"Content-Type": FORMATS[self.fmt], "Server-Timing": f"engine;dur={seconds * 1000:.3f}"}, body)

    def _fail(self, error: BaseException) -> None:
        status, headers, body = error_answer(error)
        if not isinstance(error, TbkitError | tornado.web.HTTPError):  # expected ones are answered, not logged
            log.error("unexpected error on %s %s", self.method, redact(self.uri), exc_info=error)
        self._write(status, {"Content-Type": "application/json", **headers}, body)

    def _write(self, status: int, headers: dict[str, str], body: bytes) -> None:
        """Send the answer, then count the request done, log it and record it."""
        try:
            head = tornado.httputil.HTTPHeaders(
                headers,
                **{
                    "Access-Control-Allow-Origin": "*",
                    "Content-Length": str(len(body)),
                    "Date": self.route.date(),
                    "Server": SERVER,
                },
            )
            if self.service.draining:  # shutting down: the client must not send another request on this connection
                head["Connection"] = "close"
            reason = tornado.httputil.responses.get(status, "Unknown")
            start = tornado.httputil.ResponseStartLine("HTTP/1.1", status, reason)
            self.connection.write_headers(start, head, body if self.method != "HEAD" else None)
            self.connection.finish()
        except tornado.iostream.StreamClosedError:
            pass  # the client went away: nobody to answer
        finally:
            self._done(status)

    def _done(self, status: int) -> None:
        if self.counted:
            self.service.in_flight -= 1
            self.counted = False
        duration = time.perf_counter() - self.started
        log_access(status, self.method, self.uri, duration)
        if self.recorded is None:
            return
        tenant, token, params = self.recorded
        rows_read, bytes_read, rows = self.read
        request = EndpointRequest(
            pipe_id=tenant.resource_id(self.name),
            pipe_name=self.name,
            started=time.time() - duration,
            duration=duration,
            status_code=status,
            method=self.method,
            url=redact(f"{self.protocol}://{self.headers.get('Host') or '127.0.0.1'}{self.uri}"),
            token_name=token.name,
            parameters=params,
            read_rows=rows_read,
            read_bytes=bytes_read,
            result_rows=rows,
            user_agent=self.headers.get("User-Agent"),
        )
        self.service.requests.record(tenant.workspace.name, request, self.service.executor)
