"""The `tbkit` command line: thin commands that parse options, call the library and print.

Every option that more than one command takes is defined once below (`project_option`, `data_dir_option`,
...), so it has the same name, default and help everywhere, and one meaning per option name.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__
from .errors import TbkitError
from .project.layout import Layout

if TYPE_CHECKING:
    from .engine import Engine

OK = click.style("✓", fg="green")
FAIL = click.style("✗", fg="red")
MARKS = {
    "passed": OK,
    "failed": FAIL,
    "updated": click.style("↻", fg="yellow"),
    "created": click.style("+", fg="cyan"),
}


@dataclass
class Shared:
    """What the commands run in one process share: an embedded engine the caller already has open (chDB holds one
    data directory per process, so a test driving the commands in-process passes its own as `obj`); without
    one, each command opens a temporary engine."""

    engine: Engine | None = None


def shared_engine() -> Engine | None:
    """The engine the caller passed in `Shared` (None: the command opens its own)."""
    shared = click.get_current_context().find_object(Shared)
    return shared.engine if shared else None


class TbkitGroup(click.Group):
    """Turns every TbkitError into `Error: <message>` and exit code 1, with no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TbkitError as e:
            raise click.ClickException(str(e)) from None


# -- options shared by several commands, each defined once ---------------------------------------------

FOLDER = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)


class Size(click.ParamType):
    """A size in bytes, given as `2GiB`, `500MB` or `300000000`; a usage error says what is expected."""

    name = "size"

    def convert(self, value, param, ctx):
        from .sizes import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except TbkitError as e:
            self.fail(str(e), param, ctx)


def memory_share(percent: int) -> str:
    """`<percent> % of this machine's memory (<size> here)`, for the help of a memory limit."""
    from .sizes import format_size, share_of_memory

    size = format_size(share_of_memory(percent))
    return f"{percent} % of the machine's physical memory (or its container's limit), {size} here"


project_option = click.option(
    "--project",
    "project_dir",
    type=FOLDER,
    default="tinybird",
    show_default=True,
    help="Tinybird project folder (datasources, materializations, endpoints).",
)
fixtures_option = click.option(
    "--fixtures",
    "fixtures_dir",
    type=FOLDER,
    default="fixtures",
    show_default=True,
    help="Folder with <datasource>.ndjson fixtures, cases/ and golden/.",
)
data_dir_option = click.option(
    "--data-dir",
    type=FOLDER,
    default=".tbkit",
    show_default=True,
    help="Data directory of the served/embedded workspace (kept across restarts).",
)
target_option = click.option(
    "--target",
    default="embedded",
    show_default=True,
    help="Where: embedded (a fresh workspace seeded with the fixtures); local (Tinybird Local on TB_LOCAL_HOST:"
    "TB_LOCAL_PORT); cloud (TB_HOST/TB_TOKEN); or a URL (with --token).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of text.")
markdown_option = click.option(
    "--markdown", "markdown_path", type=FILE, help="Also write the report as a markdown table to this file."
)
random_seed_option = click.option(
    "--random-seed",
    "random_seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random generator: the same seed generates the same data.",
)


def layout_options(function):
    """--project and --fixtures, shared by the commands that read the project and its fixtures."""
    return project_option(fixtures_option(function))


def exactly_one_of(*names: str):
    """Decorator: of the command's options `names` (declared below it), exactly one must be given.

    Checked by click while it parses the command line, so a mistake is a usage error (exit code 2) with one
    message, `pass exactly one of --a and --b`, before the command runs.
    """

    def decorator(function):
        params = {param.name: param for param in getattr(function, "__click_params__", [])}
        group = [params[name] for name in names]
        message = "pass exactly one of " + " and ".join(max(param.opts, key=len) for param in group)

        def check(ctx: click.Context, param: click.Parameter, value):
            # The last option of the group that click processes sees the others' values in ctx.params.
            if ctx.resilient_parsing or any(other is not param and other.name not in ctx.params for other in group):
                return value
            values = [value if other is param else ctx.params[other.name] for other in group]
            if sum(v is not None for v in values) != 1:
                raise click.UsageError(message, ctx)
            return value

        for param in group:
            if param.callback is not None:
                raise TypeError(f"exactly_one_of: {param.name} already has a callback")
            param.callback = check
        return function

    return decorator


