"""The hook a project plugs its data generator into, for `tbkit datagen`, `tbkit bench` and `tbkit check --budgets`.

tbkit knows no project's data: a project names an object of its own in its configuration (`workload =
"module:attribute"` under `[tool.tbkit]` in pyproject.toml, or in a tbkit.yaml; see `tbkit.project.config`), and
that object implements `Workload`:

- `datasources`: the datasources the generator writes, one `<datasource>.ndjson` each, in the order to load them;
- `scales`: named sizes, e.g. `{"S": 10_000, "M": 100_000, "L": 1_000_000}`, in rows;
- `generate(out, rows, seed, workers)`: write the files into `out` (the same bytes for the same arguments) and
  return a `GeneratedData`: per file the rows written, how many the engine must quarantine, and the bytes;
- `parameters(rows, seed)`: deterministic request parameters for data of that size, `EndpointParameters`;
- optionally `endpoints`: the endpoints the benchmark times, in order (default: every endpoint of the project);
- optionally `peer()`: a `Peer`, another engine answering the same endpoints over the same files, or None.

A size is counted in rows, in the generator's own sense of a row: a generator of users, each with their sessions and
orders, may count users. `load_workload` imports the object and checks it fits before anything calls it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ParameterError, ProjectError, TbkitError
from ..project.config import Config, find_config
from ..project.datafiles import Project

HOW_TO_PLUG = (
    'set `workload = "module:attribute"` under [tool.tbkit] in pyproject.toml (or `workload:` in tbkit.yaml); '
    'see the README\'s "Plugging in a data generator"'
)


@dataclass(frozen=True)
class GeneratedFile:
    """One file a generator wrote: its rows (lines), those the engine must quarantine, and its size."""

    rows: int
    malformed: int = 0
    bytes: int = 0

    @property
    def valid(self) -> int:
        """Rows the engine should store."""
        return self.rows - self.malformed


@dataclass(frozen=True)
class GeneratedData:
    """What `Workload.generate` wrote: the size asked for (rows), the seed, each file in load order, and the
    generator's own details (JSON-ready: whatever it wants `tbkit datagen --json` to show)."""

    size: int
    seed: int
    files: dict[str, GeneratedFile]
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary, which `from_dict` reads back."""
        files = {
            name: {"rows": f.rows, "valid": f.valid, "malformed": f.malformed, "bytes": f.bytes}
            for name, f in self.files.items()
        }
        return {"size": self.size, "seed": self.seed, "seconds": self.seconds, "files": files, "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratedData:
        """The summary `to_dict` wrote; KeyError or TypeError when it is not one."""
        files = {name: GeneratedFile(f["rows"], f["malformed"], f["bytes"]) for name, f in data["files"].items()}
        return cls(data["size"], data["seed"], files, data.get("seconds", 0.0), data.get("details", {}))


class EndpointParameters(Protocol):
    """Request parameters for generated data: the same sequence for the same rows and seed."""

    def default(self, endpoint: str) -> dict[str, str]:
        """Parameters of a call with the endpoint's defaults (what a required parameter needs, e.g. an ID)."""
        ...

    def varied(self, endpoint: str) -> dict[str, str]:
        """Parameters that exercise the endpoint's filters, windows and limits, drawn at random."""
        ...


