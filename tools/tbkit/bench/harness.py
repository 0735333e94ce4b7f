"""`tbkit bench`: ingestion and endpoint latency at a named scale, beside the project's peer on the same data.

One run generates (or reuses) deterministic data with the project's generator (its hook: `tbkit.datagen`), loads it
into a fresh embedded workspace, measures bulk appends and the Events API, calls every endpoint with default and
varied parameters in-process and over HTTP through `tbkit serve`, measures the server's start-up and peak memory,
and, when the project has a peer (another engine answering the same endpoints), times the same calls there and
checks both give the same rows. It writes a JSON result (`result.py`) and markdown tables (`report.py`).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import chdb
import requests

from .. import __version__
from ..checks import golden
from ..datagen import GeneratedData, LoadedWorkload, load, prepare, settle, workload_of
from ..engine import Engine, Workspace
from ..errors import TbkitError
from ..project.datafiles import Project, load_project
from ..query import Reader
from ..server.process import ServeProcess
from .report import markdown
from .result import Append, Batches, BenchResult, Ingestion, Latency, Machine, PeerResult, Series, Server, write_result

EVENTS_API_ROWS = 300_000
BATCH = 10_000


@dataclass
class BenchConfig:
    """What to measure: a named scale (or a number of rows), calls per series, which series also run over HTTP,
    and with what."""

    scale: str | None = "S"
    rows: int | None = None
    calls: int = 200
    http_series: str = "default"  # `default`: the default-parameter series over HTTP; `all`: the varied one too
    seed: int = 0
    work_dir: Path = Path(".tbkit/bench")
    project_dir: Path = Path("tinybird")
    peer: bool = True
    command: str = ""
    log: Callable[[str], object] = field(default=lambda message: None)

    @property
    def label(self) -> str:
        """The scale's name, or `custom-<rows>`."""
        return self.scale if self.scale else f"custom-{self.rows}"


# -- figures ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(seconds: list[float], rows_read: list[int] | None = None) -> Series:
    """p50, p95 and p99 in milliseconds, and the median rows read."""
    return Series(
        calls=len(seconds),
        p50_ms=round(percentile(seconds, 0.50) * 1000, 2),
        p95_ms=round(percentile(seconds, 0.95) * 1000, 2),
        p99_ms=round(percentile(seconds, 0.99) * 1000, 2),
        rows_read=int(statistics.median(rows_read)) if rows_read else None,
    )


