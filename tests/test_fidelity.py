"""Every `tb --local` command of the matrix in tests/fidelity.py, with tb 5.0.3 and tb 4.6.13 (one test each, so
they run in parallel), each against a fresh `tbkit serve`; writes docs/FIDELITY.md from both columns of the run,
then fails if any row that is not marked "not supported" failed (or a "not supported" row did not fail saying why).

tb 4.6.13 comes from .venv-tb46 (`make test` installs it); without it its column says so and is skipped.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tbkit.remote import tb as tbcli

from . import ROOT
from .fidelity import Outcome, Session, render, rows, run_row
from .repo_copy import copy_project
from .serving import ServerProcess

pytestmark = pytest.mark.slow

TB46 = ROOT / ".venv-tb46" / "bin" / "tb"
REPORT = ROOT / "docs" / "FIDELITY.md"
TEST_NAME = "tests/test_fidelity.py::test_every_tb_local_command"  # one test per tb version


def tb_version(tb: Path) -> str:
    done = subprocess.run([str(tb), "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.split("version ")[-1].split()[0]


def run_matrix(tb: Path, version: str, base: Path) -> tuple[list[Outcome], float]:
    base.mkdir(parents=True)
    server = ServerProcess(base / "data", None).start()
    try:
        # a copy: tb writes into the project folder, and the original stays clean
        session = Session(tb, version, server, copy_project(base / "copy"), base / "work")
        started = time.monotonic()
        outcomes = [run_row(session, row) for row in rows()]
        return outcomes, time.monotonic() - started
    finally:
        server.stop()


VERSIONS = ("5.0.3", "4.6.13")
COLUMNS = ROOT / "reports" / "fidelity"  # each version's outcomes of this run, merged into REPORT


def save_column(version: str, outcomes: list[Outcome] | str, run_id: str) -> None:
    COLUMNS.mkdir(parents=True, exist_ok=True)
    content = outcomes if isinstance(outcomes, str) else [asdict(outcome) for outcome in outcomes]
    (COLUMNS / f"{version}.json").write_text(json.dumps({"run": run_id, "outcomes": content}))


def load_column(version: str, run_id: str) -> list[Outcome] | str:
    path = COLUMNS / f"{version}.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("run") != run_id:
        return "not run in the run that wrote this file (run both columns: `pytest tests/test_fidelity.py`)"
    outcomes = saved["outcomes"]
    return outcomes if isinstance(outcomes, str) else [Outcome(**outcome) for outcome in outcomes]


@pytest.fixture(scope="session")
def run_id(request) -> str:
    """One id per pytest run, the same in every xdist worker, so columns of an earlier run are never merged."""
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["testrunuid"] if workerinput else f"local-{os.getpid()}"


@pytest.mark.parametrize("version", VERSIONS)
def test_every_tb_local_command(version, tmp_path, run_id):
    """One column of the matrix (the versions run in parallel under xdist); the report merges both columns."""
    matrix = rows()
    tb = Path(tbcli.tb_executable()) if version == "5.0.3" else TB46
    outcomes: list[Outcome] | str
    timing = 0.0
    if tb.exists():
        assert tb_version(tb) == version
        outcomes, timing = run_matrix(tb, version, tmp_path / version)
    else:
        outcomes = f"not run: {TB46.relative_to(ROOT)} is absent (`make test` installs it)"
    with open(COLUMNS.parent / "fidelity.lock", "a") as lock:  # the other column may be merging right now
        COLUMNS.mkdir(parents=True, exist_ok=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        save_column(version, outcomes, run_id)
        REPORT.write_text(render({v: load_column(v, run_id) for v in VERSIONS}, matrix, TEST_NAME))

    if isinstance(outcomes, str):
        pytest.skip(f"tb {version} column: {outcomes}")
    failures = [
        f"tb {version}: {row.shown}: {outcome.detail}\n{outcome.log.strip()[-1500:]}"
        for row, outcome in zip(matrix, outcomes, strict=True)
        if outcome.failed
    ]
    assert not failures, f"{len(failures)} rows failed in {timing:.0f} s; see {REPORT.name}\n\n" + "\n\n".join(failures)
