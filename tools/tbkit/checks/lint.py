"""`tbkit lint`: `tb fmt --diff` over every datafile plus the project loader's own validation."""

from __future__ import annotations

from pathlib import Path

from ..errors import ProjectError
from ..project.datafiles import load_project
from ..remote import tb as tbcli


def datafiles(project_dir: Path) -> list[Path]:
    """Every `.datasource` and `.pipe` file `tb` reads (two levels deep)."""
    found = [p for level in range(2) for p in project_dir.glob("*/" * level + "*")]
    return sorted(p for p in found if p.suffix in (".datasource", ".pipe"))


def lint(project_dir: Path) -> list[str]:
    """Problems found, one readable message each; [] when the project is clean."""
    problems: list[str] = []
    try:
        load_project(project_dir)
    except ProjectError as e:
        problems.append(str(e))
    for problem in tbcli.fmt_diff(datafiles(project_dir)):
        problems.append(f"{problem.path}: not formatted as `tb fmt` formats it\n{problem.diff}")
    return problems