class Peer(Protocol):
    """Another engine answering the same endpoints over the same files, which `tbkit bench` times beside ours and
    whose rows it compares with ours."""

    name: str  # e.g. "DuckDB", for the tables
    version: str

    def load(self, files: Mapping[str, Path]) -> Mapping[str, int]:
        """Load these files (datasource -> path); the rows kept per datasource (the valid ones)."""
        ...

    def query(self, endpoint: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """The endpoint's rows for these parameters, as dicts, in the endpoint's order."""
        ...

    def close(self) -> None:
        """Release what the peer holds."""
        ...


class Workload(Protocol):
    """What a project's hook implements (see the module's docstring for the optional `endpoints` and `peer`)."""

    datasources: Sequence[str]
    scales: Mapping[str, int]

    def generate(self, out: Path, rows: int, seed: int, workers: int) -> GeneratedData:
        """Write `<datasource>.ndjson` for each datasource into `out`; the same arguments, the same bytes."""
        ...

    def parameters(self, rows: int, seed: int) -> EndpointParameters:
        """Request parameters for the data `generate(out, rows, ...)` writes."""
        ...


@dataclass(frozen=True)
class LoadedWorkload:
    """A project's workload, imported and checked: what tbkit calls (never the project's object directly)."""

    config: Config
    implementation: Workload
    datasources: tuple[str, ...]
    scales: dict[str, int]
    endpoints: tuple[str, ...] = ()  # () for every endpoint of the project

    @property
    def where(self) -> str:
        """`<file> [tool.tbkit] workload = 'module:attribute'`, for a message."""
        return _where(self.config)

    def rows(self, scale: str) -> int:
        """The size of a named scale; ParameterError naming the known ones."""
        if scale not in self.scales:
            raise ParameterError(f"unknown scale '{scale}': use one of {', '.join(self.scales)}")
        return self.scales[scale]

    def generate(self, out: Path, rows: int, seed: int = 0, workers: int = 1) -> GeneratedData:
        """Generate the data of `rows` rows into `out`, checking the report names the datasources in order."""
        Path(out).mkdir(parents=True, exist_ok=True)
        data = self.implementation.generate(Path(out), rows, seed, workers)
        if not isinstance(data, GeneratedData):
            raise ProjectError(f"{self.where}: generate() returned {type(data).__name__}, expected a GeneratedData")
        if list(data.files) != list(self.datasources):
            raise ProjectError(
                f"{self.where}: generate() reported the files {', '.join(data.files) or 'none'}, expected "
                f"{', '.join(self.datasources)} (its datasources, in order)"
            )
        return data

    def parameters(self, rows: int, seed: int) -> EndpointParameters:
        """Deterministic request parameters for data of `rows` rows."""
        return self.implementation.parameters(rows, seed)

    def peer(self) -> Peer | None:
        """The project's peer, or None when it has none."""
        make = getattr(self.implementation, "peer", None)
        return make() if make is not None else None

    def endpoints_of(self, project: Project) -> list[str]:
        """The endpoints to time: the workload's, else every endpoint of the project; an unknown one is an error."""
        if not self.endpoints:
            return sorted(project.endpoints)
        if unknown := [name for name in self.endpoints if name not in project.endpoints]:
            raise ProjectError(f"{self.where}: endpoints names {', '.join(unknown)}, not endpoints of the project")
        return list(self.endpoints)


def _where(config: Config) -> str:
    """`<file> [tool.tbkit] workload = 'module:attribute'`, for a message."""
    return f"{config.where('workload')} = {config.workload!r}"


def _problems(candidate: Any) -> list[str]:
    """How an object falls short of `Workload`, one phrase each (none when it fits)."""
    problems = [
        f"no {name}() method" for name in ("generate", "parameters") if not callable(getattr(candidate, name, None))
    ]
    datasources = getattr(candidate, "datasources", None)
    if isinstance(datasources, str) or not isinstance(datasources, Sequence) or not datasources:
        problems.append(f"datasources must be a non-empty list of datasource names, got {datasources!r}")
    scales = getattr(candidate, "scales", None)
    if not isinstance(scales, Mapping) or not all(
        isinstance(name, str) and isinstance(rows, int) and not isinstance(rows, bool) and rows > 0
        for name, rows in scales.items()
    ):
        problems.append(f"scales must map scale names to a positive number of rows, got {scales!r}")
    endpoints = getattr(candidate, "endpoints", None) or ()
    if (
        isinstance(endpoints, str)
        or not isinstance(endpoints, Sequence)
        or not all(isinstance(e, str) for e in endpoints)
    ):
        problems.append(f"endpoints must be a list of endpoint names, got {endpoints!r}")
    if getattr(candidate, "peer", None) is not None and not callable(candidate.peer):
        problems.append("peer must be a method returning a peer or None")
    return problems


def _import(config: Config) -> Any:
    """The object the configuration names, imported with its python-path folders first on sys.path.

    The folders stay there for the rest of the process: worker processes a generator starts (multiprocessing's
    "spawn") take the parent's sys.path to import it again.
    """
    assert config.workload is not None
    where = _where(config)
    for folder in reversed(config.python_path):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    module_name, attribute = config.workload.split(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as e:
        folders = ", ".join(str(f) for f in config.python_path) or "none"
        raise ProjectError(f"{where}: cannot import {module_name} ({e}; python-path folders: {folders})") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ProjectError(f"{where}: {module_name} has no attribute {attribute}")
        found = getattr(found, part)
    return found


def load_workload(config: Config, needed_by: str) -> LoadedWorkload:
    """The project's workload, imported and checked; TbkitError naming the hook when the project has none.

    `needed_by` names what needs it (`tbkit bench`) in that message.
    """
    if config.workload is None:
        unset = f" ({config.path} sets no workload)" if config.path else ""
        raise TbkitError(f"{needed_by} needs a data generator for this project{unset}: {HOW_TO_PLUG}")
    candidate = _import(config)
    if problems := _problems(candidate):
        raise ProjectError(f"{_where(config)}: the object does not fit tbkit's Workload: {'; '.join(problems)}")
    return LoadedWorkload(
        config,
        candidate,
        tuple(candidate.datasources),
        dict(candidate.scales),
        tuple(getattr(candidate, "endpoints", ()) or ()),
    )


def workload_of(project_dir: str | Path, needed_by: str) -> LoadedWorkload:
    """The workload the configuration of the project in `project_dir` names (see `load_workload`)."""
    return load_workload(find_config(project_dir), needed_by)
