"""The commands of generated data: datagen, and bench (which measures on it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import console
from .options import (
    FILE,
    FOLDER,
    given_options,
    json_option,
    markdown_option,
    project_option,
    random_seed_option,
    size_options,
)


@click.command()
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
    from ..datagen import workload_of

    workload = workload_of(project_dir, "tbkit datagen")
    data = workload.generate(out, workload.rows(scale) if scale else rows, random_seed, workers)
    if as_json:
        click.echo(json.dumps(data.to_dict(), indent=2))
        return
    for name, file in data.files.items():
        click.echo(
            f"{console.OK} {name:<28} {file.rows:>12,} rows  {file.malformed:>8,} malformed  {file.bytes:>14,} bytes"
        )
    click.echo(f"wrote {out} in {data.seconds:.1f}s")


@click.command()
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
        from ..bench.report import compare as side_by_side
        from ..bench.result import load_result

        click.echo(side_by_side(load_result(compare[0]), load_result(compare[1])), nl=False)
        return
    if (scale is None) == (rows is None):
        raise click.UsageError("pass exactly one of --scale and --rows", ctx)
    from ..bench.harness import BenchConfig, run
    from ..bench.report import markdown

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
        log=console.message,
    )
    click.echo(markdown(run(config, result_path, markdown_path)))
