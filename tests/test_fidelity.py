"""Every `tb --local` command of the matrix in tests/fidelity.py, with tb 5.0.3 and tb 4.6.13, each against a
fresh `tbkit serve`; writes docs/FIDELITY.md from the outcomes on every run, then fails if any row that is
not marked "not supported" failed (or a "not supported" row did not fail saying why).

tb 4.6.13 comes from .venv-tb46 (`make test` installs it); without it its column says so and is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tbkit import tbcli

from . import ROOT
from .fidelity import Outcome, Session, render, rows, run_row
from .serving import ServerProcess

pytestmark = pytest.mark.slow

TB46 = ROOT / ".venv-tb46" / "bin" / "tb"
REPORT = ROOT / "docs" / "FIDELITY.md"
TEST_NAME = "tests/test_fidelity.py::test_every_tb_local_command"


def tb_version(tb: Path) -> str:
    done = subprocess.run([str(tb), "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.split("version ")[-1].split()[0]


def copy_project(root: Path) -> Path:
    """A copy of the project and its fixtures (tb writes into the project folder; the original stays clean)."""
    shutil.copytree(
        ROOT / "tinybird", root / "tinybird", symlinks=True, ignore=shutil.ignore_patterns("tests", ".tinyb")
    )
    shutil.copytree(ROOT / "fixtures", root / "fixtures")
    return root


def run_matrix(tb: Path, version: str, base: Path) -> tuple[list[Outcome], float]:
    base.mkdir(parents=True)
    server = ServerProcess(base / "data", None).start()
    try:
        session = Session(tb, version, server, copy_project(base / "copy"), base / "work")
        started = time.monotonic()
        outcomes = [run_row(session, row) for row in rows()]
        return outcomes, time.monotonic() - started
    finally:
        server.stop()


def test_every_tb_local_command(tmp_path):
    matrix = rows()
    tb50 = Path(tbcli.tb_executable())
    results: dict[str, list[Outcome] | str] = {}
    timings: dict[str, float] = {}
    results["5.0.3"], timings["5.0.3"] = run_matrix(tb50, "5.0.3", tmp_path / "tb50")
    assert tb_version(tb50) == "5.0.3"
    if TB46.exists():
        assert tb_version(TB46) == "4.6.13"
        results["4.6.13"], timings["4.6.13"] = run_matrix(TB46, "4.6.13", tmp_path / "tb46")
    else:
        results["4.6.13"] = f"not run: {TB46.relative_to(ROOT)} is absent (`make test` installs it)"
    REPORT.write_text(render(results, matrix, TEST_NAME))

    failures = []
    for version, outcomes in results.items():
        if isinstance(outcomes, str):
            continue
        for row, outcome in zip(matrix, outcomes, strict=True):
            if outcome.failed:
                failures.append(f"tb {version}: {row.shown}: {outcome.detail}\n{outcome.log.strip()[-1500:]}")
    summary = ", ".join(f"tb {v} {t:.0f} s" for v, t in timings.items())
    if isinstance(results["4.6.13"], str):
        print(f"tb 4.6.13 column skipped: {results['4.6.13']}")  # noqa: T201 (shown with -rA / on failure)
    assert not failures, f"{len(failures)} rows failed ({summary}); see {REPORT.name}\n\n" + "\n\n".join(failures)
