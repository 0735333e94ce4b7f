"""Reports rendered for a terminal: what `tbkit check`, `audit`, `seed`, `serve` and `dev` print.

The library returns reports; the commands hand them here to be written with click (colours where the terminal
takes them), so a report's text lives in one place and no command formats its own.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .checks.assertions import AssertionResult
    from .checks.audit import AuditReport
    from .checks.budgets import BudgetReport
    from .checks.cases import CaseResult
    from .checks.contracts import ContractCheck
    from .checks.coverage import CoverageReport
    from .checks.report import CheckReport
    from .dev.loop import RunReport
    from .engine import AppendResult
    from .server import Service

OK = click.style("✓", fg="green")
FAIL = click.style("✗", fg="red")
MARKS = {
    "passed": OK,
    "failed": FAIL,
    "updated": click.style("↻", fg="yellow"),
    "created": click.style("+", fg="cyan"),
}


def message(text: str) -> None:
    """A line about what a command is doing (`» ...`), on stderr so that stdout holds the report."""
    click.echo(f"» {text}", err=True)


def case_result(result: CaseResult) -> None:
    """One line per case, then its differences: a failure's diff, an update's changes, a new golden file."""
    ms = f"{result.seconds * 1000:7.1f} ms"
    click.echo(f"{MARKS[result.outcome]} {result.case.id:<60} {ms}")
    for line in result.differences:
        click.echo(f"    {line}")


def contract_changes(check: ContractCheck | None) -> None:
    """One line per contract change: ✗ breaking, ~ compatible, ↻ written; then how to accept the rest."""
    for change in check.changes if check else []:
        mark = MARKS["updated"] if change.accepted else FAIL if change.breaking else "~"
        click.echo(f"{mark} {change}")
    pending = [c for c in check.changes if not c.accepted] if check else []
    if pending:
        how = "tbkit check --update --accept-breaking" if any(c.breaking for c in pending) else "tbkit check --update"
        click.echo(f"    contracts differ from fixtures/contracts/: review, then run `{how}` to accept")


def assertions(results: list[AssertionResult]) -> None:
    """`✓ assertion <name>`, or `✗ assertion <name>: N offending rows` and the first rows, one per line."""
    for result in results:
        click.echo(f"{OK if result.ok else FAIL} {result.headline()}")
        for row in result.rows:
            click.echo(f"    {json.dumps(row, default=str)}")


def audit(report: AuditReport | None, prefix: str = "") -> None:
    """One line per materialized datasource, then its differing keys with both values."""
    for result in report.targets if report else []:
        mark = OK if result.ok else FAIL
        feeders = ", ".join(result.materializations)
        click.echo(f"{mark} {prefix}{result.target:<32} {result.rows_compared:>10,} rows compared  ({feeders})")
        if not result.ok:
            click.echo(f"    {result.differing:,} differing keys (expected: from the sources; actual: stored)")
        for difference in result.differences:
            key = ", ".join(f"{name}={value!r}" for name, value in difference.key.items())
            click.echo(f"    {key}")
            click.echo(f"      expected: {json.dumps(difference.expected, default=str)}")
            click.echo(f"      actual:   {json.dumps(difference.actual, default=str)}")


def coverage(report: CoverageReport | None) -> None:
    """`✓ coverage <endpoint>: 2/2 parameters, 4/4 branches (100%)`, then what no case exercises."""
    for endpoint in report.endpoints if report else []:
        below = report.min_percent is not None and endpoint.percent < report.min_percent
        mark = FAIL if below else OK if not endpoint.missing() else "~"
        click.echo(f"{mark} coverage {endpoint.summary()}")
        for line in endpoint.missing():
            click.echo(f"    {line}")


def budgets(report: BudgetReport | None) -> None:
    """`✓ budget <endpoint>: N calls, at most R rows read (budget B) ...`, then every call over it."""
    if report is None:
        return
    data = ", ".join(f"{name} {rows:,}" for name, rows in report.data.items())
    message(f"budgets at scale {report.scale} ({data})")
    for endpoint in report.endpoints:
        click.echo(f"{OK if endpoint.ok else FAIL} budget {endpoint.summary()}")
        for line in endpoint.problems[:5]:
            click.echo(f"    {line}")
        if len(endpoint.problems) > 5:
            click.echo(f"    ... and {len(endpoint.problems) - 5} more")
    if report.baseline_written:
        click.echo(f"{MARKS['updated']} baseline at scale {report.scale} written to {report.baseline_written}")


def check_report(report: CheckReport) -> None:
    """Everything `tbkit check` found after its cases (each printed as it finished), then the summary."""
    contract_changes(report.contracts)
    assertions(report.assertions)
    audit(report.audit, prefix="audit ")
    coverage(report.coverage)
    budgets(report.budgets)
    click.echo(("" if report.ok else "\n") + report.summary())


def dev_run(report: RunReport) -> None:
    """A run of the dev loop: what changed, each failing case with its diff, then `N passed, M failed`."""
    if report.changed:
        message(f"changed: {', '.join(report.changed)}")
    if report.build_error:
        click.echo(f"{FAIL} {report.summary()}")
        return
    for result in report.results:
        if not result.ok:
            case_result(result)
    click.echo(report.summary())


def appended(results: list[AppendResult]) -> None:
    """One line per datasource: rows stored and rows quarantined."""
    for result in results:
        click.echo(
            f"{OK if not result.quarantined_rows else FAIL} {result.datasource:<28} "
            f"{result.successful_rows:>10,} successful  {result.quarantined_rows:>8,} quarantined"
        )


def progress_bar(label: str, total: int) -> Any:
    """A progress bar over `total` bytes on stderr (the caller shows it for large files only)."""
    return click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True)


def serving(service: Service, bound_port: int) -> None:
    """The start-up lines: where it serves, the admin token, where the other tokens are, the Local API, the web UI's
    sign-in link."""
    from .server.views.ui import sign_in_link

    config = service.config
    click.echo(f"{OK} serving {config.project_dir} on http://{config.host}:{bound_port} (data in {config.data_dir})")
    if config.admin_token:
        click.echo("  admin token: the one given with --admin-token")
    else:
        click.echo(f"  admin token: {service.main.tokens.admin.value}  (saved in {config.data_dir}/tokens.json)")
    click.echo("  scoped tokens: tbkit tokens --data-dir " + str(config.data_dir))
    if config.serves_local_api:
        click.echo(f"  Tinybird Local API on: TB_LOCAL_HOST={config.host} TB_LOCAL_PORT={bound_port} tb --local deploy")
    if config.admin_token:  # a token the user chose is not printed: the page asks for it
        click.echo(f"  web UI: {sign_in_link(config.host, bound_port, None)}  (sign in with the --admin-token value)")
    else:
        click.echo(f"  web UI: {sign_in_link(config.host, bound_port, service.main.tokens.admin.value)}")
    sys.stdout.flush()  # the link is needed now, also when stdout is a pipe or a file
