"""The commands that serve, load or deploy a project: serve, dev, tokens, seed, deploy."""

from __future__ import annotations

from pathlib import Path

import click

from .. import console
from ..project.layout import Layout
from .options import (
    FOLDER,
    Target,
    data_dir_option,
    layout_options,
    project_option,
    serve_options,
    server_config,
    token_option,
)


@click.command()
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
      curl "http://localhost:7181/v0/pipes/top_pages.json?token=$ADMIN_TOKEN"
    """
    from ..server import serve as run

    run(server_config(project_dir, data_dir, **options), on_ready=console.serving)


@click.command()
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

    from ..dev.loop import serve as run

    layout = Layout.at(project_dir, fixtures_dir)
    with tempfile.TemporaryDirectory(prefix="tbkit-dev-") as fresh:
        config = server_config(project_dir, data_dir or Path(fresh), **options)
        run(config, layout, on_ready=console.serving, on_result=lambda result: None, on_report=console.dev_run)


@click.command()
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
    from ..project.datafiles import load_project
    from ..server.workspaces.tokens import TokenStore, listing

    for line in listing(TokenStore.load(data_dir, load_project(project_dir))):
        click.echo(line)


@click.command()
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
    from ..engine.seeding import seed_workspace

    layout = Layout.at(project_dir, fixtures_dir)
    console.appended(seed_workspace(layout, data_dir, workspace, list(files), datasource, console.progress_bar))


@click.command()
@project_option
@click.option(
    "--target",
    type=Target(deployable=True),
    default="local",
    show_default=True,
    help="Where: local (Tinybird Local on TB_LOCAL_HOST:TB_LOCAL_PORT, as `tb deploy`); cloud (TB_HOST/TB_TOKEN); "
    "or the URL of a Tinybird API (with --token).",
)
@token_option
@click.option("--check", "check_only", is_flag=True, help="Validate the deployment without applying it.")
@click.option("--allow-destructive-operations", is_flag=True, help="Allow changes that drop or recreate data.")
def deploy(project_dir, target, token, check_only, allow_destructive_operations):
    """Deploy the datafiles with the real `tb` CLI, streaming its output.

    --target local (the default, as `tb deploy`'s) runs `tb --local deploy` against Tinybird Local
    (TB_LOCAL_HOST, TB_LOCAL_PORT, default localhost:7181); --target cloud runs `tb --cloud deploy` with
    TB_HOST and TB_TOKEN from the environment or .env / .env.local; a URL runs `tb --cloud --host URL
    deploy` with --token (a Tinybird region's API host, or `tbkit serve` rehearsing a Cloud deployment).

    \b
    Examples:
      tbkit deploy
      TB_HOST=https://api.europe-west2.gcp.tinybird.co TB_TOKEN=... tbkit deploy --target cloud --check
      tbkit deploy --target http://127.0.0.1:7181 --token $ADMIN_TOKEN --check
    """
    from ..remote.tb import deploy as run

    run(
        target,
        project_dir,
        check=check_only,
        allow_destructive=allow_destructive_operations,
        on_output=click.echo,
        token=token,
    )
    click.echo(f"{console.OK} tb {target} deploy {'check passed' if check_only else 'succeeded'}")
