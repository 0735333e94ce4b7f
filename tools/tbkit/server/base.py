"""What every handler shares: the one access check, request parameters, and the one error renderer.

Handlers raise `tbkit.errors` exceptions; `BaseHandler.write_error` turns them into Tinybird's
`{"error": ...}` bodies and statuses, in exactly one place. Handlers check tokens only through
`BaseHandler.require`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import tornado.httputil
import tornado.web

from ..errors import AuthError, NotFoundError, TbkitError, TooManyRequestsError
from .service import Service
from .workspaces.registry import Tenant
from .workspaces.tokens import ADMIN_SCOPE, USER, Token

log = logging.getLogger("tbkit.server")
_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s]+")
# What `GET /tokens` hands out when Tinybird Local's API is off, so that `tb --local` prints OFF_MESSAGE.
LOCAL_API_OFF = "local-api-off"
OFF_MESSAGE = (
    "Tinybird Local's API is off on this server (by default it is on only on a loopback address, because its "
    "/tokens needs no token). Restart it with `tbkit serve --local-api` to use `tb --local`, or call Tinybird's "
    "API with the admin token that `tbkit serve` printed."
)


def redact(uri: str) -> str:
    """A URI with any `token=` value replaced, for logs and errors."""
    return _TOKEN_IN_QUERY.sub(r"\1***", uri)


def forbidden(scope: str, resource: str | None, tenant: Tenant | None) -> AuthError:
    """The 403 for a token without `scope` on `resource`, naming both as Tinybird does."""
    if scope == USER:
        return AuthError("Invalid token: this route needs the Local API's user or admin token (GET /tokens)")
    if tenant is None:
        return AuthError("Forbidden: a user token names no workspace; use a workspace token (GET /tokens)")
    if scope == ADMIN_SCOPE or resource is None:
        return AuthError("Forbidden: this request needs the workspace's admin token")
    kind = "Data Source" if resource in tenant.project.datasources else "pipe"
    return AuthError(f"Forbidden: this token has no {scope} scope on the {kind} '{resource}'")


def bearer(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None without one)."""
    return (header[7:].strip() or None) if header[:7].lower() == "bearer " else None


def authenticate(service: Service, value: str | None) -> tuple[Tenant | None, Token]:
    """The workspace and token for a presented token value; AuthError for a missing or unknown one."""
    if value == LOCAL_API_OFF:
        raise AuthError(OFF_MESSAGE)
    return service.registry.authenticate(value)


def check_scope(
    tenant: Tenant | None, token: Token, scope: str | tuple[str, ...], resources: tuple[str, ...] = ()
) -> Tenant:
    """The server's one access check: `tenant`, once `token` holds `scope` (or one of several) on every resource.

    ADMIN and USER need no resource; READ or APPEND with no resource admit any token of a workspace. AuthError
    (403) for a token without the scope.
    """
    scopes = (scope,) if isinstance(scope, str) else scope
    if tenant is None and USER not in scopes:
        raise forbidden(scopes[0], None, None)
    checks: tuple[str | None, ...] = resources or ((None,) if scopes[0] in (ADMIN_SCOPE, USER) else ())
    for resource in checks:
        if not any(token.allows(s, resource) for s in scopes):
            raise forbidden(scopes[0], resource, tenant)
    return tenant  # type: ignore[return-value]  # None only for USER, whose handlers ignore it


def error_answer(error: BaseException | None) -> tuple[int, dict[str, str], bytes]:
    """The status, extra headers and `{"error": "..."}` body that answer an error, as Tinybird's API does."""
    headers: dict[str, str] = {}
    if isinstance(error, TbkitError):
        status, message = error.status, error.message
        if isinstance(error, TooManyRequestsError):
            headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, tornado.web.HTTPError):
        status = error.status_code
        message = error.log_message or tornado.httputil.responses.get(error.status_code, "Error")
    else:
        status, message = 500, "Internal server error"
    return status, headers, json.dumps({"error": message}).encode()


