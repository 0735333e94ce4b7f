"""Cost budgets: the rows and bytes each endpoint call reads, at a named data scale, held to a ceiling.

Golden files catch a changed answer, not a changed cost: an endpoint that scans a raw table instead of its
materialized target gives the same rows for many times the reads. `fixtures/budgets.yaml` gives each endpoint a
`max_rows_read` (and optionally `max_bytes_read`) per scale; `tbkit check --budgets --scale S` generates the
data of that scale with the project's data generator (its hook, `tbkit.datagen`; cached, as `tbkit bench` caches
it), appends it into a fresh embedded workspace, merges it to the steady state, calls every endpoint with its cases'
parameters and a series of default and varied ones the generator draws, and reads what each call read from
ClickHouse's statistics. A call over its budget fails, named with its parameters and figures.

The budgets are the reviewed ceilings; `fixtures/budgets-baseline.json` holds the figures last measured (the
largest of each endpoint's calls at each scale), written by `--baseline`. A later run fails when an endpoint
reads more than the baseline plus `threshold_percent` (25 by default), however far that is under its budget.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..datagen import LoadedWorkload, load_workload, prepare, settle
from ..datagen import load as load_data
from ..engine import Engine, Workspace
from ..errors import ProjectError, TbkitError
from ..project.config import find_config
from ..project.datafiles import Project
from ..project.layout import Layout
from ..query import Reader
from .golden import Case

FILE_NAME = "budgets.yaml"  # in the fixtures folder
BASELINE_NAME = "budgets-baseline.json"
DEFAULT_THRESHOLD = 25.0
DEFAULT_CALLS = 20
WORK_DIR = Path(".tbkit/bench")  # shared with `tbkit bench`, so either reuses the other's generated data
WRITTEN_BY = "tbkit check --budgets --scale <scale> --baseline, one scale per run"


@dataclass(frozen=True)
class Budget:
    """The most one call may read."""

    max_rows_read: int
    max_bytes_read: int | None = None


@dataclass
class BudgetFile:
    """`fixtures/budgets.yaml`: the threshold, the calls per series, extra named scales and the budgets."""

    path: Path
    threshold_percent: float = DEFAULT_THRESHOLD
    calls: int = DEFAULT_CALLS
    generator_scales: dict[str, int] = field(default_factory=dict)  # the generator's named scales: rows
    scales: dict[str, int] = field(default_factory=dict)  # the file's own named scales: rows
    budgets: dict[str, dict[str, Budget]] = field(default_factory=dict)  # endpoint -> scale -> budget

    def scale_names(self) -> list[str]:
        """Every scale a budget can be measured at: the generator's (e.g. S, M, L) and the file's own."""
        return [*self.generator_scales, *self.scales]

    def rows(self, scale: str) -> int:
        """The size of a scale, in the generator's rows; an unknown one names the known ones."""
        if scale not in (known := {**self.generator_scales, **self.scales}):
            raise ProjectError(f"unknown scale '{scale}': use one of {', '.join(self.scale_names())}")
        return known[scale]


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProjectError(f"{where}: expected a positive integer, got {value!r}")
    return value


