"""`tbkit serve`: Tinybird's HTTP API (and, with --local-api, Tinybird Local's) over the embedded engine.

- `app.py`: the route table (`routes()`: every path, endpoint calls included), the application and the serving loop.
- `service.py`: configuration and served state (engine, workspace registry, thread pool, request log, jobs).
- `base.py`: the one access check (`BaseHandler.require`) and the one error renderer.
- `views/`: Tinybird's public API, one module per resource (`endpoints.py`: endpoint calls, below tornado.web's
  handlers); `local/`: Tinybird Local's API.
- `workspaces/`: what the server keeps per workspace: registry, deployments, tokens, secrets, jobs.
- `bodies.py`: request bodies (gzip, CSV, uploads); `limits.py`, `drain.py`: request limits, draining shutdown.
- `requests.py`: endpoint calls recorded for `tinybird.pipe_stats_rt`; `analyze.py`, `openapi.py`: the Analyze
  API and the endpoints' OpenAPI document.
- `thread.py` and `process.py`: a server on a background thread, or as a child process.
"""

from .app import make_app, serve
from .service import ServerConfig, Service

__all__ = ["ServerConfig", "Service", "make_app", "serve"]
