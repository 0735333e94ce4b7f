"""The embedded engine: chDB in-process, and a project's tables in it.

- `instance.py`: `Engine`, one chDB instance over a data directory, which only runs SQL (errors, limits, disk room).
- `connections.py`: its connections, pooled by settings, on either chDB generation; `datadir.py`: the directory.
- `workspace.py`: `Workspace`, a project's tables in one database: built, replaced, emptied, dropped.
- `append.py`: appends with quarantine, in chunks, within the disk's room; `ingest.py`: their SQL.
- `ddl.py`: tables, quarantine tables and materialized views of a project.
- `parts.py`: a datasource's parts copied from one build to another.
- `seeding.py`: files appended to a persistent workspace (`tbkit seed`).

Reading a workspace (endpoints, the Query API) is the query layer's (`tbkit.query`), above this one.
"""

from .append import AppendResult
from .connections import MemoryLimits
from .instance import Engine
from .workspace import Condition, Workspace

__all__ = ["AppendResult", "Condition", "Engine", "MemoryLimits", "Workspace"]