def load(path: Path, generator_scales: Mapping[str, int]) -> BudgetFile:
    """Read and validate a budgets file, beside the named scales of the project's generator; every mistake names the
    file, the entry and what was expected."""
    if not path.is_file():
        raise ProjectError(f"no budgets file {path}: --budgets needs one (see the README's Cost budgets)")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ProjectError(f"invalid YAML: {e}", path=str(path), line=line + 1 if line is not None else None) from None
    if not isinstance(content, dict):
        raise ProjectError(f"{path}: expected a mapping with 'endpoints' (and optional 'threshold_percent')")
    known = {"threshold_percent", "calls", "scales", "endpoints"}
    if unknown := sorted(set(content) - known):
        raise ProjectError(f"{path}: unknown key {', '.join(unknown)} (expected {', '.join(sorted(known))})")
    threshold = content.get("threshold_percent", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
        raise ProjectError(f"{path}: threshold_percent: expected a number of percent >= 0, got {threshold!r}")
    calls = _positive_int(content.get("calls", DEFAULT_CALLS), f"{path}: calls")
    result = BudgetFile(path, float(threshold), calls, dict(generator_scales))
    for name, scale in (content.get("scales") or {}).items():
        if not isinstance(scale, dict) or set(scale) != {"rows"}:
            raise ProjectError(
                f"{path}: scales: {name}: expected {{rows: N}} (a size in rows, the unit of the project's data "
                f"generator, as --rows takes it), got {scale!r}"
            )
        if str(name) in generator_scales:
            raise ProjectError(f"{path}: scales: {name} is a scale of the project's generator; choose another name")
        result.scales[str(name)] = _positive_int(scale["rows"], f"{path}: scales: {name}: rows")
    endpoints = content.get("endpoints") or {}
    if not isinstance(endpoints, dict):
        raise ProjectError(f"{path}: endpoints: expected a mapping of endpoint names to scales")
    for endpoint, by_scale in endpoints.items():
        where = f"{path}: endpoints: {endpoint}"
        if not isinstance(by_scale, dict):
            raise ProjectError(f"{where}: expected a mapping of scales to {{max_rows_read: N}}")
        result.budgets[str(endpoint)] = {}
        for scale, budget in by_scale.items():
            if str(scale) not in result.scale_names():
                raise ProjectError(f"{where}: unknown scale {scale} (scales: {', '.join(result.scale_names())})")
            if not isinstance(budget, dict) or "max_rows_read" not in budget:
                raise ProjectError(f"{where}: {scale}: expected {{max_rows_read: N, max_bytes_read: N (optional)}}")
            if extra := sorted(set(budget) - {"max_rows_read", "max_bytes_read"}):
                raise ProjectError(f"{where}: {scale}: unknown key {', '.join(extra)}")
            max_bytes = budget.get("max_bytes_read")
            result.budgets[str(endpoint)][str(scale)] = Budget(
                _positive_int(budget["max_rows_read"], f"{where}: {scale}: max_rows_read"),
                None if max_bytes is None else _positive_int(max_bytes, f"{where}: {scale}: max_bytes_read"),
            )
    return result


def load_baseline(path: Path) -> dict[str, dict[str, dict[str, int]]]:
    """`fixtures/budgets-baseline.json`: scale -> endpoint -> figures (none when the file does not exist)."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ProjectError(f"invalid JSON: {e.msg}", path=str(path), line=e.lineno) from None
    if not isinstance(content, dict) or not isinstance(content.get("scales", {}), dict):
        raise ProjectError(f'{path}: expected {{"scales": {{scale: {{endpoint: figures}}}}}}')
    return content.get("scales", {})


@dataclass
class Call:
    """One endpoint call and what it read."""

    series: str  # `case <name>`, `default` or `varied`
    params: dict[str, str]
    rows_read: int
    bytes_read: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "params": self.params,
            "rows_read": self.rows_read,
            "bytes_read": self.bytes_read,
        }

    def describe(self) -> str:
        """`varied {"id": "x"}`, for a message."""
        return f"{self.series} {json.dumps(self.params, sort_keys=True)}"


@dataclass
class EndpointBudget:
    """One endpoint's calls at a scale, its budget and baseline, and what went over them."""

    endpoint: str
    calls: list[Call]
    budget: Budget | None
    baseline: dict[str, int] | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def max_rows(self) -> Call:
        """The call that read the most rows."""
        return max(self.calls, key=lambda c: c.rows_read)

    @property
    def max_bytes(self) -> Call:
        """The call that read the most bytes."""
        return max(self.calls, key=lambda c: c.bytes_read)

    def figures(self) -> dict[str, int]:
        """What the baseline records: the calls, and the most rows and bytes one call read."""
        return {
            "calls": len(self.calls),
            "max_rows_read": self.max_rows.rows_read,
            "max_bytes_read": self.max_bytes.bytes_read,
        }

    def summary(self) -> str:
        """`top_pages: 41 calls, at most 1,024 rows (budget 2,048) and 40,960 bytes (budget 81,920)`."""
        rows, size = self.max_rows.rows_read, self.max_bytes.bytes_read
        rows_budget = f" (budget {self.budget.max_rows_read:,})" if self.budget else " (no budget)"
        bytes_budget = f" (budget {self.budget.max_bytes_read:,})" if self.budget and self.budget.max_bytes_read else ""
        return (
            f"{self.endpoint}: {len(self.calls)} calls, at most {rows:,} rows read{rows_budget} "
            f"and {size:,} bytes{bytes_budget}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "ok": self.ok,
            **self.figures(),
            "budget": None if self.budget is None else vars(self.budget),
            "baseline": self.baseline,
            "max_rows_call": self.max_rows.to_dict(),
            "max_bytes_call": self.max_bytes.to_dict(),
            "problems": self.problems,
        }


@dataclass
class BudgetReport:
    """Every endpoint's reads at one scale, judged against the budgets file and the baseline."""

    scale: str
    threshold_percent: float
    endpoints: list[EndpointBudget] = field(default_factory=list)
    data: dict[str, int] = field(default_factory=dict)  # rows stored per datasource
    baseline_written: Path | None = None

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.endpoints)

    def failures(self) -> list[EndpointBudget]:
        """The endpoints over a budget or over the baseline."""
        return [e for e in self.endpoints if not e.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "ok": self.ok,
            "threshold_percent": self.threshold_percent,
            "data": self.data,
            "baseline_written": None if self.baseline_written is None else str(self.baseline_written),
            "endpoints": [e.to_dict() for e in self.endpoints],
        }