def machine() -> Machine:
    """The machine the run is on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "")
    memory = next((line.split()[1] for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return Machine(
        cpu=cpu or platform.processor(),
        cores=os.cpu_count(),
        memory_gb=round(int(memory) / 1024 / 1024, 1),
        python=platform.python_version(),
        chdb=chdb.__version__,
        tbkit=__version__,
        platform=platform.platform(),
    )


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


# -- the run ------------------------------------------------------------------------------------------


def _event_batches(path: Path, limit: int) -> list[bytes]:
    """The first `limit` lines of a file, in 10k-row bodies."""
    batches, lines = [], []
    with path.open("rb") as handle:
        for count, line in enumerate(handle):
            if count >= limit:
                break
            lines.append(line)
            if len(lines) == BATCH:
                batches.append(b"".join(lines))
                lines = []
    if lines:
        batches.append(b"".join(lines))
    return batches


def _rows_per_second(send: Callable[[bytes], int], batches: list[bytes]) -> Batches:
    started = time.perf_counter()
    rows = sum(send(body) for body in batches)
    seconds = time.perf_counter() - started
    return Batches(rows=rows, batches=len(batches), seconds=round(seconds, 3), rows_per_second=round(rows / seconds))


def _series(
    call: Callable[[dict[str, str]], tuple[Any, int | None]], params: list[dict[str, str]]
) -> tuple[dict, list]:
    """Time `call` over `params` after a short warm-up; the summary and the answers."""
    for warm in params[: min(5, len(params))]:
        call(warm)
    seconds, rows_read, answers = [], [], []
    for p in params:
        started = time.perf_counter()
        answer, read = call(p)
        seconds.append(time.perf_counter() - started)
        answers.append(answer)
        if read is not None:
            rows_read.append(read)
    return summary(seconds, rows_read), answers


def _in_process(reader: Reader, endpoint: str) -> Callable[[dict[str, str]], tuple[Any, int]]:
    def call(params: dict[str, str]) -> tuple[Any, int]:
        response = reader.endpoint(endpoint, params)
        return response, response["statistics"]["rows_read"]

    return call


class _OverHttp:
    """Calls of one endpoint over one keep-alive connection with the standard library's client (`requests` spends
    about 0.85 ms of its own per call here, a /v0/health round trip: 1.37 ms with it, 0.52 ms without, which would
    be counted as the server's overhead). Each call's server overhead is its round trip minus the time the server
    says the call took inside it (`Server-Timing: engine;dur=`): kept per call in `overheads` (ms)."""

    def __init__(self, connection: http.client.HTTPConnection, token: str, endpoint: str):
        self.connection = connection
        self.headers = {"Authorization": f"Bearer {token}"}
        self.endpoint = endpoint
        self.overheads: list[float] = []

    def __call__(self, params: dict[str, str]) -> tuple[Any, int]:
        started = time.perf_counter()
        self.connection.request("GET", f"/v0/pipes/{self.endpoint}.json?{urlencode(params)}", headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        round_trip = time.perf_counter() - started
        if response.status != 200:
            raise TbkitError(
                f"{self.endpoint} answered {response.status} over HTTP: {data[:200].decode(errors='replace')}"
            )
        self.overheads.append(round_trip * 1000 - server_time_ms(response.getheader("Server-Timing", "")))
        body = json.loads(data)  # parsed once, as the in-process series parses its answer once
        return body, body["statistics"]["rows_read"]


def server_time_ms(header: str) -> float:
    """The `engine` duration (ms) of a `Server-Timing` header; 0.0 without one."""
    for metric in header.split(","):
        name, _, rest = metric.strip().partition(";")
        if name == "engine":
            for part in rest.split(";"):
                key, _, value = part.strip().partition("=")
                if key == "dur":
                    return float(value)
    return 0.0


def _http_series(connection: http.client.HTTPConnection, token: str, endpoint: str, params: list) -> Series:
    """An endpoint's HTTP series, with the median server overhead of its timed calls (warm-up calls left out)."""
    call = _OverHttp(connection, token, endpoint)
    figures = _series(call, params)[0]
    return replace(figures, overhead_p50_ms=round(statistics.median(call.overheads[-len(params) :]), 3))


def _floor_ms(call: Callable[[], object], calls: int = 300) -> float:
    """The p50 (ms) of a call that does nothing but reach the engine or the server: what every call pays."""
    return _series(lambda _: (call(), None), [{}] * calls)[0].p50_ms


def _compare(ours: dict[str, Any], theirs: list[dict[str, Any]], peer: str) -> list[str]:
    """Differences between our rows and the peer's, as data (money may differ by a rounding cent)."""
    types = {m["name"]: m["type"] for m in ours["meta"]}
    if len(ours["data"]) != len(theirs):
        return [f"rows: ours {len(ours['data'])}, {peer} {len(theirs)}"]
    problems = []
    for index, (mine, other) in enumerate(zip(ours["data"], theirs, strict=True)):
        for column, kind in types.items():
            a, b = mine.get(column), other.get(column)
            if "Float" in kind and a is not None and b is not None:
                same = abs(float(a) - float(b)) <= max(0.011, 1e-9 * abs(float(a)))
            else:
                same = golden.values_equal(a, b, kind)
            if not same:
                problems.append(f"row {index + 1} {column}: ours {a!r}, {peer} {b!r}")
    return problems


def _ratios(theirs: Latency, ours: BenchResult) -> dict[str, dict[str, dict[str, float]]]:
    """The peer's p50 over ours, per endpoint and series, in-process and (where it ran) over HTTP."""
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for endpoint, by_series in theirs.items():
        ratios[endpoint] = {}
        for series, figures in by_series.items():
            ratio = {"in_process": round(figures.p50_ms / ours.embedded[endpoint][series].p50_ms, 1)}
            if over_http := ours.http.get(endpoint, {}).get(series):
                ratio["http"] = round(figures.p50_ms / over_http.p50_ms, 1)
            ratios[endpoint][series] = ratio
    return ratios


