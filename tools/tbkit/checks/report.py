"""The report of a `tbkit check` run: every kind of check's outcome, as text summary, JSON, JUnit XML and
GitHub Actions annotations."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assertions import AssertionResult
from .audit import AuditReport
from .budgets import BudgetReport
from .cases import CaseResult
from .contracts import ContractCheck
from .coverage import CoverageReport


@dataclass
class CheckReport:
    """Every outcome of a run: cases, contracts, assertions, and the audit, coverage and budgets when asked."""

    target: str
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    contracts: ContractCheck | None = None
    assertions: list[AssertionResult] = field(default_factory=list)
    audit: AuditReport | None = None
    coverage: CoverageReport | None = None
    budgets: BudgetReport | None = None

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
        """True when no case, assertion, audit, coverage threshold or budget failed and every contract change
        was accepted."""
        parts = (self.contracts, self.audit, self.coverage, self.budgets)
        return self.failed == 0 and all(p is None or p.ok for p in parts) and all(a.ok for a in self.assertions)

    def summary(self) -> str:
        """The closing line: `N passed, M failed`, and what else failed."""
        extra = [f"{n} {o}" for o in ("updated", "created") if (n := sum(r.outcome == o for r in self.results))]
        text = f"{self.passed} passed, {self.failed} failed"
        if self.contracts and (pending := sum(not c.accepted for c in self.contracts.changes)):
            extra.append(f"{pending} contract change{'s' * (pending > 1)} not accepted")
        if failing := sum(not a.ok for a in self.assertions):
            extra.append(f"{failing} assertion{'s' * (failing > 1)} failed")
        if self.audit and (differing := sum(not t.ok for t in self.audit.targets)):
            verb = "differs from its" if differing == 1 else "differ from their"
            extra.append(f"{differing} materialized datasource{'s' * (differing > 1)} {verb} sources")
        if self.coverage and (below := len(self.coverage.below())):
            extra.append(f"{below} endpoint{'s' * (below > 1)} under {self.coverage.min_percent:g}% coverage")
        if self.budgets and (over := len(self.budgets.failures())):
            extra.append(f"{over} endpoint{'s' * (over > 1)} over budget at {self.budgets.scale}")
        return text + (f" ({', '.join(extra)})" if extra else "") + f" in {self.seconds:.2f}s on {self.target}"

    def to_dict(self) -> dict[str, Any]:
        """The whole report for `--json`."""
        return {
            "target": self.target,
            "ok": self.ok,
            "passed": self.passed,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "cases": [r.to_dict() for r in self.results],
            "contracts": None if self.contracts is None else [c.to_dict() for c in self.contracts.changes],
            "assertions": [a.to_dict() for a in self.assertions],
            "audit": None if self.audit is None else self.audit.to_dict(),
            "coverage": None if self.coverage is None else self.coverage.to_dict(),
            "budgets": None if self.budgets is None else self.budgets.to_dict(),
        }


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
    return commands + _more_annotations(report, golden_dir.parent, root)


def _error(file: str, title: str, message: str, line: int | None = None) -> str:
    """One `::error file=...,line=...,title=...::message` command."""
    where = f"file={_escape_property(file)}" + (f",line={line}" if line else "")
    return f"::error {where},title={_escape_property(title)}::{_escape_data(message)}"


def _more_annotations(report: CheckReport, fixtures_dir: Path, root: Path) -> list[str]:
    """Contract changes not accepted (on the contract file), budgets over their limit (on the budgets file),
    endpoints under the coverage threshold (on the pipe, at the first branch no case takes) and materialized
    datasources that differ from their sources."""
    commands = []
    if report.contracts:
        for change in report.contracts.changes:
            if not change.accepted:
                file = _relative(fixtures_dir / "contracts" / f"{change.endpoint}.yaml", root)
                commands.append(_error(file, f"contract {change.endpoint}", str(change)))
    if report.budgets:
        file = _relative(fixtures_dir / "budgets.yaml", root)
        for endpoint in report.budgets.failures():
            commands.append(_error(file, f"budget {endpoint.endpoint}", "\n".join(endpoint.problems[:5])))
    if report.coverage:
        for endpoint in report.coverage.below():
            line = next((a.line for a in endpoint.arms if not a.cases), None)
            title = f"coverage {endpoint.endpoint} under {report.coverage.min_percent:g}%"
            message = endpoint.summary() + "\n" + "\n".join(endpoint.missing())
            commands.append(_error(_relative(Path(endpoint.path), root), title, message, line))
    if report.audit:
        for target in report.audit.targets:
            if not target.ok:
                message = f"{target.differing} keys differ from what {', '.join(target.materializations)} make"
                commands.append(f"::error title={_escape_property('audit ' + target.target)}::{_escape_data(message)}")
    return commands


def _budget_outcomes(report: CheckReport) -> list[tuple[str, list[str]]]:
    return [(e.endpoint, e.problems) for e in report.budgets.endpoints] if report.budgets else []


def _coverage_outcomes(report: CheckReport) -> list[tuple[str, list[str]]]:
    if not report.coverage or report.coverage.min_percent is None:
        return []
    below = {e.endpoint for e in report.coverage.below()}
    return [(e.endpoint, [e.summary(), *e.missing()] if e.endpoint in below else []) for e in report.coverage.endpoints]


def _junit_suite(suites: ET.Element, target: str, name: str, outcomes: list[tuple[str, list[str]]]) -> None:
    """A testsuite `name` with one testcase per endpoint, failed with its problems (none: no suite)."""
    if not outcomes:
        return
    failed = sum(bool(problems) for _, problems in outcomes)
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(outcomes)), failures=str(failed))
    for endpoint, problems in outcomes:
        testcase = ET.SubElement(suite, "testcase", classname=f"{target}.{name}", name=endpoint)
        if problems:
            ET.SubElement(testcase, "failure", message=problems[0]).text = "\n".join(problems)


def write_junit(report: CheckReport, path: Path) -> None:
    """Write a JUnit XML report: one testsuite per endpoint, one testcase per case; and when they ran, a
    `budgets` suite and (with a threshold) a `coverage` suite, one testcase per endpoint."""
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
    _junit_suite(suites, report.target, "budgets", _budget_outcomes(report))
    _junit_suite(suites, report.target, "coverage", _coverage_outcomes(report))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
