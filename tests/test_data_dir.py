"""A data directory `tbkit serve` cannot use: one `Error:` line naming the path, exit 1, nothing deleted.

Each case runs `tbkit serve` as a process: chDB holds one data directory per process, so a test process
that already opened the shared test engine could not open another one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tbkit.server.process import ServeProcess

from . import ROOT
from .serving import ServerProcess

pytestmark = pytest.mark.slow
LOCK = ".tbkit.lock"  # rewritten by every start (it names the process holding the directory)


def serve(data_dir: Path) -> subprocess.CompletedProcess:
    """`tbkit serve` on `data_dir`, expected to stop before serving (bounded: it must not start)."""
    command = ServeProcess(data_dir, ROOT / "tinybird", "admin-token-for-tests").command()
    env = dict(os.environ, TB_CLI_TELEMETRY_OPTOUT="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder` (symbolic links as their target) with a hash of its content."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file() and path.name != LOCK:
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_refused(result: subprocess.CompletedProcess, *named: str) -> str:
    """Exit 1 and one `Error:` line naming every string of `named`; that line."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def used(tmp_path_factory) -> Path:
    """A data directory a server has run on (and stopped): tables, metadata and tokens on disk."""
    data_dir = tmp_path_factory.mktemp("used") / "data"
    server = ServerProcess(data_dir).start()
    assert server.stop() == 0
    return data_dir


@pytest.fixture
def copy(used: Path, tmp_path: Path) -> Path:
    shutil.copytree(used, tmp_path / "data", symlinks=True)
    return tmp_path / "data"


def test_a_file_where_the_data_directory_should_be_created(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file\n")
    result = serve(blocker / "data")
    assert_refused(result, str(blocker / "data"), "Not a directory")
    assert blocker.read_text() == "a file\n"


def test_a_file_given_as_the_data_directory_is_a_usage_error(tmp_path):
    """Click's own check of --data-dir catches it first: a usage error (exit 2) naming the path."""
    blocker = tmp_path / "data"
    blocker.write_text("a file\n")
    result = serve(blocker)
    assert result.returncode == 2 and str(blocker) in result.stderr and "is a file" in result.stderr
    assert blocker.read_text() == "a file\n"


def test_a_file_where_the_engine_keeps_its_folder(copy):
    shutil.rmtree(copy / "chdb")
    (copy / "chdb").write_text("not chDB's folder\n")
    before = files(copy)
    assert_refused(serve(copy), str(copy / "chdb"), "is a file")
    assert files(copy) == before


def test_tokens_that_are_not_json(copy):
    (copy / "tokens.json").write_text("{not json")
    before = files(copy)
    assert_refused(serve(copy), str(copy / "tokens.json"), "not valid JSON")
    assert files(copy) == before


@pytest.mark.parametrize(
    ("folder", "text", "said"),
    [
        ("main", '{"id": "w1", "deployments": [', "line 1, column 30"),  # cut short, as by a crash mid-write before
        ("workspaces/w2", "[1, 2]", "must hold a JSON object"),
    ],
)
def test_a_workspace_record_that_is_not_json(copy, folder, text, said):
    record = copy / folder / "workspace.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(text)
    before = files(copy)
    assert_refused(serve(copy), str(record), said)
    assert files(copy) == before


def test_a_corrupted_chdb_metadata_file(copy):
    metadata = next(path for path in (copy / "chdb" / "store").rglob("customer_events.sql"))
    metadata.write_text("ATTACH TABLE _ ((( not a definition\n")
    before = files(copy)
    line = assert_refused(serve(copy), str(copy / "chdb"), "customer_events.sql")
    assert "nothing was changed or deleted" in line
    assert files(copy) == before


def test_a_second_server_on_the_same_data_directory(copy):
    first = ServerProcess(copy).start()
    try:
        before = files(copy)
        line = assert_refused(serve(copy), str(copy), f"in use by process {first.process.pid}")
        assert "another tbkit serve" in line
        assert files(copy) == before
        assert first.process.poll() is None  # the first server still serves
    finally:
        assert first.stop() == 0
    again = ServerProcess(copy).start()  # the lock went with the first server
    assert again.stop() == 0


def _chattr(flag: str, path: Path) -> bool:
    return shutil.which("chattr") is not None and subprocess.run(["chattr", flag, str(path)]).returncode == 0


@pytest.mark.parametrize("how", ["mode 0500", "chattr +i"])
def test_a_data_directory_that_is_not_writable(tmp_path, how):
    """Permission bits do not stop root, so as root the directory is made immutable (chattr +i, which stops
    root too) instead; each variant is skipped where it cannot make the directory read-only."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("kept\n")
    if how == "mode 0500":
        if os.geteuid() == 0:
            pytest.skip("running as root, which permission bits do not stop (the chattr +i variant covers it)")
        data_dir.chmod(0o500)
    elif not _chattr("+i", data_dir):
        pytest.skip("chattr +i is not available here (needs root and a file system with the immutable flag)")
    try:
        assert_refused(serve(data_dir), str(data_dir), "not writable")
    finally:
        if how == "mode 0500":
            data_dir.chmod(0o700)
        else:
            _chattr("-i", data_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == ["keep.txt"]
