"""`tbkit serve`: Tinybird's HTTP API (and, with --local-api, Tinybird Local's) over the embedded engine.

- `app.py`: the route table, the application and the serving loop.
- `service.py`: configuration and served state (engine, workspace registry, thread pool, jobs).
- `base.py`: the one access check (`BaseHandler.require`) and the one error renderer.
- `views/`: Tinybird's public API, one module per resource; `local/`: Tinybird Local's API.
- `bodies.py`: request bodies (gzip, CSV, uploads); `jobs.py`: the Jobs API's memory.
- `thread.py` and `process.py`: a server on a background thread, or as a child process.
"""

from .app import make_app, serve
from .service import ServerConfig, Service

__all__ = ["ServerConfig", "Service", "make_app", "serve"]
