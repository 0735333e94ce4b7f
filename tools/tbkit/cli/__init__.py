"""The `tbkit` command line: thin commands that parse options, call the library and hand its report to `console`.

- `options.py`: the options several commands take, each defined once (the server's made from `ServerConfig`).
- `checking.py`: check (and check --watch), audit, diff, lint, export-tests.
- `serving.py`: serve, dev, tokens, seed, deploy.
- `data.py`: datagen and bench.

Every TbkitError becomes `Error: <message>` and exit code 1 here, in one place.
"""

from __future__ import annotations

import click

from .. import __version__
from ..errors import TbkitError
from . import checking, data, serving
from .options import Shared

__all__ = ["Shared", "main"]


class TbkitGroup(click.Group):
    """Turns every TbkitError into `Error: <message>` and exit code 1, with no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TbkitError as e:
            raise click.ClickException(str(e)) from None


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


for _command in (
    checking.check,
    checking.audit,
    checking.diff,
    checking.lint,
    checking.export_tests,
    serving.serve,
    serving.dev,
    serving.tokens,
    serving.seed,
    serving.deploy,
    data.datagen,
    data.bench,
):
    main.add_command(_command)
