"""The tests that run `tb` are hermetic: a developer's own tb state in the working tree or the shell changes nothing.

`tb --cloud --host http://127.0.0.1:7181 --token ... deploy --check` (the README's rehearsal against `tbkit serve`)
records the served workspace, "main", in tinybird/.tinyb; `tb secret set` and developers write tinybird/.env.local;
shells export TB_HOST and TB_TOKEN. The tests copy the project without those files (tests/repo_copy.py) and run
with no TB_* setting they did not set themselves (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from . import ROOT

# The tests that failed with a .tinyb naming "main" in the working tree: `tb --local` deployed to the served
# workspace, which has the project already ("No changes to be deployed" where "is live" is expected).
TB_LOCAL_TESTS = (
    "test_tb_deploy_succeeds_then_has_no_changes",
    "test_check_target_local_passes_every_case",
    "test_tbkit_deploy_streams_tb_output",
    "test_tb_dev_builds_rebuilds_on_change_and_stops_on_sigint",
)
# The tests that failed with TB_TOKEN and TB_LOCAL_HOST exported in the shell: a token turns tb's git branch
# workspaces off, and Tinybird Local was looked for on the shell's host.
TB_VARIABLE_TESTS = (
    "test_deploy_without_tinybird_local_says_what_to_do",
    "test_check_target_local_on_a_git_branch_finds_the_branch_workspace",
)
REHEARSAL_HOST = "http://127.0.0.1:7181"
NOWHERE = "http://127.0.0.1:9"  # nothing answers: a test that used these settings would fail


def copy_working_tree(root: Path) -> Path:
    """The files git tracks, and those it would (new, not ignored), as they are in the working tree (links kept),
    into `root`."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, root / name
        if source.is_symlink() or source.is_file():  # a file deleted in the working tree is still listed
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return root


def test_a_developers_tinyb_env_files_and_tb_variables_do_not_reach_the_tb_tests(tmp_path):
    repo = copy_working_tree(tmp_path / "repo")
    project = repo / "tinybird"
    token = "p.developers-own-token"
    tinyb = {"host": REHEARSAL_HOST, "id": "main", "name": "main", "token": token}
    tinyb |= {"tokens": {REHEARSAL_HOST: token}, "version": version("tinybird")}
    (project / ".tinyb").write_text(json.dumps(tinyb, indent=4))  # as tb writes it
    (project / ".env.local").write_text(f"TB_TOKEN=p.bogus\nTB_HOST={NOWHERE}\nTB_LOCAL_PORT=9\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # not this run's worker
    env |= {"TB_HOST": NOWHERE, "TB_TOKEN": "p.bogus", "TB_LOCAL_HOST": "127.0.0.1", "TB_LOCAL_PORT": "9"}
    env["PYTHONPATH"] = str(repo / "tools")  # the copy's tbkit
    tests = [f"tests/test_tb_local.py::{name}" for name in (*TB_LOCAL_TESTS, *TB_VARIABLE_TESTS)]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider"]
    command += ["--basetemp", str(tmp_path / "basetemp"), *tests]
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert f"{len(tests)} passed" in result.stdout, result.stdout[-2000:]
