"""`tbkit check`: every kind of check, composed, on one target.

Each kind of check is a module of its own: golden cases (`checks.cases`), contracts (`contracts`), data-quality
assertions (`assertions`), materialization audits (`audit`), coverage (`checks.coverage`) and cost budgets
(`checks.budgets`); `checks.report` gathers their outcomes. `check()` only decides which run, on what, and in
which order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..engine import Engine
from ..errors import ParameterError
from ..project.datafiles import load_project
from ..project.layout import Layout
from . import assertions, audit, budgets, contracts, coverage, golden, targets
from .cases import CaseResult, run_check
from .report import CheckReport, github_annotations, write_junit

__all__ = ["CaseResult", "CheckReport", "Options", "check", "github_annotations", "write_junit"]


@dataclass(frozen=True)
class Options:
    """The checks beyond golden files that a run adds: audit, coverage threshold, budgets at a scale."""

    audit: bool = False
    min_coverage: float | None = None
    budgets_scale: str | None = None
    baseline: bool = False
    threshold: float | None = None
    budgets_work_dir: Path = budgets.WORK_DIR


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
    options: Options = Options(),
    engine: Engine | None = None,
) -> CheckReport:
    """Load the project and cases, prepare the target (build and seed), and run the selected cases, then:

    - contracts: compare the endpoints' contracts with `fixtures/contracts/` (only the selected cases' endpoints
      when `endpoint` or `case` narrows the run); `update` writes compatible changes, and breaking ones too with
      `accept_breaking` (embedded target). Over HTTP, the columns are those the endpoint's cases answered with,
      and only compared;
    - assertions, unless the run is narrowed: `fixtures/assertions.yaml` on the target (embedded, or `/v0/sql`);
    - coverage, unless `case` narrows the run: which parameters and branches each endpoint's cases exercise,
      failing below `options.min_coverage` percent;
    - with `options.audit`: every materialized datasource of the target against its sources;
    - with `options.budgets_scale` (embedded target): rows and bytes read on generated data of that scale.

    The embedded target is a workspace of `engine` (a temporary engine when None).
    """
    project = load_project(layout.project_dir)
    all_cases = golden.load_cases(layout.cases_dir, project)
    cases = golden.select_cases(all_cases, endpoint, case)
    narrowed = bool(endpoint or case)
    selected = sorted({c.endpoint for c in cases}) if narrowed else None
    if options.budgets_scale and target != "embedded":
        raise ParameterError("--budgets runs on the embedded target only: it loads generated data into a workspace")
    with contextlib.ExitStack() as stack:
        if target == "embedded":
            engine = stack.enter_context(Engine.or_temporary(engine))
        runner = targets.open_target(target, project, layout, engine, token=token, seed=seed, on_message=on_message)
        stack.callback(runner.close)
        run = run_check(cases, runner, layout.golden_dir, update, rel_tol, on_result)
        report = CheckReport(target=run.target, results=run.results, seconds=run.seconds)
        if runner.derives_columns:
            report.contracts = contracts.check(
                layout, project, runner.endpoint_columns, selected, update, accept_breaking
            )
        else:  # over HTTP: the columns its cases answered with, compared only
            known = [e for e in selected or sorted(project.endpoints) if runner.endpoint_columns(e) is not None]
            report.contracts = contracts.check(layout, project, runner.endpoint_columns, known)
        if not narrowed:
            report.assertions = assertions.run(assertions.load(layout.fixtures_dir / assertions.FILE_NAME), runner.sql)
        if not case:
            report.coverage = coverage.coverage(project, all_cases, selected, options.min_coverage)
        if options.audit:
            report.audit = audit.audit_with(runner.sql, project)
        if options.budgets_scale and runner.engine is not None:
            report.budgets = budgets.run(
                layout,
                project,
                runner.engine,
                options.budgets_scale,
                all_cases,
                selected,
                baseline=options.baseline,
                threshold=options.threshold,
                work_dir=options.budgets_work_dir,
                log=on_message,
            )
        return report