def judge(result: EndpointBudget, scale: str, threshold: float) -> None:
    """Fill `result.problems`: every call over the budget, and the largest reads over the baseline + threshold."""
    budget = result.budget
    if budget is None:
        result.problems.append(
            f"no budget for {result.endpoint} at scale {scale}: add max_rows_read under endpoints: "
            f"{result.endpoint}: {scale} (it read at most {result.max_rows.rows_read:,} rows)"
        )
        return
    for call in result.calls:
        if call.rows_read > budget.max_rows_read:
            result.problems.append(
                f"{result.endpoint} {call.describe()} read {call.rows_read:,} rows, over its budget of "
                f"{budget.max_rows_read:,} at scale {scale}"
            )
        if budget.max_bytes_read is not None and call.bytes_read > budget.max_bytes_read:
            result.problems.append(
                f"{result.endpoint} {call.describe()} read {call.bytes_read:,} bytes, over its budget of "
                f"{budget.max_bytes_read:,} at scale {scale}"
            )
    if result.baseline:
        for key, worst, unit in (
            ("max_rows_read", result.max_rows, "rows"),
            ("max_bytes_read", result.max_bytes, "bytes"),
        ):
            before = result.baseline.get(key)
            now = worst.rows_read if unit == "rows" else worst.bytes_read
            if before is not None and now > before * (1 + threshold / 100):
                growth = 100.0 * (now - before) / before if before else float("inf")
                result.problems.append(
                    f"{result.endpoint} {worst.describe()} read {now:,} {unit}, {growth:+.0f}% over the baseline "
                    f"of {before:,} at scale {scale} (threshold {threshold:g}%)"
                )


def measure(
    reader: Reader, workload: LoadedWorkload, endpoints: list[str], cases: list[Case], rows: int, seed: int, calls: int
) -> dict[str, list[Call]]:
    """Call every endpoint with its cases' parameters, `calls` default and `calls` varied ones; what each read.

    Each endpoint draws its parameters from a generator of its own, so narrowing the run to some endpoints
    calls them with the same parameters as a full run. A call the endpoint refuses (an error case, a 400)
    reads nothing and is left out.
    """
    measured: dict[str, list[Call]] = {}
    for endpoint in endpoints:
        draw = workload.parameters(rows, zlib.crc32(f"{seed}:{endpoint}".encode()))
        series = [(f"case {c.name}", c.params) for c in cases if c.endpoint == endpoint]
        series += [("default", draw.default(endpoint)) for _ in range(calls)]
        series += [("varied", draw.varied(endpoint)) for _ in range(calls)]
        measured[endpoint] = []
        for name, params in series:
            try:
                _, rows, size = reader.call_endpoint(endpoint, params)
            except TbkitError as e:
                if e.status == 400:
                    continue
                raise
            measured[endpoint].append(Call(name, dict(params), rows, size))
    return measured


def write_baseline(path: Path, scale: str, report: BudgetReport) -> None:
    """Record this run's figures for `scale` in the baseline file, keeping the other scales' figures."""
    scales = load_baseline(path)
    scales[scale] = {e.endpoint: e.figures() for e in report.endpoints}
    content = {
        "written_by": WRITTEN_BY,
        "note": "the most rows and bytes one call of each endpoint read, per scale; compare with budgets.yaml",
        "scales": dict(sorted(scales.items())),
    }
    path.write_text(json.dumps(content, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def run(
    layout: Layout,
    project: Project,
    engine: Engine,
    scale: str,
    cases: list[Case],
    endpoints: list[str] | None = None,
    baseline: bool = False,
    threshold: float | None = None,
    work_dir: Path = WORK_DIR,
    seed: int = 0,
    log: Callable[[str], object] = lambda message: None,
    workload: LoadedWorkload | None = None,
) -> BudgetReport:
    """Measure every endpoint (or `endpoints`) on generated data of `scale` in a workspace of `engine`, and
    judge the figures; with `baseline`, record them in `fixtures/budgets-baseline.json` instead of comparing.

    The data is the project's generator's (`workload`, by default the one its configuration names)."""
    if baseline and endpoints is not None:
        raise TbkitError("--baseline records every endpoint: run it without --endpoint or --case")
    workload = workload or load_workload(find_config(layout.project_dir), "tbkit check --budgets")
    budget_file = load(layout.fixtures_dir / FILE_NAME, workload.scales)
    baseline_path = layout.fixtures_dir / BASELINE_NAME
    threshold = budget_file.threshold_percent if threshold is None else threshold
    folder, generated = prepare(workload, work_dir, scale, budget_file.rows(scale), seed, log)
    names = sorted(project.endpoints) if endpoints is None else sorted(endpoints)
    workspace = Workspace(engine, f"budgets_{uuid.uuid4().hex[:12]}", project)
    report = BudgetReport(scale, threshold)
    try:
        workspace.build()
        log(f"appending the {scale} data of {folder}")
        loaded = load_data(workspace, folder, generated)
        settle(workspace)
        report.data = {name: file.successful_rows for name, file in loaded.items()}
        measured = measure(Reader(workspace), workload, names, cases, generated.size, seed, budget_file.calls)
    finally:
        workspace.drop()
    recorded = {} if baseline else load_baseline(baseline_path).get(scale, {})
    for name in names:
        if not measured[name]:
            raise TbkitError(f"{name}: every call was refused, so nothing was measured at scale {scale}")
        result = EndpointBudget(name, measured[name], budget_file.budgets.get(name, {}).get(scale), recorded.get(name))
        judge(result, scale, threshold)
        report.endpoints.append(result)
    if baseline:
        write_baseline(baseline_path, scale, report)
        report.baseline_written = baseline_path
    return report