class Bench:
    """One benchmark run."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.project: Project = load_project(config.project_dir)
        self.workload: LoadedWorkload = workload_of(config.project_dir, "tbkit bench")
        self.endpoints = self.workload.endpoints_of(self.project)
        self.result = BenchResult(config.label, config.seed, config.command)
        self.params: dict[str, dict[str, list[dict[str, str]]]] = {}
        self.answers: dict[str, dict[str, list[Any]]] = {}

    def run(self) -> BenchResult:
        """Measure everything."""
        config = self.config
        self.result.machine = machine()
        rows = self.workload.rows(config.scale) if config.scale else config.rows
        if not rows:
            raise TbkitError("tbkit bench: give a named scale or a number of rows")
        folder, data = prepare(self.workload, config.work_dir, config.label, rows, config.seed, config.log)
        self.result.data = {name: file.rows for name, file in data.files.items()}
        self._draw_parameters(data.size)
        # The Events API series append the start of the largest file: the one a project streams (its events).
        streamed = max(data.files, key=lambda name: data.files[name].rows)
        batches = _event_batches(folder / f"{streamed}.ndjson", EVENTS_API_ROWS)
        engine_dir = config.work_dir / f"engine-{config.label}"
        shutil.rmtree(engine_dir, ignore_errors=True)
        self._embedded(engine_dir, folder, data, streamed, batches)
        self._server(engine_dir, streamed, batches)
        if config.peer:
            self._peer(folder, data)
        return self.result

    def _draw_parameters(self, rows: int) -> None:
        draw = self.workload.parameters(rows, self.config.seed)
        calls = self.config.calls
        for endpoint in self.endpoints:
            self.params[endpoint] = {
                "default": [draw.default(endpoint) for _ in range(calls)],
                "varied": [draw.varied(endpoint) for _ in range(calls)],
            }

    def _embedded(self, engine_dir: Path, folder: Path, data: GeneratedData, streamed: str, batches: list) -> None:
        log = self.config.log
        engine = Engine.open(engine_dir)
        try:
            ws = Workspace(engine, "main", self.project)
            ws.build()
            reader = Reader(ws)
            log("bulk appends")
            ingestion = Ingestion(_bulk(load(ws, folder, data)))
            fresh = {}
            for endpoint in self.endpoints:
                fresh[endpoint], _ = _series(_in_process(reader, endpoint), self.params[endpoint]["default"][:50])
            log("merging parts (steady state)")
            started = time.perf_counter()
            settle(ws)
            ingestion.merge_seconds = round(time.perf_counter() - started, 2)
            for endpoint in self.endpoints:
                log(f"in-process series: {endpoint}")
                self.result.embedded[endpoint] = {"fresh_default": fresh[endpoint]}
                self.answers[endpoint] = {}
                for series in ("default", "varied"):
                    figures, answers = _series(_in_process(reader, endpoint), self.params[endpoint][series])
                    self.result.embedded[endpoint][series] = figures
                    self.answers[endpoint][series] = answers
            self.result.select_1_ms = _floor_ms(lambda: engine.execute("SELECT 1", "JSON", readonly=True))
            events = Workspace(engine, "bench_events_api", self.project)
            events.drop()
            events.build()
            ingestion.events_api_in_process = _rows_per_second(
                lambda body: events.append(streamed, body).successful_rows, batches
            )
            events.drop()
            self.result.ingestion = ingestion
        finally:
            engine.close()

    def _server(self, engine_dir: Path, streamed: str, batches: list) -> None:
        """Start `tbkit serve` on the loaded data directory: start-up time, HTTP series, Events API, memory."""
        log = self.config.log
        token = "bench-admin-token"
        started = time.perf_counter()
        process = ServeProcess(engine_dir, self.config.project_dir, token)
        url = process.url
        try:
            process.start(deadline=120)
            ready_seconds = round(time.perf_counter() - started, 3)
            session = requests.Session()
            connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=300)

            def health() -> None:
                connection.request("GET", "/v0/health")
                connection.getresponse().read()

            health_ms = _floor_ms(health)
            series_names = ("default", "varied") if self.config.http_series == "all" else ("default",)
            for endpoint in self.endpoints:
                log(f"HTTP series: {endpoint}")
                self.result.http[endpoint] = {
                    s: _http_series(connection, token, endpoint, self.params[endpoint][s]) for s in series_names
                }
            connection.close()

            def post(body: bytes) -> int:
                response = session.post(
                    f"{url}/v0/events?name={streamed}&wait=true",
                    data=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
                    timeout=300,
                )
                if response.status_code != 200:
                    raise TbkitError(f"the Events API answered {response.status_code}: {response.text[:200]}")
                return response.json()["successful_rows"]

            log("Events API over HTTP")
            assert self.result.ingestion is not None
            self.result.ingestion.events_api_http = _rows_per_second(post, batches)
            self.result.server = Server(ready_seconds, health_ms, _peak_rss_mb(process.process.pid))
        finally:
            process.stop()

    def _peer(self, folder: Path, data: GeneratedData) -> None:
        """The project's peer on the same files: loading, the same series, the same rows, and the latency ratios."""
        peer = self.workload.peer()
        if peer is None:
            return
        log = self.config.log
        try:
            log(f"{peer.name}: loading")
            loaded: dict[str, dict[str, Any]] = {}
            for name in data.files:
                started = time.perf_counter()
                rows = peer.load({name: folder / f"{name}.ndjson"})[name]
                loaded[name] = {"rows": rows, "seconds": round(time.perf_counter() - started, 3)}
            assert self.result.ingestion is not None
            engine_rows = {n: a.successful_rows or 0 for n, a in self.result.ingestion.bulk.items() if n != "all"}
            mismatches: dict[str, list[str]] = {}
            latency: Latency = {}
            for endpoint in self.endpoints:
                log(f"{peer.name} series: {endpoint}")
                latency[endpoint] = {}
                for series in ("default", "varied"):
                    params = self.params[endpoint][series]
                    latency[endpoint][series], answers = _series(lambda p, e=endpoint: (peer.query(e, p), None), params)
                    compared: set[str] = set()
                    for index in range(0, len(params), max(1, len(params) // 20)):
                        call = json.dumps(params[index], sort_keys=True)
                        if call in compared:
                            continue  # the same call again (an endpoint without required parameters: every default)
                        compared.add(call)
                        problems = _compare(self.answers[endpoint][series][index], answers[index], peer.name)
                        if problems:
                            mismatches.setdefault(endpoint, []).append(f"{series} {params[index]}: {problems[:3]}")
            self.result.peer = PeerResult(
                version=peer.version,
                load=loaded,
                engine_rows=engine_rows,
                same_rows_loaded=all(loaded[n]["rows"] == engine_rows[n] for n in engine_rows),
                latency=latency,
                mismatches=mismatches,
                rows_match=not mismatches,
                ratios=_ratios(latency, self.result),
                name=peer.name,
            )
        finally:
            peer.close()


def _bulk(loaded: dict[str, Any]) -> dict[str, Append]:
    """Each file's append and all of them together, as the result records them."""
    bulk = {
        name: Append(f.rows, round(f.seconds, 3), f.rows_per_second, f.successful_rows, f.quarantined_rows)
        for name, f in loaded.items()
    }
    rows, seconds = sum(f.rows for f in loaded.values()), sum(f.seconds for f in loaded.values())
    bulk["all"] = Append(rows, round(seconds, 3), round(rows / seconds))
    return bulk


def _peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in _lines(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def run(config: BenchConfig, result_path: Path | None = None, markdown_path: Path | None = None) -> BenchResult:
    """Run the benchmark and write the JSON result (and the markdown table when asked)."""
    result = Bench(config).run()
    write_result(result, result_path or config.work_dir / f"result-{config.label}.json")
    if markdown_path:
        markdown_path.write_text(markdown(result), encoding="utf-8")
    return result
