"""A copy of the repository's project and fixtures to change freely, and the CLI run in it in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from tbkit.cli import Shared, main
from tbkit.project.config import find_config

from . import ROOT

# What `tb` (and tbkit, reading them as `tb` does) takes from the project folder besides the datafiles: the host,
# workspace and token recorded in .tinyb (`tb login`, `tb --host ... --token ...`), settings and secrets in .env and
# .env.local, and the project config `tb create` writes (tinybird.config.json, or tinybird.json). A developer's
# copies of these would point the tests' `tb` at their workspace, so no copy takes them; a test that needs one
# writes its own.
TB_STATE = (".tinyb", ".env", ".env.local", "tinybird.config.json", "tinybird.json")


def copy_project(root: Path, source: Path = ROOT, *, leave_out: tuple[str, ...] = ()) -> Path:
    """Copy tinybird/ (links kept; exported tests, tb state and `leave_out` left out) and fixtures/ of `source`
    into `root`, with `source`'s tbkit configuration as a tbkit.yaml (its python-path absolute, so the copy's
    hook imports `source`'s package); `root`."""
    ignore = shutil.ignore_patterns("tests", *TB_STATE, *leave_out)
    shutil.copytree(source / "tinybird", root / "tinybird", symlinks=True, ignore=ignore)
    shutil.copytree(source / "fixtures", root / "fixtures")
    config = find_config(source / "tinybird")
    if config.workload:
        settings = {"workload": config.workload, "python-path": [str(folder) for folder in config.python_path]}
        (root / "tbkit.yaml").write_text(yaml.safe_dump(settings))
    return root


# The engine the in-process commands share with the tests (set by conftest's `engine` fixture while it is open).
SHARED = Shared()


def invoke(args: list[str], **kwargs) -> Result:
    """`tbkit <args>` in-process, beside the tests' engine, as click's test runner reports it."""
    return CliRunner().invoke(main, args, obj=SHARED, **kwargs)


def run(*args: str) -> Result:
    """`tbkit <args>` in-process, beside the tests' engine, exceptions raised rather than caught."""
    return CliRunner().invoke(main, list(args), obj=SHARED, catch_exceptions=False)


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there) by `new` in a file."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
