"""What one `tbkit bench` run measured, as typed figures, and its JSON file.

The JSON keys are those results have had since the first `tbkit bench`, so `tbkit bench --compare OLD NEW` reads a
result written by any version: the peer's figures stay under `duckdb` (the only peer there was), its name defaulting
to DuckDB when a result does not say. Every part but the in-process latencies may be missing from an older or
partial result, and is then left out of the comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import TbkitError

# endpoint -> series (`default`, `varied`, `fresh_default`) -> its figures
Latency = dict[str, dict[str, "Series"]]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of the dataclass `cls` (a newer result's extra keys are ignored)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def _present(**values: Any) -> dict[str, Any]:
    """The values that are not None, in the given order: a missing figure is left out of the JSON."""
    return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class Series:
    """One series of calls: how many, the p50/p95/p99 latency (ms), the median rows read, the server's overhead."""

    calls: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rows_read: int | None = None
    overhead_p50_ms: float | None = None  # HTTP: the median of each call's round trip minus the server's own time

    def to_dict(self) -> dict[str, Any]:
        return _present(**{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Series:
        return cls(**_known(cls, data))


def _latency_to_dict(latency: Latency) -> dict[str, Any]:
    return {endpoint: {name: s.to_dict() for name, s in by_series.items()} for endpoint, by_series in latency.items()}


def _latency_from_dict(data: dict[str, Any]) -> Latency:
    return {e: {name: Series.from_dict(s) for name, s in by_series.items()} for e, by_series in data.items()}


@dataclass(frozen=True)
class Machine:
    """The machine a run was on."""

    cpu: str = ""
    cores: int | None = None
    memory_gb: float | None = None
    python: str = ""
    chdb: str = ""
    tbkit: str = ""
    platform: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Append:
    """A bulk append of one datasource's file (or of all of them: `all`, without the stored/quarantined split)."""

    rows: int
    seconds: float
    rows_per_second: int
    successful_rows: int | None = None
    quarantined_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(
            rows=self.rows,
            successful_rows=self.successful_rows,
            quarantined_rows=self.quarantined_rows,
            seconds=self.seconds,
            rows_per_second=self.rows_per_second,
        )


@dataclass(frozen=True)
class Batches:
    """Rows appended through the Events API in batches: how many, how long, at what rate."""

    rows: int
    batches: int
    seconds: float
    rows_per_second: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Ingestion:
    """Bulk appends per datasource, the merge to the steady state, and the Events API in-process and over HTTP."""

    bulk: dict[str, Append] = field(default_factory=dict)
    merge_seconds: float | None = None
    events_api_in_process: Batches | None = None
    events_api_http: Batches | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(
            bulk={name: append.to_dict() for name, append in self.bulk.items()},
            merge_seconds=self.merge_seconds,
            events_api_in_process=self.events_api_in_process and self.events_api_in_process.to_dict(),
            events_api_http=self.events_api_http and self.events_api_http.to_dict(),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ingestion:
        batches = {key: Batches(**data[key]) for key in ("events_api_in_process", "events_api_http") if key in data}
        bulk = {name: Append(**figures) for name, figures in data.get("bulk", {}).items()}
        return cls(bulk, data.get("merge_seconds"), **batches)


@dataclass(frozen=True)
class Server:
    """`tbkit serve` on the loaded data: start-up time, the floor of an HTTP round trip, peak memory."""

    ready_seconds: float | None = None
    health_round_trip_ms: float | None = None
    peak_rss_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class PeerResult:
    """The project's peer on the same files: what it loaded, its series, whether its rows are ours, and the ratios
    of its p50 to ours (endpoint -> series -> `in_process` / `http`)."""

    version: str
    load: dict[str, dict[str, Any]]  # datasource -> rows kept and seconds
    engine_rows: dict[str, int]
    same_rows_loaded: bool
    latency: Latency
    mismatches: dict[str, list[str]]
    rows_match: bool
    ratios: dict[str, dict[str, dict[str, float]]]
    name: str | None = None  # results written before the peer was the project's do not say: DuckDB's

    @property
    def label(self) -> str:
        """The peer's name, for tables and comparisons."""
        return self.name or "DuckDB"

    def to_dict(self) -> dict[str, Any]:
        return {
            **_present(name=self.name),
            "version": self.version,
            "load": self.load,
            "engine_rows": self.engine_rows,
            "same_rows_loaded": self.same_rows_loaded,
            "latency": _latency_to_dict(self.latency),
            "mismatches": self.mismatches,
            "rows_match": self.rows_match,
            "ratio_duckdb_p50_to_ours": self.ratios,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeerResult:
        return cls(
            version=data["version"],
            load=data.get("load", {}),
            engine_rows=data.get("engine_rows", {}),
            same_rows_loaded=data.get("same_rows_loaded", False),
            latency=_latency_from_dict(data.get("latency", {})),
            mismatches=data.get("mismatches", {}),
            rows_match=data.get("rows_match", False),
            ratios=data.get("ratio_duckdb_p50_to_ours", {}),
            name=data.get("name"),
        )


@dataclass
class BenchResult:
    """Every figure of one run: the data, latencies in-process and over HTTP, ingestion, the server, the peer."""

    scale: str
    seed: int = 0
    command: str = ""
    machine: Machine | None = None
    data: dict[str, int] = field(default_factory=dict)  # rows generated per datasource
    embedded: Latency = field(default_factory=dict)  # in-process
    select_1_ms: float | None = None  # the engine's floor: a `SELECT 1`, p50
    ingestion: Ingestion | None = None
    http: Latency = field(default_factory=dict)
    server: Server | None = None
    peer: PeerResult | None = None

    @property
    def endpoints(self) -> list[str]:
        """The endpoints measured, in the run's order."""
        return list(self.embedded)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the result file, with the keys every version has written."""
        return _present(
            scale=self.scale,
            seed=self.seed,
            command=self.command,
            machine=self.machine and self.machine.to_dict(),
            data=self.data,
            embedded=_latency_to_dict(self.embedded),
            floor=None if self.select_1_ms is None else {"select_1_ms": self.select_1_ms},
            ingestion=self.ingestion and self.ingestion.to_dict(),
            http=_latency_to_dict(self.http) if self.http else None,
            server=self.server and self.server.to_dict(),
            duckdb=self.peer and self.peer.to_dict(),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """A result's JSON, from this version or an older one; KeyError or TypeError when it is not one."""
        return cls(
            scale=data.get("scale", "?"),
            seed=data.get("seed", 0),
            command=data.get("command", ""),
            machine=Machine(**_known(Machine, data["machine"])) if "machine" in data else None,
            data=data.get("data", {}),
            embedded=_latency_from_dict(data["embedded"]),
            select_1_ms=data.get("floor", {}).get("select_1_ms"),
            ingestion=Ingestion.from_dict(data["ingestion"]) if "ingestion" in data else None,
            http=_latency_from_dict(data.get("http", {})),
            server=Server(**_known(Server, data["server"])) if "server" in data else None,
            peer=PeerResult.from_dict(data["duckdb"]) if "duckdb" in data else None,
        )


def load_result(path: Path) -> BenchResult:
    """A result `tbkit bench --result` wrote (this version or an older one's `--out`); TbkitError naming the file
    when it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise TbkitError(f"{path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise TbkitError(f"{path}: not JSON ({e}); expected a result written by tbkit bench --result") from None
    if not isinstance(data, dict) or "embedded" not in data:
        raise TbkitError(f"{path}: not a tbkit bench result (no 'embedded' figures); expected one written by --result")
    try:
        return BenchResult.from_dict(data)
    except (KeyError, TypeError, AttributeError) as e:
        raise TbkitError(f"{path}: not a tbkit bench result ({type(e).__name__}: {e})") from None


def write_result(result: BenchResult, path: Path) -> None:
    """Write the result's JSON to `path` (its folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
