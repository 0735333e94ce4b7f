"""A copy of the repository's project and fixtures to change freely, and the CLI run in it in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from tbkit.cli import Shared, main

from . import ROOT


def copy_project(root: Path) -> Path:
    """Copy tinybird/ (links kept, exported tests left out) and fixtures/ into `root`; `root`."""
    shutil.copytree(ROOT / "tinybird", root / "tinybird", symlinks=True, ignore=shutil.ignore_patterns("tests"))
    shutil.copytree(ROOT / "fixtures", root / "fixtures")
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
