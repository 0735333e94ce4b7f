"""Run the installed `tb` CLI (Tinybird Forward): formatting checks, deploys and tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import TbCommandError


def tb_executable() -> str:
    """The `tb` next to this Python (the one this package installed), or the first on PATH."""
    beside = Path(sys.executable).parent / "tb"
    if beside.is_file():
        return str(beside)
    found = shutil.which("tb")
    if not found:
        raise TbCommandError(
            "the Tinybird CLI `tb` is not installed: run `pip install tinybird` (it comes with tbkit's "
            "dependencies; `make check` sets it up in .venv)"
        )
    return found


def tb_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `tb` runs with: telemetry off, plus `extra`."""
    env = dict(os.environ)
    env["TB_CLI_TELEMETRY_OPTOUT"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class FormatProblem:
    """A datafile that `tb fmt --diff` would change, with the diff."""

    path: Path
    diff: str


def fmt_diff(paths: list[Path], cwd: Path | None = None) -> list[FormatProblem]:
    """Run `tb fmt --diff` on each datafile; the files it would reformat, with their diffs."""
    tb = tb_executable()
    problems = []
    for path in paths:
        run = subprocess.run(
            [tb, "fmt", "--diff", str(path)],
            capture_output=True,
            text=True,
            env=tb_environment(),
            cwd=cwd,
            timeout=60,
        )
        if run.returncode != 0:
            problems.append(FormatProblem(path, (run.stdout + run.stderr).strip()))
    return problems
