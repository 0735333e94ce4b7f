"""The commands that check a project: check (and its --watch loop), audit, diff, lint, export-tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .. import console
from ..project.layout import Layout
from .options import (
    FILE,
    SCALE_HELP,
    given_options,
    json_option,
    layout_options,
    markdown_option,
    project_option,
    shared_engine,
    target_option,
    token_option,
)

# What `check --watch` takes besides itself: it reruns the affected cases on the embedded engine, nothing else.
_WATCH_TAKES = {"watch", "project_dir", "fixtures_dir", "target", "rel_tol"}


@click.command()
@click.option(
    "--watch",
    is_flag=True,
    help="Run every case, then watch the project and fixtures and rerun the affected cases on each save "
    "(embedded target; Ctrl+C to stop).",
)
@layout_options
@click.option("--endpoint", help="Only the cases of this endpoint.")
@click.option("--case", "case_name", help="Only this case (name, or endpoint/name).")
@click.option("--update", is_flag=True, help="Rewrite golden files from current outputs and report changes.")
@click.option(
    "--accept-breaking",
    is_flag=True,
    help="With --update, also write contract changes that break consumers (a removed column, a required parameter).",
)
@target_option
@token_option
@click.option("--seed", is_flag=True, help="Seed fixtures into a remote target (refused otherwise for cloud).")
@click.option("--rel-tol", type=float, default=1e-9, show_default=True, help="Relative tolerance for floats.")
@click.option("--junit", type=FILE, help="Write a JUnit XML report here.")
@click.option("--audit", "with_audit", is_flag=True, help="Also audit every materialized datasource of the target.")
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 100),
    metavar="PERCENT",
    help="Fail when an endpoint's cases exercise less than this share of its parameters and branches.",
)
@click.option(
    "--budgets",
    "with_budgets",
    is_flag=True,
    help="Also measure rows and bytes read on generated data (--scale) and compare with fixtures/budgets.yaml.",
)
@click.option("--scale", help=SCALE_HELP)
@click.option("--baseline", is_flag=True, help="With --budgets, record the figures in fixtures/budgets-baseline.json.")
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    metavar="PERCENT",
    help="With --budgets, fail above the baseline plus this share (default: budgets.yaml's, 25).",
)
@json_option
def check(
    watch,
    project_dir,
    fixtures_dir,
    endpoint,
    case_name,
    update,
    accept_breaking,
    target,
    token,
    seed,
    rel_tol,
    junit,
    with_audit,
    min_coverage,
    with_budgets,
    scale,
    baseline,
    threshold,
    as_json,
):
    """Check every endpoint against its golden files and its contract.

    Builds the project into a fresh embedded workspace and seeds every fixture (--target local deploys it to
    Tinybird Local with `tb` and seeds it; cloud or a URL is checked as it is, unless --seed), runs each case of
    fixtures/cases/<endpoint>.yaml and compares the response with fixtures/golden/<endpoint>/<case>.json
    as data. Prints one line per case and `N passed, M failed`; exits 1 when a case fails. On the embedded
    target, also compares each endpoint's parameters and columns with fixtures/contracts/<endpoint>.yaml and
    exits 1 on any change not accepted: --update writes compatible ones, --accept-breaking breaking ones too.
    Unless --endpoint or --case narrows the run, also runs the data-quality assertions of
    fixtures/assertions.yaml (SQL that must return no rows) and exits 1 when one returns rows. Unless --case
    narrows the run, reports which parameters and template branches each endpoint's cases exercise
    (--min-coverage fails below a share). --audit compares every materialized datasource of the target with
    its sources. --budgets measures the rows and bytes each endpoint reads on generated data of --scale and
    fails over fixtures/budgets.yaml or past the baseline (--baseline records it). Under GitHub Actions
    (GITHUB_ACTIONS=true), each failure is also an `::error` annotation on the file to look at. --watch runs
    every case, then reruns the affected ones on each save, until Ctrl+C.

    \b
    Examples:
      tbkit check
      tbkit check --endpoint top_pages
      tbkit check --update --case new_case_name
      tbkit check --update --accept-breaking       # accept a renamed column in the contracts
      tbkit check --watch                          # rerun the affected cases on every save
      tbkit check --junit reports/junit.xml
      tbkit check --audit --min-coverage 100       # materialized targets, every parameter and branch
      tbkit check --budgets --scale S              # rows and bytes read on the generator's scale S
      tbkit check --budgets --scale S --baseline   # record the figures in fixtures/budgets-baseline.json
      tbkit check --target local                   # Tinybird Local on TB_LOCAL_HOST:TB_LOCAL_PORT
      tbkit check --target http://localhost:7181 --token $TB_TOKEN --seed
    """
    from ..checks.run import Options, github_annotations, write_junit
    from ..checks.run import check as run

    ctx = click.get_current_context()
    layout = Layout.at(project_dir, fixtures_dir)
    if watch:
        if given := given_options(ctx, _WATCH_TAKES):
            raise click.UsageError(f"--watch reruns the affected cases on each save; it takes no {', '.join(given)}")
        if target != "embedded":
            raise click.UsageError(
                f"--watch runs on the embedded target only (not {target}): run `tbkit check --target {target}` "
                "once instead"
            )
        return _watch(layout, rel_tol)
    if accept_breaking and not update:
        raise click.UsageError("--accept-breaking only applies with --update")
    if (scale or baseline or threshold is not None) and not with_budgets:
        raise click.UsageError("--scale, --baseline and --threshold only apply with --budgets")
    options = Options(with_audit, min_coverage, (scale or "S") if with_budgets else None, baseline, threshold)
    report = run(
        layout,
        target=target,
        endpoint=endpoint,
        case=case_name,
        update=update,
        rel_tol=rel_tol,
        token=token,
        seed=seed,
        accept_breaking=accept_breaking,
        on_result=None if as_json else console.case_result,
        on_message=console.message,
        options=options,
        engine=shared_engine(),
    )
    if junit:
        write_junit(report, junit)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console.check_report(report)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        root = Path(os.environ.get("GITHUB_WORKSPACE") or ".")
        for command in github_annotations(report, layout.golden_dir, root):
            click.echo(command, err=as_json)  # stderr beside --json, which owns stdout
    sys.exit(0 if report.ok else 1)


def _watch(layout: Layout, rel_tol: float) -> None:
    """`check --watch`: the dev loop with no server, until Ctrl+C."""
    from ..dev.loop import watch_check

    console.message(f"watching {layout.project_dir} and {layout.fixtures_dir}; Ctrl+C to stop")
    watch_check(layout, lambda result: None, console.dev_run, rel_tol=rel_tol, engine=shared_engine())


@click.command()
@layout_options
@target_option
@token_option
@click.option(
    "--limit", type=click.IntRange(min=1), default=10, show_default=True, help="Differing keys shown per target."
)
@json_option
def audit(project_dir, fixtures_dir, target, token, limit, as_json):
    """Check that every materialized datasource holds what its materializations make of their sources.

    For each target of the materializations (TYPE MATERIALIZED), recomputes it from its sources with the
    SELECTs of every materialization that feeds it, merges it as the target's engine does (aggregate
    functions, latest version) and compares it with the target, key by key of its sorting key. Prints one
    line per target and the differing keys with both values; exits 1 on a difference. A --target other than
    embedded is audited as it is.

    \b
    Examples:
      tbkit audit
      tbkit audit --json
      tbkit audit --target http://localhost:7181 --token $TB_TOKEN
      tbkit audit --target local                   # Tinybird Local, the project's workspace
      tbkit audit --target cloud                   # TB_HOST and TB_TOKEN, from the environment or .env
    """
    from ..checks.audit import run_audit

    layout = Layout.at(project_dir, fixtures_dir)
    report = run_audit(layout, target=target, token=token, limit=limit, engine=shared_engine())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        console.audit(report)
    sys.exit(0 if report.ok else 1)


@click.command("export-tests")
@layout_options
def export_tests(project_dir, fixtures_dir):
    """Write tinybird/tests/<endpoint>.yaml in `tb test` format.

    The expected results are what the embedded engine answers now for every golden case, so
    `tb test run` on Tinybird Local checks the same cases natively.

    \b
    Example:
      tbkit export-tests && cd tinybird && tb --local test run
    """
    from ..checks.export import export

    for path in export(Layout.at(project_dir, fixtures_dir), engine=shared_engine()):
        click.echo(f"{console.OK} wrote {path}")


@click.command()
@project_option
def lint(project_dir):
    """Check datafiles with `tb fmt --diff` and the project loader's validation.

    \b
    Example:
      tbkit lint
    """
    from ..checks.lint import lint as run

    problems = run(project_dir)
    for problem in problems:
        click.echo(f"{console.FAIL} {problem}")
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) found")
    click.echo(f"{console.OK} {project_dir}: every datafile parses, validates and is formatted")


@click.command()
@click.option("--base", required=True, help="Git revision to compare the working tree with, e.g. origin/main.")
@layout_options
@markdown_option
@click.option(
    "--allow-breaking",
    is_flag=True,
    help="Exit 0 even on a breaking contract change or a destructive datasource change.",
)
def diff(base, project_dir, fixtures_dir, markdown_path, allow_breaking):
    """Compare the project at a git revision with the working tree.

    Lists endpoints added or removed, each endpoint's parameter and column changes (breaking or not),
    datasource schema changes (a removed or retyped column, a new engine or sorting key are destructive),
    materializations added, removed or changed, and golden files that differ. Exits 1 on a breaking or
    destructive change unless --allow-breaking.

    \b
    Examples:
      tbkit diff --base origin/main
      tbkit diff --base HEAD~1 --markdown diff.md --allow-breaking
    """
    from ..checks.diff import diff as run

    report = run(None, project_dir, fixtures_dir, base, engine=shared_engine())
    click.echo(report.text(), nl=False)
    if markdown_path:
        markdown_path.write_text(report.markdown(), encoding="utf-8")
    sys.exit(1 if report.breaking and not allow_breaking else 0)
