"""Run golden cases against a target, update golden files, and report (text, JSON, JUnit XML)."""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import assertions, contracts, golden, targets
from .assertions import AssertionResult
from .contracts import ContractCheck
from .golden import Case, Response
from .layout import Layout
from .project import load_project


class Target(Protocol):
    """Anything that answers a case with a response."""

    name: str

    def fetch(self, case: Case) -> Response: ...


@dataclass
class CaseResult:
    """The outcome of one case: passed, failed, updated (golden rewritten) or created (new golden)."""

    case: Case
    outcome: str
    seconds: float
    differences: list[str] = field(default_factory=list)

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


@dataclass
class CheckReport:
    """Every case result of a run."""

    target: str
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    contracts: ContractCheck | None = None
    assertions: list[AssertionResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        """Cases that passed, were updated or were created."""
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        """Cases that failed."""
        return sum(1 for r in self.results if not r.ok)

    @property
    def ok(self) -> bool:
        """True when no case or assertion failed and every contract change was accepted."""
        return self.failed == 0 and (self.contracts is None or self.contracts.ok) and all(a.ok for a in self.assertions)

    def summary(self) -> str:
        """The closing line: `N passed, M failed`."""
        extra = [f"{n} {o}" for o in ("updated", "created") if (n := sum(r.outcome == o for r in self.results))]
        text = f"{self.passed} passed, {self.failed} failed"
        if self.contracts and (pending := sum(not c.accepted for c in self.contracts.changes)):
            extra.append(f"{pending} contract change{'s' * (pending > 1)} not accepted")
        if failing := sum(not a.ok for a in self.assertions):
            extra.append(f"{failing} assertion{'s' * (failing > 1)} failed")
        return text + (f" ({', '.join(extra)})" if extra else "") + f" in {self.seconds:.2f}s on {self.target}"

    def to_dict(self) -> dict[str, Any]:
        """The whole report for `--json`."""
        return {
            "target": self.target,
            "passed": self.passed,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "cases": [r.to_dict() for r in self.results],
            "contracts": None if self.contracts is None else [c.to_dict() for c in self.contracts.changes],
            "assertions": [a.to_dict() for a in self.assertions],
        }


def run_case(case: Case, target: Target, golden_dir: Path, update: bool, rel_tol: float) -> CaseResult:
    """Fetch one case and compare it with (or write) its golden file."""
    started = time.perf_counter()
    actual = target.fetch(case)
    seconds = time.perf_counter() - started
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


def run_check(
    cases: list[Case],
    target: Target,
    golden_dir: Path,
    update: bool = False,
    rel_tol: float = golden.DEFAULT_REL_TOL,
    on_result: Callable[[CaseResult], None] | None = None,
) -> CheckReport:
    """Run every case in order; call `on_result` as each finishes."""
    report = CheckReport(target=target.name)
    started = time.perf_counter()
    for case in cases:
        result = run_case(case, target, golden_dir, update, rel_tol)
        report.results.append(result)
        if on_result:
            on_result(result)
    report.seconds = time.perf_counter() - started
    return report


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def github_annotations(report: CheckReport, golden_dir: Path, root: Path) -> list[str]:
    """GitHub Actions `::error` workflow commands: one per failing case, on its golden file, with its first
    difference; one per failing assertion, on the file that declares it. Paths are relative to `root` (the
    checkout); data is escaped as GitHub requires (`%`, CR, LF), properties also `:` and `,`.
    """
    commands = []
    for result in report.results:
        if not result.ok:
            file = _relative(result.case.golden_path(golden_dir), root)
            message = result.differences[0] if result.differences else "failed"
            commands.append(
                f"::error file={_escape_property(file)},title={_escape_property(result.case.id)}::"
                f"{_escape_data(message)}"
            )
    for outcome in report.assertions:
        if not outcome.ok:
            file = _relative(outcome.assertion.path, root)
            message = outcome.headline()
            if outcome.rows:
                message += "\n" + "\n".join(json.dumps(row, default=str) for row in outcome.rows)
            title = f"assertion {outcome.assertion.name}"
            commands.append(
                f"::error file={_escape_property(file)},title={_escape_property(title)}::{_escape_data(message)}"
            )
    return commands


def write_junit(report: CheckReport, path: Path) -> None:
    """Write a JUnit XML report: one testsuite per endpoint, one testcase per case."""
    suites = ET.Element("testsuites", name="tbkit check", tests=str(len(report.results)), failures=str(report.failed))
    by_endpoint: dict[str, list[CaseResult]] = {}
    for result in report.results:
        by_endpoint.setdefault(result.case.endpoint, []).append(result)
    for endpoint, results in by_endpoint.items():
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=endpoint,
            tests=str(len(results)),
            failures=str(sum(not r.ok for r in results)),
            time=f"{sum(r.seconds for r in results):.4f}",
        )
        for result in results:
            testcase = ET.SubElement(
                suite,
                "testcase",
                classname=f"{report.target}.{endpoint}",
                name=result.case.name,
                time=f"{result.seconds:.4f}",
            )
            if not result.ok:
                failure = ET.SubElement(
                    testcase, "failure", message=result.differences[0] if result.differences else ""
                )
                failure.text = "\n".join(result.differences)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def check(
    layout: Layout,
    target: str = "embedded",
    endpoint: str | None = None,
    case: str | None = None,
    update: bool = False,
    rel_tol: float = golden.DEFAULT_REL_TOL,
    token: str | None = None,
    seed: bool = False,
    accept_breaking: bool = False,
    on_result: Callable[[CaseResult], None] | None = None,
    on_message: Callable[[str], object] = lambda message: None,
) -> CheckReport:
    """Load the project and cases, prepare the target (build and seed), and run the selected cases.

    On the embedded target, also compare the endpoints' contracts with `fixtures/contracts/` (only the selected
    cases' endpoints when `endpoint` or `case` narrows the run); `update` writes compatible contract changes,
    and breaking ones too with `accept_breaking`. Unless the run is narrowed, also run the data-quality
    assertions of `fixtures/assertions.yaml` on the target (embedded, or over HTTP through `/v0/sql`).
    """
    project = load_project(layout.project_dir)
    cases = golden.select_cases(golden.load_cases(layout.cases_dir, project), endpoint, case)
    runner = targets.open_target(target, project, layout, token=token, seed=seed, on_message=on_message)
    try:
        report = run_check(cases, runner, layout.golden_dir, update, rel_tol, on_result)
        if isinstance(runner, targets.EmbeddedTarget):
            selected = {c.endpoint for c in cases} if endpoint or case else None
            report.contracts = contracts.check(layout, project, runner.workspace, selected, update, accept_breaking)
        if not (endpoint or case):
            if isinstance(runner, targets.EmbeddedTarget):
                workspace = runner.workspace
                run_sql: assertions.RunSql = lambda sql: json.loads(workspace.sql(sql))  # noqa: E731
            else:
                run_sql = runner.client.sql
            report.assertions = assertions.run(assertions.load(layout.fixtures_dir / assertions.FILE_NAME), run_sql)
        return report
    finally:
        runner.close()
