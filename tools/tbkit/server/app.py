"""The application: one route table over the handler modules, and the loop that serves it.

Adding an endpoint means adding a handler in `views/` (Tinybird's public API) or `local/` (Tinybird
Local's API) and one line in `routes()`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web

from .base import NotFoundHandler, log_request
from .drain import DrainingHTTPServer
from .local import tokens as local_tokens
from .local import workspaces as local_workspaces
from .service import ServerConfig, Service
from .views import (
    connectors,
    datasources,
    deployments,
    endpoints,
    events,
    health,
    jobs,
    pipes,
    sql,
    tokens,
    variables,
    workspace,
)
from .views.checks import ChecksHandler
from .views.ui import ChecksPage, DatasourcesPage, EndpointsPage, StaticHandler

TEMPLATES = Path(__file__).parent / "templates"
log = logging.getLogger("tbkit.server")


def routes(local_api: bool) -> list[tuple[str, type]]:
    """Every path the server answers, first match wins; without `local_api`, Local API paths explain it is off.

    A target is a RequestHandler (made per request with the service), or an HTTPServerConnectionDelegate made once
    with the service (endpoint calls)."""
    public: list[tuple[str, type]] = [
        # endpoint calls, /v0/pipes/<name>.json|.csv|.ndjson (not openapi.json), first: the requests most often made;
        # an HTTP message delegate per call (endpoints.EndpointCalls), below tornado.web's handlers
        (endpoints.PATH.pattern, endpoints.EndpointCalls),
        # the web UI: page shells and their static files; the pages read everything through the API below
        (r"/", EndpointsPage),
        (r"/datasources", DatasourcesPage),
        (r"/checks", ChecksPage),
        (r"/-/static/(.+)", StaticHandler),
        (r"/v0/health", health.HealthHandler),
        # workspace
        (r"/v[01]/workspace", workspace.CurrentWorkspaceHandler),
        # events
        (r"/v0/events", events.EventsHandler),
        # datasources
        (r"/v0/datasources/?", datasources.DatasourcesHandler),
        (r"/v0/datasources/([^/]+)/truncate", datasources.TruncateHandler),
        (r"/(v[01])/datasources/([^/]+)/delete", datasources.DeleteHandler),
        (r"/v0/datasources/([^/]+)", datasources.DatasourceHandler),
        (r"/v1/datasources/([^/]+)/(append|replace)", datasources.ImportHandler),
        (r"/v0/analyze/?", datasources.AnalyzeHandler),
        (r"/v0/dependencies/?", datasources.DependenciesHandler),
        # pipes
        (r"/v0/pipes/?", pipes.PipesHandler),
        (r"/v0/pipes/openapi\.json", pipes.OpenApiHandler),
        (r"/v0/pipes/([^/.]+)/explain", pipes.ExplainHandler),
        (r"/v0/pipes/([^/.]+)", pipes.PipeHandler),
        (r"/v1/pipes/([^/.]+)\.pipe", pipes.PipeFileHandler),
        (r"/examples/query\.http", pipes.ExampleQueryHandler),
        # sql
        (r"/v0/sql", sql.SqlHandler),
        # tokens
        (r"/v0/tokens/?", tokens.TokensHandler),
        (r"/v0/tokens/([^/]+)/refresh", tokens.RefreshHandler),
        (r"/v0/tokens/([^/]+)", tokens.TokenHandler),
        # jobs
        (r"/v0/jobs/?", jobs.JobsHandler),
        (r"/v0/jobs/([^/]+)/cancel", jobs.JobCancelHandler),
        (r"/v0/jobs/([^/]+)/retry", jobs.JobRetryHandler),
        (r"/v0/jobs/([^/]+)", jobs.JobsHandler),
        # variables and connectors
        (r"/v0/variables/?", variables.VariablesHandler),
        (r"/v0/variables/([^/]+)", variables.VariableHandler),
        (r"/v0/connectors/?", connectors.ConnectorsHandler),
        (r"/v0/connectors/([^/]+?)(?:\.connection)?(/.*)?", connectors.ConnectorHandler),
        (r"/v[01]/integrations/(.+)", connectors.IntegrationsHandler),
        (r"/v0/datasources/([^/]+)/(sample|scheduling/.+)", connectors.ConnectedDatasourceHandler),
        # deployments
        (r"/v1/deploy", deployments.DeployHandler),
        (r"/v1/build", deployments.BuildHandler),
        (r"/v1/deployments", deployments.DeploymentsHandler),
        (r"/v1/deployments/([^/]+)", deployments.DeploymentHandler),
        (r"/v1/deployments/([^/]+)/set-live", deployments.SetLiveHandler),
        # the golden cases' state under `tbkit dev`
        (r"/v0/tbkit/checks", ChecksHandler),
    ]
    # Tinybird Local's own paths: its unauthenticated /tokens, and the user's workspaces.
    local: list[tuple[str, type]] = [
        (r"/tokens", local_tokens.TokensHandler),
        (r"/v[01]/user/workspaces/?", local_workspaces.UserWorkspacesHandler),
        (r"/v[01]/workspaces", local_workspaces.WorkspacesHandler),
        (r"/v[01]/workspaces/([^/]+)", local_workspaces.WorkspaceHandler),
    ]
    if not local_api:  # every Local API path says how to turn it on, and /tokens tells `tb` so too
        local = [(r"/tokens", local_tokens.LocalApiOffTokensHandler)]
        local += [(path, local_tokens.LocalApiOffHandler) for path in LOCAL_API_PATHS]
    return local + public


# Paths only Tinybird Local's API answers (`tb --local` calls them before anything else).
LOCAL_API_PATHS = (
    r"/v[01]/user/workspaces/?",
    r"/v[01]/workspaces(?:/.*)?",
)


def make_app(service: Service) -> tornado.web.Application:
    """The tornado application serving `service`."""
    args = {"service": service}
    rules = [
        (path, target(service))
        if issubclass(target, tornado.httputil.HTTPServerConnectionDelegate)
        else (path, target, args)
        for path, target in routes(service.config.serves_local_api)
    ]
    return tornado.web.Application(
        rules,
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=log_request,
        template_path=str(TEMPLATES),
    )


def listen(service: Service, host: str, port: int) -> tuple[DrainingHTTPServer, int]:
    """Start serving on host:port (0 picks a free port); the server and the port it is bound to.

    The body limit is the largest upload; each API checks its own, smaller limit.
    """
    server = DrainingHTTPServer(
        make_app(service),
        max_body_size=service.config.max_upload_bytes + 1024 * 1024,
        xheaders=True,
    )
    sockets = tornado.netutil.bind_sockets(port, address=host, family=socket.AF_UNSPEC)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def serve(
    config: ServerConfig,
    on_ready: Callable[[Service, int], None] | None = None,
    on_stop: Callable[[Service], None] | None = None,
) -> None:
    """Build the workspace, serve until SIGINT or SIGTERM, drain the requests in flight, then shut down
    (`on_stop` runs once the requests are drained, before the service closes)."""
    service = Service(config)
    try:
        asyncio.run(_serve(service, on_ready))
    finally:
        try:
            if on_stop:
                on_stop(service)
        finally:
            service.close()  # waits for the thread pool: an append a client gave up on still finishes


async def _serve(service: Service, on_ready: Callable[[Service, int], None] | None) -> None:
    """Serve until the first SIGINT or SIGTERM, then drain: stop listening, let the requests in flight finish
    (up to `shutdown_timeout` seconds; a second signal ends the wait), then close what is left."""
    server, port = listen(service, service.config.host, service.config.port)
    stop = asyncio.Event()
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("%s again: closing the connections left now", signal.Signals(signum).name)
            hurry.set()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    if on_ready:
        on_ready(service, port)
    await stop.wait()
    timeout = service.config.shutdown_timeout
    log.warning("shutting down: no new connections; waiting up to %g s for the requests in flight", timeout)
    server.stop()  # stop listening: new connections are refused from here on
    service.draining = True  # every answer from here on says `Connection: close`
    drained = await server.drain(timeout, lambda: service.in_flight == 0, hurry)
    log.warning(
        "shutdown: %d requests answered during the drain, %d connections closed idle, %d cut at the deadline, "
        "in %.2f s",
        drained.answered,
        drained.idle_closed,
        drained.cut,
        drained.seconds,
    )
