"""`tbkit bench`: ingestion and endpoint latency at a named scale, beside DuckDB on the same data.

One run generates (or reuses) deterministic data, loads it into a fresh embedded workspace, measures bulk
appends and the Events API, calls every endpoint with default and varied parameters in-process and over
HTTP through `tbkit serve`, measures the server's start-up and peak memory, and computes the same six
endpoints in DuckDB in-process, checking both give the same rows. It writes a JSON result and a markdown table.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import chdb
import requests

from .. import __version__
from ..checks import golden
from ..engine import Engine
from ..errors import TbkitError
from ..project.datafiles import Project, load_project
from ..query import Reader
from ..server.process import ServeProcess
from . import datagen, workload
from .workload import ENDPOINTS, PER_CUSTOMER, Parameters

EVENTS_API_ROWS = 300_000
BATCH = 10_000


@dataclass
class BenchConfig:
    """What to measure: a named scale (or a number of customers), calls per series, where, and with what."""

    scale: str | None = "S"
    customers: int | None = None
    calls: int = 200
    target: str = "embedded"
    seed: int = 0
    work_dir: Path = Path(".tbkit/bench")
    project_dir: Path = Path("tinybird")
    peer: bool = True
    command: str = ""
    log: Callable[[str], object] = field(default=lambda message: None)

    @property
    def label(self) -> str:
        """`S`, `M`, `L`, or `custom-<N>`."""
        return self.scale if self.scale else f"custom-{self.customers}"


# -- figures ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(seconds: list[float], rows_read: list[int] | None = None) -> dict[str, Any]:
    """p50, p95 and p99 in milliseconds, and the median rows read."""
    figures = {
        "calls": len(seconds),
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 2),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 2),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 2),
    }
    if rows_read:
        figures["rows_read"] = int(statistics.median(rows_read))
    return figures


def machine() -> dict[str, Any]:
    """The machine the run is on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "")
    memory = next((line.split()[1] for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "chdb": chdb.__version__,
        "tbkit": __version__,
        "platform": platform.platform(),
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


# -- the run ------------------------------------------------------------------------------------------


def prepare_data(config: BenchConfig) -> tuple[Path, dict[str, Any]]:
    """Generate the data (or reuse it when its report matches) and return its folder and report."""
    return workload.prepare_data(config.work_dir, config.label, config.scale, config.customers, config.seed, config.log)


def _event_batches(folder: Path, limit: int) -> list[bytes]:
    """The first `limit` lines of the events file, in 10k-row bodies."""
    batches, lines = [], []
    with (folder / "customer_events.ndjson").open("rb") as handle:
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


def _rows_per_second(send: Callable[[bytes], int], batches: list[bytes]) -> dict[str, Any]:
    started = time.perf_counter()
    rows = sum(send(body) for body in batches)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "batches": len(batches),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
    }


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


def _http_series(connection: http.client.HTTPConnection, token: str, endpoint: str, params: list) -> dict[str, Any]:
    """An endpoint's HTTP series, with the median server overhead of its timed calls (warm-up calls left out)."""
    call = _OverHttp(connection, token, endpoint)
    figures = _series(call, params)[0]
    figures["overhead_p50_ms"] = round(statistics.median(call.overheads[-len(params) :]), 3)
    return figures


def _floor_ms(call: Callable[[], object], calls: int = 300) -> float:
    """The p50 (ms) of a call that does nothing but reach the engine or the server: what every call pays."""
    return _series(lambda _: (call(), None), [{}] * calls)[0]["p50_ms"]


def _compare(ours: dict[str, Any], theirs: list[dict[str, Any]]) -> list[str]:
    """Differences between our rows and DuckDB's, as data (money may differ by a rounding cent)."""
    types = {m["name"]: m["type"] for m in ours["meta"]}
    if len(ours["data"]) != len(theirs):
        return [f"rows: ours {len(ours['data'])}, DuckDB {len(theirs)}"]
    problems = []
    for index, (mine, other) in enumerate(zip(ours["data"], theirs, strict=True)):
        for column, kind in types.items():
            a, b = mine.get(column), other.get(column)
            if "Float" in kind and a is not None and b is not None:
                same = abs(float(a) - float(b)) <= max(0.011, 1e-9 * abs(float(a)))
            else:
                same = golden.values_equal(a, b, kind)
            if not same:
                problems.append(f"row {index + 1} {column}: ours {a!r}, DuckDB {b!r}")
    return problems


class Bench:
    """One benchmark run."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.project: Project = load_project(config.project_dir)
        self.result: dict[str, Any] = {"scale": config.label, "seed": config.seed, "command": config.command}
        self.params: dict[str, dict[str, list[dict[str, str]]]] = {}
        self.answers: dict[str, dict[str, list[Any]]] = {}

    def run(self) -> dict[str, Any]:
        """Measure everything; the result as a dict."""
        self.result["machine"] = machine()
        folder, report = prepare_data(self.config)
        self.result["data"] = {n: report["files"][n]["rows"] for n in datagen.DATASOURCES}
        self._draw_parameters(report["customers"])
        engine_dir = self.config.work_dir / f"engine-{self.config.label}"
        shutil.rmtree(engine_dir, ignore_errors=True)
        self._embedded(engine_dir, folder, report)
        self._server(engine_dir, folder)
        if self.config.peer:
            self._peer(folder)
        return self.result

    def _draw_parameters(self, customers: int) -> None:
        draw = Parameters(customers, self.config.seed)
        calls = self.config.calls
        for endpoint in ENDPOINTS:
            self.params[endpoint] = {
                "default": [draw.default(endpoint) for _ in range(calls)],
                "varied": [draw.varied(endpoint) for _ in range(calls)],
            }

    def _embedded(self, engine_dir: Path, folder: Path, report: dict[str, Any]) -> None:
        log = self.config.log
        engine = Engine.open(engine_dir)
        try:
            ws = engine.workspace("main", self.project)
            ws.build()
            reader = Reader(ws)
            log("bulk appends")
            ingestion = {"bulk": workload.load(ws, folder, report)}
            fresh = {}
            for endpoint in ENDPOINTS:
                fresh[endpoint], _ = _series(_in_process(reader, endpoint), self.params[endpoint]["default"][:50])
            log("merging parts (steady state)")
            started = time.perf_counter()
            workload.settle(ws)
            ingestion["merge_seconds"] = round(time.perf_counter() - started, 2)
            latency: dict[str, dict[str, Any]] = {}
            for endpoint in ENDPOINTS:
                log(f"in-process series: {endpoint}")
                latency[endpoint] = {"fresh_default": fresh[endpoint]}
                self.answers[endpoint] = {}
                for series in ("default", "varied"):
                    figures, answers = _series(_in_process(reader, endpoint), self.params[endpoint][series])
                    latency[endpoint][series] = figures
                    self.answers[endpoint][series] = answers
            self.result["embedded"] = latency
            self.result["floor"] = {"select_1_ms": _floor_ms(lambda: engine.execute("SELECT 1", "JSON", readonly=True))}
            events = engine.workspace("bench_events_api", self.project)
            events.drop()
            events.build()
            batches = _event_batches(folder, EVENTS_API_ROWS)
            ingestion["events_api_in_process"] = _rows_per_second(
                lambda body: events.append("customer_events", body).successful_rows, batches
            )
            events.drop()
            self.result["ingestion"] = ingestion
        finally:
            engine.close()

    def _server(self, engine_dir: Path, folder: Path) -> None:
        """Start `tbkit serve` on the loaded data directory: start-up time, HTTP series, Events API, memory."""
        log = self.config.log
        token = "bench-admin-token"
        started = time.perf_counter()
        process = ServeProcess(engine_dir, self.config.project_dir, token)
        url = process.url
        try:
            process.start(deadline=120)
            server: dict[str, Any] = {"ready_seconds": round(time.perf_counter() - started, 3)}
            session = requests.Session()
            connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=300)

            def health() -> None:
                connection.request("GET", "/v0/health")
                connection.getresponse().read()

            server["health_round_trip_ms"] = _floor_ms(health)
            series: dict[str, dict[str, Any]] = {}
            series_names = ("default", "varied") if self.config.target == "http" else ("default",)
            for endpoint in ENDPOINTS:
                log(f"HTTP series: {endpoint}")
                series[endpoint] = {
                    s: _http_series(connection, token, endpoint, self.params[endpoint][s]) for s in series_names
                }
            connection.close()
            self.result["http"] = series

            def post(body: bytes) -> int:
                response = session.post(
                    f"{url}/v0/events?name=customer_events&wait=true",
                    data=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
                    timeout=300,
                )
                if response.status_code != 200:
                    raise TbkitError(f"the Events API answered {response.status_code}: {response.text[:200]}")
                return response.json()["successful_rows"]

            log("Events API over HTTP")
            self.result["ingestion"]["events_api_http"] = _rows_per_second(
                post, _event_batches(folder, EVENTS_API_ROWS)
            )
            server["peak_rss_mb"] = _peak_rss_mb(process.process.pid)
            self.result["server"] = server
        finally:
            process.stop()

    def _peer(self, folder: Path) -> None:
        """DuckDB on the same files: loading, the same series, the same rows, and the latency ratios."""
        from .duckdb_peer import DuckDBPeer

        log = self.config.log
        peer = DuckDBPeer(threads=2)
        try:
            log("DuckDB: loading")
            files = {name: folder / f"{name}.ndjson" for name in datagen.DATASOURCES}
            loaded = peer.load(files)
            engine_rows = {n: self.result["ingestion"]["bulk"][n]["successful_rows"] for n in datagen.DATASOURCES}
            figures: dict[str, Any] = {"version": peer.version, "load": loaded, "engine_rows": engine_rows}
            figures["same_rows_loaded"] = all(loaded[n]["rows"] == engine_rows[n] for n in engine_rows)
            mismatches: dict[str, list[str]] = {}
            latency: dict[str, dict[str, Any]] = {}
            for endpoint in ENDPOINTS:
                log(f"DuckDB series: {endpoint}")
                latency[endpoint] = {}
                for series in ("default", "varied"):
                    params = self.params[endpoint][series]
                    latency[endpoint][series], answers = _series(lambda p, e=endpoint: (peer.query(e, p), None), params)
                    checked = range(0, len(params), max(1, len(params) // 20))
                    for index in checked:
                        if series == "default" and endpoint not in PER_CUSTOMER and index:
                            continue  # defaults of a global endpoint are all the same call
                        problems = _compare(self.answers[endpoint][series][index], answers[index])
                        if problems:
                            mismatches.setdefault(endpoint, []).append(f"{series} {params[index]}: {problems[:3]}")
            figures["latency"] = latency
            figures["mismatches"] = mismatches
            figures["rows_match"] = not mismatches
            figures["ratio_duckdb_p50_to_ours"] = {
                endpoint: {
                    series: {
                        "in_process": round(
                            latency[endpoint][series]["p50_ms"] / self.result["embedded"][endpoint][series]["p50_ms"], 1
                        ),
                        **(
                            {
                                "http": round(
                                    latency[endpoint][series]["p50_ms"]
                                    / self.result["http"][endpoint][series]["p50_ms"],
                                    1,
                                )
                            }
                            if series in self.result.get("http", {}).get(endpoint, {})
                            else {}
                        ),
                    }
                    for series in ("default", "varied")
                }
                for endpoint in ENDPOINTS
            }
            self.result["duckdb"] = figures
        finally:
            peer.close()


def _peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in _lines(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def markdown(result: dict[str, Any]) -> str:
    """The result as markdown tables."""
    lines = [f"### Scale {result['scale']}: " + ", ".join(f"{n} {r:,}" for n, r in result["data"].items()), ""]
    lines += [
        "| Endpoint | Series | In-process p50 / p95 / p99 (ms) | HTTP p50 / p95 / p99 (ms) | Rows read | "
        "DuckDB p50 (ms) | DuckDB ÷ ours (in-process / HTTP) | Server overhead p50 (ms) |",
        "|---|---|---|---|---:|---:|---|---:|",
    ]
    for endpoint in ENDPOINTS:
        for series in ("default", "varied"):
            ours = result["embedded"][endpoint][series]
            over_http = result.get("http", {}).get(endpoint, {}).get(series)
            duck = result.get("duckdb", {}).get("latency", {}).get(endpoint, {}).get(series)
            ratio = result.get("duckdb", {}).get("ratio_duckdb_p50_to_ours", {}).get(endpoint, {}).get(series, {})
            lines.append(
                f"| {endpoint} | {series} | {_triple(ours)} | {_triple(over_http) if over_http else '-'} | "
                f"{ours.get('rows_read', 0):,} | {duck['p50_ms'] if duck else '-'} | "
                f"{ratio.get('in_process', '-')}× / {ratio.get('http', '-')}× | "
                f"{overhead if (overhead := overhead_ms(result, endpoint, series)) is not None else '-'} |"
            )
    ingestion = result["ingestion"]
    lines += ["", "| Ingestion | Rows | Seconds | Rows/s |", "|---|---:|---:|---:|"]
    for name, figures in ingestion["bulk"].items():
        lines.append(
            f"| bulk append: {name} | {figures['rows']:,} | {figures['seconds']} | {figures['rows_per_second']:,} |"
        )
    for key in ("events_api_in_process", "events_api_http"):
        if key in ingestion:
            f = ingestion[key]
            lines.append(
                f"| Events API, 10k-row batches ({key.split('_')[-1].replace('process', 'in-process')}) | "
                f"{f['rows']:,} | {f['seconds']} | {f['rows_per_second']:,} |"
            )
    server = result.get("server", {})
    lines += [
        "",
        f"`tbkit serve` ready in {server.get('ready_seconds')} s on the existing data directory; "
        f"peak resident memory {server.get('peak_rss_mb')} MB.",
    ]
    floors = []
    if "select_1_ms" in result.get("floor", {}):
        floors.append(f"`SELECT 1` in the embedded engine {result['floor']['select_1_ms']} ms")
    if "health_round_trip_ms" in server:
        floors.append(f"a `/v0/health` round trip {server['health_round_trip_ms']} ms")
    if floors:
        lines.append("Floors of this machine during the run (p50): " + "; ".join(floors) + ".")
    if "duckdb" in result:
        duck = result["duckdb"]
        lines.append(
            f"DuckDB {duck['version']}: same rows loaded {duck['same_rows_loaded']}, "
            f"same endpoint rows {duck['rows_match']}."
        )
    return "\n".join(lines) + "\n"


def overhead_ms(result: dict[str, Any], endpoint: str, series: str) -> float | None:
    """What the server adds to a call: the median of each call's round trip minus the server's own time for it
    (`Server-Timing`); for results without it, HTTP p50 minus in-process p50 of the same run (None without HTTP)."""
    over_http = result.get("http", {}).get(endpoint, {}).get(series)
    if over_http and "overhead_p50_ms" in over_http:
        return over_http["overhead_p50_ms"]
    ours = result.get("embedded", {}).get(endpoint, {}).get(series)
    return round(over_http["p50_ms"] - ours["p50_ms"], 2) if over_http and ours else None


def _figures(result: dict[str, Any]) -> dict[str, float]:
    """Every comparable figure of a result by label: latencies (ms, lower is better) and rates (higher is)."""
    figures: dict[str, float] = {}
    for endpoint in ENDPOINTS:
        for series in ("default", "varied"):
            where = f"{endpoint} {series}"
            for side, key in (("in-process", "embedded"), ("HTTP", "http")):
                found = result.get(key, {}).get(endpoint, {}).get(series)
                for q in ("p50", "p95", "p99"):
                    if found:
                        figures[f"{where}: {side} {q} (ms)"] = found[f"{q}_ms"]
            overhead = overhead_ms(result, endpoint, series)
            if overhead is not None:
                figures[f"{where}: server overhead p50 (ms)"] = overhead
            ratio = result.get("duckdb", {}).get("ratio_duckdb_p50_to_ours", {}).get(endpoint, {}).get(series, {})
            for side in ("in_process", "http"):
                if isinstance(ratio.get(side), int | float):
                    figures[f"{where}: DuckDB ÷ ours, {side.replace('_', '-')} (×)"] = ratio[side]
    for name, found in result.get("ingestion", {}).get("bulk", {}).items():
        figures[f"bulk append {name} (rows/s)"] = found["rows_per_second"]
    for key in ("events_api_in_process", "events_api_http"):
        if key in result.get("ingestion", {}):
            figures[f"{key.replace('_', ' ')} (rows/s)"] = result["ingestion"][key]["rows_per_second"]
    server = result.get("server", {})
    floors = (("health_round_trip_ms", "HTTP floor: /v0/health round trip p50 (ms)"),)
    for key, label in floors + (("ready_seconds", "serve ready (s)"), ("peak_rss_mb", "serve peak memory (MB)")):
        if isinstance(server.get(key), int | float):
            figures[label] = server[key]
    if "select_1_ms" in result.get("floor", {}):
        figures["engine floor: SELECT 1 p50 (ms)"] = result["floor"]["select_1_ms"]
    return figures


def load_result(path: Path) -> dict[str, Any]:
    """A result `tbkit bench --out` wrote; TbkitError naming the file when it is not one."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise TbkitError(f"{path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise TbkitError(f"{path}: not JSON ({e}); expected a result written by tbkit bench --out") from None
    if not isinstance(result, dict) or "embedded" not in result:
        raise TbkitError(f"{path}: not a tbkit bench result (no 'embedded' figures); expected one written by --out")
    return result


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A markdown table of every figure two results share: old, new, and new ÷ old.

    For times a ratio under 1 is an improvement; for rates (rows/s, DuckDB ÷ ours) one over 1 is. A server overhead
    can come out negative in a noisy run (HTTP faster than in-process): it then has no ratio.
    """
    before, after = _figures(old), _figures(new)
    lines = [
        f"Old: {old.get('command') or '?'} (scale {old.get('scale', '?')}); "
        f"new: {new.get('command') or '?'} (scale {new.get('scale', '?')})",
        "",
        "| Figure | Old | New | New ÷ old |",
        "|---|---:|---:|---:|",
    ]
    for label, value in before.items():
        if label not in after:
            continue
        ratio = f"{after[label] / value:.2f}×" if value > 0 and after[label] >= 0 else "-"  # no ratio of a negative
        lines.append(f"| {label} | {value:,} | {after[label]:,} | {ratio} |")
    missing = sorted(set(before) ^ set(after))
    if missing:
        lines += ["", "In one result only: " + ", ".join(missing)]
    return "\n".join(lines) + "\n"


def _triple(figures: dict[str, Any]) -> str:
    return f"{figures['p50_ms']} / {figures['p95_ms']} / {figures['p99_ms']}"


def run(config: BenchConfig, out: Path | None = None, markdown_path: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and write the JSON result (and the markdown table when asked)."""
    result = Bench(config).run()
    out = out or config.work_dir / f"result-{config.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if markdown_path:
        markdown_path.write_text(markdown(result))
    return result
