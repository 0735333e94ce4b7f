"""Reading a workspace as Tinybird answers it: endpoint calls and the Query API, above the engine.

- `reader.py`: `Reader`, what a workspace answers (an endpoint's body, columns and SQL; a Query API query).
- `pipes.py`: an endpoint request rendered into one SELECT (Tinybird's template engine and table rewriter).
- `skeletons.py`: table rewrites cached by query shape.
- `policy.py`: the Query API's policy: what a query may read, and conditions of deletes and replaces.
- `service_datasources.py`: `tinybird.pipe_stats_rt` and `tinybird.pipe_stats`.
"""

from .reader import Reader

__all__ = ["Reader"]