SCALE_HELP = "A named scale of the project's data generator, e.g. S, M, L (check --budgets: also budgets.yaml's)."


def size_options(min_rows: int, checked: bool = True):
    """--scale or --rows: the size of generated data, for datagen and bench; exactly one unless not `checked` (the
    command checks it)."""

    def decorator(function):
        function = click.option(
            "--rows",
            type=click.IntRange(min=min_rows),
            help="A size in rows instead of a named --scale (the generator's rows: e.g. users, with their sessions).",
        )(function)
        function = click.option("--scale", help=SCALE_HELP)(function)
        return exactly_one_of("scale", "rows")(function) if checked else function

    return decorator


def given_options(ctx: click.Context, leaving_out: set[str]) -> list[str]:
    """The command's options given on the command line, but those named in `leaving_out`, as `--name`."""
    from click.core import ParameterSource

    return [
        max(param.opts, key=len)
        for param in ctx.command.params
        if param.name not in leaving_out and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
    ]


def watch_option(function):
    """`--watch` for `tbkit check`: instead of one run, the dev loop's (`tbkit dev` without a server), embedded only.

    Defined beside the command rather than in it: with --watch the command's own body does not run.
    """
    import functools

    from click.core import ParameterSource

    @functools.wraps(function)
    def command(*args, watch: bool, **kwargs):
        if not watch:
            return function(*args, **kwargs)
        ctx = click.get_current_context()
        kept = {"watch", "project_dir", "fixtures_dir", "target", "rel_tol"}
        given = [
            max(param.opts, key=len)
            for param in ctx.command.params
            if param.name not in kept and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(f"--watch reruns the affected cases on each save; it takes no {', '.join(given)}")
        if kwargs["target"] != "embedded":
            raise click.UsageError(
                f"--watch runs on the embedded target only (not {kwargs['target']}): run `tbkit check --target "
                f"{kwargs['target']}` once instead"
            )
        from .dev.loop import watch_check

        layout = Layout.at(kwargs["project_dir"], kwargs["fixtures_dir"])
        click.echo(f"» watching {layout.project_dir} and {layout.fixtures_dir}; Ctrl+C to stop", err=True)
        watch_check(
            layout,
            on_result=lambda result: None,
            on_report=_print_run,
            rel_tol=kwargs["rel_tol"],
            engine=shared_engine(),
        )

    return click.option(
        "--watch",
        is_flag=True,
        help="Run every case, then watch the project and fixtures and rerun the affected cases on each save "
        "(embedded target; Ctrl+C to stop).",
    )(command)


@click.group(cls=TbkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tbkit")
def main() -> None:
    """Build, serve and check a Tinybird Forward project.

    Runs the datafiles in tinybird/ on an embedded ClickHouse (chDB) with no Docker, checks every
    endpoint against golden files, and deploys the same files with `tb` to Tinybird Local or Cloud.

    \b
    Examples:
      tbkit check                          # every golden case on the embedded engine
      tbkit check --endpoint top_pages --case last_week
      tbkit check --update                 # accept current outputs as the new golden files
    """


def _print_result(result) -> None:
    """One line per case, then its differences: a failure's diff, an update's changes, a new golden file."""
    ms = f"{result.seconds * 1000:7.1f} ms"
    click.echo(f"{MARKS[result.outcome]} {result.case.id:<60} {ms}")
    for line in result.differences:
        click.echo(f"    {line}")


def _print_contract_changes(check) -> None:
    """One line per contract change: ✗ breaking, ~ compatible, ↻ written; then how to accept the rest."""
    for change in check.changes if check else []:
        mark = MARKS["updated"] if change.accepted else FAIL if change.breaking else "~"
        click.echo(f"{mark} {change}")
    pending = [c for c in check.changes if not c.accepted] if check else []
    if pending:
        how = "tbkit check --update --accept-breaking" if any(c.breaking for c in pending) else "tbkit check --update"
        click.echo(f"    contracts differ from fixtures/contracts/: review, then run `{how}` to accept")


def _print_assertions(results) -> None:
    """`✓ assertion <name>`, or `✗ assertion <name>: N offending rows` and the first rows, one per line."""
    for result in results:
        click.echo(f"{OK if result.ok else FAIL} {result.headline()}")
        for row in result.rows:
            click.echo(f"    {json.dumps(row, default=str)}")


def _print_audit(report, prefix: str = "") -> None:
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


def _print_coverage(report) -> None:
    """`✓ coverage <endpoint>: 2/2 parameters, 4/4 branches (100%)`, then what no case exercises."""
    for endpoint in report.endpoints if report else []:
        below = report.min_percent is not None and endpoint.percent < report.min_percent
        mark = FAIL if below else OK if not endpoint.missing() else "~"
        click.echo(f"{mark} coverage {endpoint.summary()}")
        for line in endpoint.missing():
            click.echo(f"    {line}")


def _print_budgets(report) -> None:
    """`✓ budget <endpoint>: N calls, at most R rows read (budget B) ...`, then every call over it."""
    if report is None:
        return
    data = ", ".join(f"{name} {rows:,}" for name, rows in report.data.items())
    click.echo(f"» budgets at scale {report.scale} ({data})", err=True)
    for endpoint in report.endpoints:
        click.echo(f"{OK if endpoint.ok else FAIL} budget {endpoint.summary()}")
        for line in endpoint.problems[:5]:
            click.echo(f"    {line}")
        if len(endpoint.problems) > 5:
            click.echo(f"    ... and {len(endpoint.problems) - 5} more")
    if report.baseline_written:
        click.echo(f"{MARKS['updated']} baseline at scale {report.scale} written to {report.baseline_written}")


@main.command()
@watch_option
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
@click.option("--token", envvar="TB_TOKEN", help="Token for an HTTP target (default: $TB_TOKEN).")
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
    (GITHUB_ACTIONS=true), each failure is also an `::error` annotation on the file to look at.

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
    import os

    from .checks.run import Options, github_annotations, write_junit
    from .checks.run import check as run

    if accept_breaking and not update:
        raise click.UsageError("--accept-breaking only applies with --update")
    if (scale or baseline or threshold is not None) and not with_budgets:
        raise click.UsageError("--scale, --baseline and --threshold only apply with --budgets")
    options = Options(with_audit, min_coverage, (scale or "S") if with_budgets else None, baseline, threshold)
    report = run(
        Layout.at(project_dir, fixtures_dir),
        target=target,
        endpoint=endpoint,
        case=case_name,
        update=update,
        rel_tol=rel_tol,
        token=token,
        seed=seed,
        accept_breaking=accept_breaking,
        on_result=None if as_json else _print_result,
        on_message=lambda message: click.echo(f"» {message}", err=True),
        options=options,
        engine=shared_engine(),
    )
    if junit:
        write_junit(report, junit)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_contract_changes(report.contracts)
        _print_assertions(report.assertions)
        _print_audit(report.audit, prefix="audit ")
        _print_coverage(report.coverage)
        _print_budgets(report.budgets)
        click.echo(("" if report.ok else "\n") + report.summary())
    if os.environ.get("GITHUB_ACTIONS") == "true":
        root = Path(os.environ.get("GITHUB_WORKSPACE") or ".")
        for command in github_annotations(report, Layout.at(project_dir, fixtures_dir).golden_dir, root):
            click.echo(command, err=as_json)  # stderr beside --json, which owns stdout
    sys.exit(0 if report.ok else 1)


@main.command()
@layout_options
@target_option
@click.option("--token", envvar="TB_TOKEN", help="Token for a URL target (default: $TB_TOKEN).")
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
    from .checks.audit import run_audit

    layout = Layout.at(project_dir, fixtures_dir)
    report = run_audit(layout, target=target, token=token, limit=limit, engine=shared_engine())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_audit(report)
    sys.exit(0 if report.ok else 1)


@main.command()
@layout_options
@data_dir_option
@click.option("--workspace", default="main", show_default=True, help="Workspace inside the data directory.")
@click.option("--datasource", help="Append every FILE to this datasource (default: named by the file).")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def seed(project_dir, fixtures_dir, data_dir, workspace, datasource, files):
    """Append NDJSON files to the embedded workspace.

    With no FILE, appends the fixtures (fixtures/<datasource>.ndjson). Rows that do not fit a
    datasource go to <datasource>_quarantine; prints successful and quarantined rows per datasource.

    \b
    Examples:
      tbkit seed
      tbkit seed --datasource page_views big_export.ndjson
    """
    from .engine.seeding import seed_workspace

    layout = Layout.at(project_dir, fixtures_dir)
    results = seed_workspace(layout, data_dir, workspace, list(files), datasource, progress=_progress_bar)
    for result in results:
        click.echo(
            f"{OK if not result.quarantined_rows else FAIL} {result.datasource:<28} "
            f"{result.successful_rows:>10,} successful  {result.quarantined_rows:>8,} quarantined"
        )


def _progress_bar(label: str, total: int):
    """A click progress bar over `total` bytes, shown for large files only."""
    return click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True)


@main.command("export-tests")
@layout_options
def export_tests(project_dir, fixtures_dir):
    """Write tinybird/tests/<endpoint>.yaml in `tb test` format.

    The expected results are what the embedded engine answers now for every golden case, so
    `tb test run` on Tinybird Local checks the same cases natively.

    \b
    Example:
      tbkit export-tests && cd tinybird && tb --local test run
    """
    from .checks.export import export

    for path in export(Layout.at(project_dir, fixtures_dir), engine=shared_engine()):
        click.echo(f"{OK} wrote {path}")


@main.command()
@size_options(min_rows=1)
@random_seed_option
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Files written in parallel.")
@click.option("--out", type=FOLDER, required=True, help="Output folder.")
@json_option
@project_option
def datagen(scale, rows, random_seed, workers, out, as_json, project_dir):
    """Generate deterministic NDJSON with the project's data generator, at a named scale or any size.

    The generator is the project's own, named by `workload` under [tool.tbkit] in pyproject.toml (or in
    tbkit.yaml), found from --project up: it writes one <datasource>.ndjson per datasource it feeds, the same
    bytes for the same --random-seed, and counts the rows the engine must quarantine. A size is in rows, the
    generator's unit (a generator of users may count users, each with their sessions); --scale names one of its sizes.

    \b
    Examples:
      tbkit datagen --scale S --out data/S
      tbkit datagen --rows 5000 --random-seed 7 --out data/custom --json
    """
    from .datagen import workload_of

    workload = workload_of(project_dir, "tbkit datagen")
    data = workload.generate(out, workload.rows(scale) if scale else rows, random_seed, workers)
    if as_json:
        click.echo(json.dumps(data.to_dict(), indent=2))
        return
    for name, file in data.files.items():
        click.echo(f"{OK} {name:<28} {file.rows:>12,} rows  {file.malformed:>8,} malformed  {file.bytes:>14,} bytes")
    click.echo(f"wrote {out} in {data.seconds:.1f}s")


# The options of the server, shared by `tbkit serve` and `tbkit dev` (which adds its own --data-dir).
_SERVE_OPTIONS = [
    click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
    click.option("--port", type=int, default=7181, show_default=True, help="Port to listen on (Tinybird Local's)."),
    click.option("--token", envvar="TB_TOKEN", help="Admin token (default: $TB_TOKEN, else generated and saved)."),
    click.option(
        "--max-concurrency",
        type=click.IntRange(min=1),
        default=32,
        show_default=True,
        help="Requests served at once; more are answered 429 Too Many Requests.",
    ),
    click.option("--query-timeout", type=click.FloatRange(min=0.1), help="Cancel queries running longer (seconds)."),
    click.option(
        "--max-query-memory",
        type=Size(),
        help="Memory one read (Query API or endpoint) may use, e.g. 2GiB or 500MB; a query needing more is "
        f"cancelled with a 400. Default: {memory_share(20)}.",
    ),
    click.option(
        "--max-server-memory",
        type=Size(),
        help="Memory the whole server may use (ClickHouse's max_server_memory_usage), e.g. 8GiB; appends are held "
        f"only to this. Default: {memory_share(60)}.",
    ),
    click.option(
        "--local-api/--no-local-api",
        default=None,
        help="Answer Tinybird Local's API (/tokens, workspaces, deploys), so `tb --local` works. Default: on when "
        "bound to a loopback address, off otherwise, because its /tokens is unauthenticated as in Tinybird Local.",
    ),
    click.option(
        "--reset-deployment",
        is_flag=True,
        help="Serve the --project folder again, discarding a deployment that `tb deploy` made and the data "
        "directory kept (the data itself is kept).",
    ),
    click.option(
        "--shutdown-timeout",
        type=click.FloatRange(min=0),
        default=30.0,
        show_default=True,
        help="On Ctrl+C or SIGTERM, stop accepting connections and let requests in flight finish for up to this "
        "many seconds before cutting them (a second signal cuts them at once).",
    ),
    click.option("-v", "--verbose", is_flag=True, help="Log every request (tokens redacted)."),
]


def serve_options(function):
    """The server's options (all of `tbkit serve`'s but --project and --data-dir), for serve and dev."""
    for option in reversed(_SERVE_OPTIONS):
        function = option(function)
    return function


def _server_config(project_dir: Path, data_dir: Path, verbose: bool, token: str | None, **options):
    """The server's configuration from the serve options; logging set up as --verbose asks."""
    import logging

    from .server import ServerConfig

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    return ServerConfig(project_dir=project_dir, data_dir=data_dir, admin_token=token, **options)


def _print_serving(service, bound_port: int) -> None:
    """The start-up lines: where it serves, the admin token, where the other tokens are, the Local API, the web UI's
    sign-in link."""
    from .server.views.ui import sign_in_link

    config = service.config
    click.echo(f"{OK} serving {config.project_dir} on http://{config.host}:{bound_port} (data in {config.data_dir})")
    if config.admin_token:
        click.echo("  admin token: the one given with --token / $TB_TOKEN")
    else:
        click.echo(f"  admin token: {service.main.tokens.admin.value}  (saved in {config.data_dir}/tokens.json)")
    click.echo("  scoped tokens: tbkit tokens --data-dir " + str(config.data_dir))
    if config.serves_local_api:
        click.echo(f"  Tinybird Local API on: TB_LOCAL_HOST={config.host} TB_LOCAL_PORT={bound_port} tb --local deploy")
    if config.admin_token:  # a token the user chose is not printed: the page asks for it
        click.echo(f"  web UI: {sign_in_link(config.host, bound_port, None)}  (sign in with the --token value)")
    else:
        click.echo(f"  web UI: {sign_in_link(config.host, bound_port, service.main.tokens.admin.value)}")
    sys.stdout.flush()  # the link is needed now, also when stdout is a pipe or a file


@main.command()
@project_option
@data_dir_option
@serve_options
def serve(project_dir, data_dir, **options):
    """Serve the Tinybird HTTP API over the embedded engine.

    Builds tinybird/ into a persistent workspace in --data-dir (the data survives restarts) and
    answers the Events API, the Data Sources API, /v0/pipes/<endpoint>.json, /v0/sql and
    /v0/pipes/openapi.json as Tinybird does. Stop it with Ctrl+C. The web UI is at / (open the
    sign-in link printed at start): endpoints with a form to call them, datasources and quarantine.

    \b
    Example:
      tbkit serve --port 7181
      curl "http://localhost:7181/v0/pipes/top_pages.json?token=$TB_TOKEN"
    """
    from .server import serve as run

    run(_server_config(project_dir, data_dir, **options), on_ready=_print_serving)


def _print_run(report) -> None:
    """A run of the dev loop: what changed, each failing case with its diff, then `N passed, M failed`."""
    if report.changed:
        click.echo(f"» changed: {', '.join(report.changed)}")
    if report.build_error:
        click.echo(f"{FAIL} {report.summary()}")
    else:
        for result in report.results:
            if not result.ok:
                _print_result(result)
        click.echo(report.summary())


@main.command()
@layout_options
@click.option(
    "--data-dir",
    type=FOLDER,
    help="Data directory to serve, kept across restarts (default: a fresh temporary one, seeded with the "
    "fixtures and removed on exit).",
)
@serve_options
def dev(project_dir, fixtures_dir, data_dir, **options):
    """Serve the project and rerun its golden cases on every save.

    Serves the API as `tbkit serve` does (same options), from a fresh data directory seeded with the
    fixtures unless --data-dir names one, runs every golden case once, then watches the project and the
    fixtures: on a save it rebuilds what changed (a datasource keeps its rows unless its schema or fixture
    changed), reruns the cases of the affected endpoints and prints each failing case with its diff, then
    `N passed, M failed`. A broken datafile prints its file and line and the last good build stays served.
    GET /v0/tbkit/checks (admin token) answers the latest outcome of every case. Stop it with Ctrl+C.

    \b
    Examples:
      tbkit dev
      tbkit dev --port 7182 --data-dir .tbkit-dev
    """
    import tempfile

    from .dev.loop import serve as run

    layout = Layout.at(project_dir, fixtures_dir)
    with tempfile.TemporaryDirectory(prefix="tbkit-dev-") as fresh:
        config = _server_config(project_dir, data_dir or Path(fresh), **options)
        run(config, layout, on_ready=_print_serving, on_result=lambda result: None, on_report=_print_run)


@main.command()
@project_option
@data_dir_option
def tokens(project_dir, data_dir):
    """List the tokens of the served workspace: name, scopes (Tinybird's notation) and value.

    The same tokens as `tb --local token ls` on the served workspace: the admin token, the scoped tokens of
    `TOKEN <name> READ|APPEND` lines in the datafiles, and those made through the Tokens API (`tb token
    create static`). Values are generated once and kept in --data-dir/tokens.json (mode 0600).

    \b
    Example:
      tbkit tokens --data-dir .tbkit
    """
    from .project.datafiles import load_project
    from .server.workspaces.tokens import TokenStore, listing

    for line in listing(TokenStore.load(data_dir, load_project(project_dir))):
        click.echo(line)


@main.command()
@project_option
@click.option("--target", type=click.Choice(["local", "cloud"]), required=True, help="Tinybird Local or Cloud.")
@click.option("--check", "check_only", is_flag=True, help="Validate the deployment without applying it.")
@click.option("--allow-destructive-operations", is_flag=True, help="Allow changes that drop or recreate data.")
def deploy(project_dir, target, check_only, allow_destructive_operations):
    """Deploy the datafiles with the real `tb` CLI, streaming its output.

    --target local runs `tb --local deploy` against Tinybird Local (TB_LOCAL_HOST, TB_LOCAL_PORT,
    default localhost:7181); --target cloud runs `tb --cloud deploy` with TB_HOST and TB_TOKEN from
    the environment or .env / .env.local.

    \b
    Examples:
      tbkit deploy --target local
      TB_HOST=https://api.europe-west2.gcp.tinybird.co TB_TOKEN=... tbkit deploy --target cloud --check
    """
    from .remote.tb import deploy as run

    run(target, project_dir, check=check_only, allow_destructive=allow_destructive_operations, on_output=click.echo)
    click.echo(f"{OK} tb {target} deploy {'check passed' if check_only else 'succeeded'}")


@main.command()
@size_options(min_rows=100, checked=False)
@click.option(
    "--http-series",
    type=click.Choice(["default", "all"]),
    default="default",
    show_default=True,
    help="Which series also run over HTTP: default (the default-parameter series) or all (the varied series too).",
)
@click.option("--calls", type=click.IntRange(min=5), default=200, show_default=True, help="Calls per series.")
@random_seed_option
@click.option("--no-peer", is_flag=True, help="Skip the project's peer (another engine) and its same-rows check.")
@click.option(
    "--work-dir",
    type=FOLDER,
    default=".tbkit/bench",
    show_default=True,
    help="Folder for the generated data (reused when it matches), the bench workspace and the results.",
)
@project_option
@click.option("--result", "result_path", type=FILE, help="JSON result (default: result-<scale>.json in --work-dir).")
@markdown_option
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="OLD.json NEW.json",
    help="Measure nothing: print every figure of two --result files side by side with its ratio (new ÷ old).",
)
def bench(
    scale, rows, http_series, calls, random_seed, no_peer, work_dir, project_dir, result_path, markdown_path, compare
):
    """Measure ingestion and endpoint latency at a scale, beside the project's peer on the same data.

    Generates (or reuses) the data with the project's data generator, loads it into a fresh embedded workspace,
    times bulk appends and the Events API in 10k-row batches, calls every endpoint with default and varied
    parameters in-process and over HTTP, measures `tbkit serve` start-up and peak memory, and, when the project's
    hook has a peer (another engine answering the same endpoints), times the same calls there, checking both
    return the same rows. --compare prints two results side by side instead, and takes no other option.

    \b
    Examples:
      tbkit bench --scale S
      tbkit bench --scale L --http-series all --markdown docs/bench-L.md
      tbkit bench --compare before-S.json after-S.json
    """
    ctx = click.get_current_context()
    if compare:
        if given := given_options(ctx, {"compare"}):
            raise click.UsageError(f"--compare measures nothing: it takes no {', '.join(given)}", ctx)
        from .bench.report import compare as side_by_side
        from .bench.result import load_result

        click.echo(side_by_side(load_result(compare[0]), load_result(compare[1])), nl=False)
        return
    if (scale is None) == (rows is None):
        raise click.UsageError("pass exactly one of --scale and --rows", ctx)
    from .bench.harness import BenchConfig, run
    from .bench.report import markdown

    config = BenchConfig(
        scale=scale,
        rows=rows,
        calls=calls,
        http_series=http_series,
        seed=random_seed,
        work_dir=work_dir,
        project_dir=project_dir,
        peer=not no_peer,
        command="tbkit " + " ".join(sys.argv[1:]),
        log=lambda message: click.echo(f"» {message}", err=True),
    )
    click.echo(markdown(run(config, result_path, markdown_path)))


@main.command()
@project_option
def lint(project_dir):
    """Check datafiles with `tb fmt --diff` and the project loader's validation.

    \b
    Example:
      tbkit lint
    """
    from .checks.lint import lint as run

    problems = run(project_dir)
    for problem in problems:
        click.echo(f"{FAIL} {problem}")
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) found")
    click.echo(f"{OK} {project_dir}: every datafile parses, validates and is formatted")


@main.command()
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
    from .checks.diff import diff as run

    report = run(None, project_dir, fixtures_dir, base, engine=shared_engine())
    click.echo(report.text(), nl=False)
    if markdown_path:
        markdown_path.write_text(report.markdown(), encoding="utf-8")
    sys.exit(1 if report.breaking and not allow_breaking else 0)


if __name__ == "__main__":
    main()
