"""The options several commands take, each defined once, with one meaning per option name.

`--target` is where a command works (the embedded engine, Tinybird Local, Tinybird Cloud or the URL of a Tinybird
API) wherever it appears, and `--token` (`$TB_TOKEN`) the token of that Tinybird; the server's own admin token is
`--admin-token`. The server's options are made from `ServerConfig`, so each default is written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from ..errors import TbkitError

if TYPE_CHECKING:
    from ..engine import Engine
    from ..server import ServerConfig

FOLDER = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)
TARGETS = ("embedded", "local", "cloud")


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


class Size(click.ParamType):
    """A size in bytes, given as `2GiB`, `500MB` or `300000000`; a usage error says what is expected."""

    name = "size"

    def convert(self, value, param, ctx):
        from ..sizes import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except TbkitError as e:
            self.fail(str(e), param, ctx)


class Target(click.ParamType):
    """Where a command works: `embedded`, `local`, `cloud` or the URL of a Tinybird API (`deployable` leaves out
    `embedded`, which has nothing to deploy to)."""

    name = "target"

    def __init__(self, deployable: bool = False):
        self.choices = TARGETS[1:] if deployable else TARGETS

    def convert(self, value, param, ctx):
        if value in self.choices or str(value).startswith(("http://", "https://")):
            return value
        self.fail(f"{value!r}: use {', '.join(self.choices)} or the URL of a Tinybird API (http:// or https://)")


TARGET_HELP = (
    "Where: embedded (a fresh workspace seeded with the fixtures); local (Tinybird Local on TB_LOCAL_HOST:"
    "TB_LOCAL_PORT); cloud (TB_HOST/TB_TOKEN); or the URL of a Tinybird API (with --token)."
)
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
target_option = click.option("--target", type=Target(), default="embedded", show_default=True, help=TARGET_HELP)
token_option = click.option(
    "--token", envvar="TB_TOKEN", help="Token of the Tinybird workspace --target names (default: $TB_TOKEN)."
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
SCALE_HELP = "A named scale of the project's data generator, e.g. S, M, L (check --budgets: also budgets.yaml's)."


def layout_options(function: Callable) -> Callable:
    """--project and --fixtures, shared by the commands that read the project and its fixtures."""
    return project_option(fixtures_option(function))


def exactly_one_of(*names: str) -> Callable[[Callable], Callable]:
    """Decorator: of the command's options `names` (declared below it), exactly one must be given.

    Checked by click while it parses the command line, so a mistake is a usage error (exit code 2) with one
    message, `pass exactly one of --a and --b`, before the command runs.
    """

    def decorator(function: Callable) -> Callable:
        params = {param.name: param for param in getattr(function, "__click_params__", [])}
        group = [params[name] for name in names]
        message = "pass exactly one of " + " and ".join(max(param.opts, key=len) for param in group)

        def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
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


def size_options(min_rows: int, checked: bool = True) -> Callable[[Callable], Callable]:
    """--scale or --rows: the size of generated data, for datagen and bench; exactly one unless not `checked` (the
    command checks it)."""

    def decorator(function: Callable) -> Callable:
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
    return [
        max(param.opts, key=len)
        for param in ctx.command.params
        if param.name not in leaving_out and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
    ]


# -- the server's options, made from ServerConfig --------------------------------------------------------------


def _server_option(config_field: dataclasses.Field) -> Callable[[Callable], Callable]:
    """The click option of a ServerConfig field made with `server.service.option()`."""
    spec = config_field.metadata["option"]
    name = "--" + config_field.name.replace("_", "-")
    help_text = spec["help"]
    if spec["share"] is not None:  # how much the default is on this machine
        from ..sizes import format_size, share_of_memory

        help_text = help_text.rstrip(".") + f", {format_size(share_of_memory(spec['share']))} here."
    kind, default, minimum = spec["kind"], config_field.default, spec["minimum"]
    if kind == "switch":
        return click.option(f"{name}/--no-{name[2:]}", config_field.name, default=None, help=help_text)
    if kind == "flag":
        return click.option(name, is_flag=True, help=help_text)
    annotation = str(config_field.type)  # a string: the module has `from __future__ import annotations`
    if kind == "size":
        kind_type: Any = Size()
    elif annotation.startswith("float"):
        kind_type = click.FloatRange(min=minimum) if minimum is not None else float
    elif annotation.startswith("int"):
        kind_type = click.IntRange(min=minimum) if minimum is not None else int
    else:
        kind_type = str
    return click.option(name, type=kind_type, default=default, show_default=default is not None, help=help_text)


def serve_options(function: Callable) -> Callable:
    """The server's options (every ServerConfig field made with `option()`), and --verbose, for serve and dev."""
    from ..server import ServerConfig

    function = click.option("-v", "--verbose", is_flag=True, help="Log every request (tokens redacted).")(function)
    for config_field in reversed(dataclasses.fields(ServerConfig)):
        if "option" in config_field.metadata:
            function = _server_option(config_field)(function)
    return function


def server_config(project_dir: Path, data_dir: Path, verbose: bool, **options: Any) -> ServerConfig:
    """The server's configuration from the serve options; logging set up as --verbose asks."""
    import logging

    from ..server import ServerConfig

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    return ServerConfig(project_dir=project_dir, data_dir=data_dir, **options)
