"""The web UI: `/` (endpoints), `/datasources` and `/checks`, with their stylesheet and script under `/-/static/`.

The server renders only the shell of each page (templates/), never data: the page's script (static/tbkit.js)
asks for a token once (or takes it from a `/?token=...` sign-in link), keeps it in the browser's session
storage, and reads everything through Tinybird's API with it, so without a valid token no data is shown and the
UI can do nothing the token could not do with curl. No build step: the script and stylesheet are served as
they are in the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import tornado.web

from ..base import BaseHandler
from ..service import Service

STATIC = Path(__file__).parent.parent / "static"
# What the pages may load: only this server's own script, stylesheet and API (no inline script, no CDN).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGES = {"endpoints": "Endpoints", "datasources": "Datasources", "checks": "Checks"}


def sign_in_link(host: str, port: int, token: str | None) -> str:
    """The web UI's address, with the token as a sign-in link (`/?token=...`, as Jupyter prints) when given.

    A wildcard host (0.0.0.0, ::) is reached on loopback; an IPv6 address is bracketed.
    """
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


class PageHandler(BaseHandler):
    """`GET /`, `/datasources`, `/checks`: the page's shell, the same for everyone (no token needed, no data)."""

    limited = False  # the shell costs no query, like /v0/health
    page = "endpoints"

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        # A sign-in link carries the token in its URL: keep it out of Referer headers and caches.
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.render(f"{self.page}.html", page=self.page, pages=PAGES, title=PAGES[self.page])


class StaticHandler(tornado.web.StaticFileHandler):
    """`GET /-/static/<file>`: the UI's stylesheet and script, from the package's static/ folder."""

    def initialize(self, service: Service) -> None:  # the route table hands every handler the service
        super().initialize(path=str(STATIC))

    def write_error(self, status_code: int, **kwargs) -> None:
        """Errors in the API's shape, `{"error": ...}`, as every other path answers them."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        reason = error.log_message if isinstance(error, tornado.web.HTTPError) and error.log_message else None
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": f"Not found: {self.request.path}" if status_code == 404 else reason}))

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")  # revalidated (ETag), so an upgrade is picked up at once


class EndpointsPage(PageHandler):
    """`GET /`: each endpoint with its description and parameters, a form to call it, the result and its SQL."""

    page = "endpoints"


class DatasourcesPage(PageHandler):
    """`GET /datasources`: each datasource's schema, row count, latest rows and quarantine rows."""

    page = "datasources"


class ChecksPage(PageHandler):
    """`GET /checks`: the last run of the golden cases under `tbkit dev`, refreshed when it reruns."""

    page = "checks"