def too_many_requests(service: Service) -> TooManyRequestsError | None:
    """The 429 for a request arriving while the server is at its concurrency limit (None when below it)."""
    limit = service.config.max_concurrency
    if service.in_flight < limit:
        return None
    return TooManyRequestsError(
        f"Too many requests: the server is at its limit of {limit} concurrent requests; "
        "retry after the time in Retry-After",
        retry_after=1,
    )


class BaseHandler(tornado.web.RequestHandler):
    """Shared behaviour: the access check, JSON errors, parameters and the concurrency limit."""

    service: Service
    tenant: Tenant | None = None
    token: Token | None = None
    limited = True  # counted against --max-concurrency

    def initialize(self, service: Service) -> None:
        self.service = service
        self._counted = False

    def prepare(self) -> None:
        if not self.limited:
            return
        refused = too_many_requests(self.service)
        if refused:
            raise refused
        self.service.in_flight += 1
        self._counted = True

    def on_finish(self) -> None:
        if self._counted:
            self.service.in_flight -= 1
            self._counted = False

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Access-Control-Allow-Origin", "*")

    def flush(self, include_footers: bool = False) -> Any:
        if self.service.draining:  # shutting down: the client must not send another request on this connection
            self.set_header("Connection", "close")
        return super().flush(include_footers)

    # -- access ---------------------------------------------------------------------------------------

    def token_value(self) -> str | None:
        """The token sent with the request, as `Authorization: Bearer` or `?token=`."""
        return bearer(self.request.headers.get("Authorization", "")) or self.get_query_argument("token", None)

    def require(self, scope: str | tuple[str, ...], *resources: str) -> Tenant:
        """The request's workspace, once its token holds `scope` (or one of several) on every resource.

        `authenticate` then `check_scope`; the token is looked up once per request, kept in `self.tenant`, `self.token`.
        """
        if self.token is None:
            self.tenant, self.token = authenticate(self.service, self.token_value())
        return check_scope(self.tenant, self.token, scope, resources)

    # -- parameters and answers -----------------------------------------------------------------------

    def query_params(self, *drop: str) -> dict[str, str]:
        """Query parameters as single strings (the last value wins), `token` and `drop` removed."""
        params = {k: v[-1].decode("utf-8", "replace") for k, v in self.request.query_arguments.items()}
        for name in ("token", *drop):
            params.pop(name, None)
        return params

    def flag(self, name: str) -> bool:
        """A boolean query parameter (`true` or `1`)."""
        return self.get_query_argument(name, "false").lower() in ("true", "1")

    def send_json(self, content: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(content))

    # -- errors ---------------------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place errors become HTTP responses: `{"error": "..."}` with Tinybird's statuses."""
        status, headers, body = error_answer(kwargs.get("exc_info", (None, None, None))[1])
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, TbkitError):
            return  # expected: answered with its status, not logged as a failure
        if isinstance(value, tornado.web.HTTPError):
            return super().log_exception(typ, value, tb)
        log.error("unexpected error on %s %s", self.request.method, redact(self.request.uri), exc_info=(typ, value, tb))


class NotFoundHandler(BaseHandler):
    """Anything else: Tinybird's 404 shape."""

    limited = False

    def prepare(self) -> None:
        raise NotFoundError(f"Not found: {self.request.method} {redact(self.request.path)}")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without token values (nothing is formatted when the level is not logged)."""
    request = handler.request
    log_access(handler.get_status(), request.method or "", request.uri or "", request.request_time())


def log_access(status: int, method: str, uri: str, seconds: float) -> None:
    """One access-log line, at INFO (WARNING for 4xx, ERROR for 5xx), with token values redacted."""
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    logger = logging.getLogger("tornado.access")
    if logger.isEnabledFor(level):
        logger.log(level, "%d %s %s %.1fms", status, method, redact(uri), 1000 * seconds)
