"""Golden cases: run each case against a target and compare its response with (or write) its golden file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import golden
from .golden import Case, Response


class Answers(Protocol):
    """Anything that answers a case with a response (a `targets.Target`, or the dev loop's current build)."""

    name: str

    def fetch(self, case: Case) -> Response: ...


@dataclass
class CaseResult:
    """The outcome of one case: passed, failed, updated (golden rewritten) or created (new golden)."""

    case: Case
    outcome: str
    seconds: float
    differences: list[str] = field(default_factory=list)
    # The response's columns when it answered 200: what an HTTP target's contract check learns them from.
    columns: list[tuple[str, str]] | None = None

    @property
    def ok(self) -> bool:
        """True unless the case failed."""
        return self.outcome != "failed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "endpoint": self.case.endpoint,
            "case": self.case.name,
            "outcome": self.outcome,
            "ms": round(self.seconds * 1000, 2),
            "differences": self.differences,
        }


def run_case(case: Case, target: Answers, golden_dir: Path, update: bool, rel_tol: float) -> CaseResult:
    """Fetch one case and compare it with (or write) its golden file."""
    started = time.perf_counter()
    actual = target.fetch(case)
    seconds = time.perf_counter() - started
    result = _judge(case, actual, seconds, golden_dir, update, rel_tol)
    if actual.status == 200:
        result.columns = [(m["name"], m["type"]) for m in actual.meta]
    return result


def _judge(case: Case, actual: Response, seconds: float, golden_dir: Path, update: bool, rel_tol: float) -> CaseResult:
    expected = golden.read_golden(case, golden_dir)
    if expected is None:
        if update:
            golden.write_golden(case, actual, golden_dir)
            return CaseResult(case, "created", seconds, [f"new golden file {case.golden_path(golden_dir)}"])
        return CaseResult(
            case,
            "failed",
            seconds,
            [f"no golden file {case.golden_path(golden_dir)}: run with --update to create it"],
        )
    differences = golden.compare(expected, actual, case, rel_tol)
    if update and (differences or golden.golden_text(case, actual) != golden.golden_text(case, expected)):
        if golden.write_golden(case, actual, golden_dir) and differences:
            return CaseResult(case, "updated", seconds, differences)
        return CaseResult(case, "passed", seconds)
    return CaseResult(case, "failed" if differences else "passed", seconds, differences)


@dataclass
class CaseRun:
    """The results of running cases on one target, and how long it took."""

    target: str
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0


def run_check(
    cases: list[Case],
    target: Answers,
    golden_dir: Path,
    update: bool = False,
    rel_tol: float = golden.DEFAULT_REL_TOL,
    on_result: Callable[[CaseResult], None] | None = None,
) -> CaseRun:
    """Run every case in order; call `on_result` as each finishes."""
    report = CaseRun(target=target.name)
    started = time.perf_counter()
    for case in cases:
        result = run_case(case, target, golden_dir, update, rel_tol)
        report.results.append(result)
        if on_result:
            on_result(result)
    report.seconds = time.perf_counter() - started
    return report
