"""Generated data: the project's generator behind a hook, its data cached, loaded into a workspace and merged.

- `hooks.py`: the `Workload` protocol a project implements, `GeneratedData` (what its generator reports) and
  `load_workload`, which imports the object the project's configuration names and checks it.
- `cache.py`: the data of a size and seed kept in `<work_dir>/data-<label>-seed<seed>` and reused.
- `load.py`: the files appended into a workspace, checked against the generator's report, and merged.
"""

from .cache import prepare
from .hooks import (
    EndpointParameters,
    GeneratedData,
    GeneratedFile,
    LoadedWorkload,
    Peer,
    Workload,
    load_workload,
    workload_of,
)
from .load import FileLoad, load, settle

__all__ = [
    "EndpointParameters",
    "FileLoad",
    "GeneratedData",
    "GeneratedFile",
    "LoadedWorkload",
    "Peer",
    "Workload",
    "load",
    "load_workload",
    "prepare",
    "settle",
    "workload_of",
]
