"""The real `tb` CLI against `tbkit serve --local-api`, and tbkit's deploys and checks through it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from tbkit.errors import TbCommandError
from tbkit.remote import tb as tbcli

from . import ROOT
from .repo_copy import copy_project, edit, invoke
from .serving import ServerProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """`tbkit serve --local-api`, standing in for Tinybird Local."""
    running = ServerProcess(tmp_path_factory.mktemp("local") / "data", None, "--local-api").start()
    yield running
    running.stop()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the project and fixtures, so tests can break datafiles and write tb test files."""
    return copy_project(tmp_path)


NESTED_WARNING = "nested deeper than the used scan depth"


def tb_env(local) -> dict[str, str]:
    return dict(os.environ, TB_LOCAL_HOST="127.0.0.1", TB_LOCAL_PORT=str(local.port), TB_CLI_TELEMETRY_OPTOUT="1")


def tb(local, project: Path, *args: str) -> subprocess.CompletedProcess:
    command = [tbcli.tb_executable(), "--local", *args]
    result = subprocess.run(command, cwd=project, env=tb_env(local), capture_output=True, text=True, timeout=300)
    assert NESTED_WARNING not in result.stdout + result.stderr  # the layout leaves tb nothing to warn about
    return result


def cloud(server, project: Path, *args: str) -> subprocess.CompletedProcess:
    """`tb --cloud --host <server> --token <admin>`, as the CD workflow runs it."""
    command = [tbcli.tb_executable(), "--cloud", "--host", server.url, "--token", server.token, *args]
    return subprocess.run(command, cwd=project, env=tb_env(server), capture_output=True, text=True, timeout=300)


def endpoint(server, name: str) -> dict:
    answer = requests.get(f"{server.url}/v0/pipes/{name}.json", params={"token": server.token}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"][0]


def tbkit(local, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TB_LOCAL_HOST="127.0.0.1", TB_LOCAL_PORT=str(local.port))
    command = [sys.executable, "-m", "tbkit.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_tb_deploy_succeeds_then_has_no_changes(local, repo):
    first = tb(local, repo / "tinybird", "deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "is live" in first.stdout and "customer_segment_lookup" in first.stdout
    again = tb(local, repo / "tinybird", "deploy")
    assert again.returncode == 0 and "No changes" in again.stdout


def test_a_broken_datafile_fails_the_deploy_naming_the_file(local, repo):
    pipe = repo / "tinybird" / "endpoints" / "customer_cltv.pipe"
    pipe.write_text(pipe.read_text().replace("FROM customer_cltv_mv FINAL", "FROM nowhere FINAL"))
    result = tb(local, repo / "tinybird", "deploy")
    assert result.returncode != 0
    assert "endpoints/customer_cltv.pipe" in result.stdout
    assert "'nowhere'" in result.stdout


def test_changing_a_datasource_needs_allow_destructive_operations(local, repo):
    assert tb(local, repo / "tinybird", "deploy").returncode == 0
    datasource = repo / "tinybird" / "datasources" / "customer_demographics.datasource"
    datasource.write_text(datasource.read_text().replace("`age` UInt8", "`age` UInt16"))
    refused = tb(local, repo / "tinybird", "deploy")
    assert refused.returncode != 0 and "allow-destructive-operations" in refused.stdout
    allowed = tb(local, repo / "tinybird", "deploy", "--allow-destructive-operations")
    assert allowed.returncode == 0, allowed.stdout


def test_check_target_local_passes_every_case(local, repo):
    result = tbkit(local, repo, "check", "--target", "local")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed, 0 failed" in result.stdout and "on local (" in result.stdout
    again = tbkit(local, repo, "check", "--target", "local")  # starts again from empty datasources
    assert again.returncode == 0, again.stdout
    summary = [line.split(" in ")[0] for line in (result.stdout.splitlines()[-1], again.stdout.splitlines()[-1])]
    assert summary[0] == summary[1]


def test_tb_test_run_passes_on_the_exported_tests(local, repo):
    exported = tbkit(local, repo, "export-tests")
    assert exported.returncode == 0, exported.stderr
    result = tb(local, repo / "tinybird", "test", "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ 6/6 passed" in result.stdout


def test_tbkit_deploy_streams_tb_output(local, repo):
    result = tbkit(local, repo, "deploy", "--target", "local")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Deployment" in result.stdout and "tb local deploy succeeded" in result.stdout


def test_deploy_without_tinybird_local_says_what_to_do(repo, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.setenv("TB_LOCAL_PORT", str(free_port()))
    result = invoke(["deploy", "--target", "local"])
    assert result.exit_code == 1
    assert "Tinybird Local is not running at http://localhost:" in result.output
    assert "tbkit serve --local-api" in result.output


def test_deploy_to_cloud_without_credentials_says_what_to_set(repo, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.delenv("TB_HOST", raising=False)
    monkeypatch.delenv("TB_TOKEN", raising=False)
    result = invoke(["deploy", "--target", "cloud"])
    assert result.exit_code == 1
    assert "TB_HOST and TB_TOKEN are not set" in result.output
    (repo / ".env.local").write_text("TB_HOST=https://api.example.invalid\n")
    result = invoke(["deploy", "--target", "cloud"])
    assert "TB_TOKEN is not set" in result.output


def test_env_files_are_read_as_tb_reads_them(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("TB_HOST=https://from-env\nTB_TOKEN=one\n")
    (tmp_path / ".env.local").write_text("TB_TOKEN=two\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TB_HOST", raising=False)
    monkeypatch.delenv("TB_TOKEN", raising=False)
    assert tbcli.cloud_credentials(tmp_path) == ("https://from-env", "two")
    monkeypatch.setenv("TB_TOKEN", "three")
    assert tbcli.cloud_credentials(tmp_path) == ("https://from-env", "three")
    assert tbcli.local_address({"TB_LOCAL_HOST": "http://box", "TB_LOCAL_PORT": "9000"}) == "http://box:9000"
    assert tbcli.local_address({}) == "http://localhost:7181"


def test_a_missing_tb_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(tbcli.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TbCommandError, match="`tb` is not installed"):
        tbcli.tb_executable()


def test_check_target_cloud_refuses_to_seed_unless_asked(local, repo):
    env = dict(os.environ, TB_HOST=local.url)
    admin = local.data_dir / "tokens.json"
    env["TB_TOKEN"] = json.loads(admin.read_text())["admin"]
    command = [sys.executable, "-m", "tbkit.cli", "check", "--target", "cloud", "--endpoint", "cltv_summary"]
    unseeded = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert "not seeding" in unseeded.stderr and "--seed" in unseeded.stderr
    seeded = subprocess.run([*command, "--seed"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "emptying every datasource" in seeded.stderr


CHOSEN_TOKEN = "p.admin-token-chosen-by-the-user"
ROUNDING = ("avg(customer_cltv)), 2) AS average_cltv", "avg(customer_cltv)), 0) AS average_cltv")


@pytest.fixture
def served(tmp_path):
    """`tbkit serve --admin-token <a token of the user's choosing>`, whose main workspace tests deploy to."""
    running = ServerProcess(tmp_path / "served", CHOSEN_TOKEN).start()
    yield running
    running.stop()


def test_tbkit_deploy_to_a_url_checks_then_deploys_with_the_token(served, repo, monkeypatch):
    """`tbkit deploy --target <URL> --token T` is `tb --cloud --host <URL> --token T deploy`: here the served
    workspace rehearses a Cloud deployment; without a token it says so before running tb."""
    monkeypatch.chdir(repo)
    edit(repo / "tinybird" / "endpoints" / "cltv_summary.pipe", *ROUNDING)
    checked = invoke(["deploy", "--target", served.url, "--token", served.token, "--check"])
    assert checked.exit_code == 0, checked.output
    assert f"tb {served.url} deploy check passed" in checked.output
    deployed = invoke(["deploy", "--target", served.url, "--token", served.token])
    assert deployed.exit_code == 0, deployed.output
    listed = requests.get(f"{served.url}/v1/deployments", params={"token": served.token}, timeout=30).json()
    assert [(d["id"], d["live"]) for d in listed["deployments"]] == [("1", True)]
    monkeypatch.delenv("TB_TOKEN", raising=False)
    missing = invoke(["deploy", "--target", served.url])
    assert missing.exit_code == 1 and f"a token is needed to deploy to {served.url}" in missing.output


def append_transactions(server, repo: Path) -> None:
    """The transactions fixture, appended to the served workspace through the Events API."""
    requests.post(
        f"{server.url}/v0/events",
        params={"name": "customer_transactions", "wait": "true", "token": server.token},
        data=(repo / "fixtures" / "customer_transactions.ndjson").read_bytes(),
        timeout=60,
    ).raise_for_status()


def cd_tb_steps() -> list[tuple[str, str, str]]:
    """The `tb --cloud` steps of .github/workflows/cd.yml: (name, working directory, command)."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "cd.yml").read_text())
    steps = workflow["jobs"]["deploy"]["steps"]
    return [(s["name"], s.get("working-directory", "."), s["run"]) for s in steps if "tb --cloud" in s.get("run", "")]


def test_the_cd_workflow_checks_then_deploys_to_the_served_workspace(served, repo):
    """cd.yml's own commands, with TB_HOST and TB_TOKEN pointing at `tbkit serve`, as its secrets would."""
    steps = cd_tb_steps()
    assert [name for name, _, _ in steps] == ["tb --cloud deploy --check", "tb --cloud deploy"]
    (repo / ".venv").symlink_to(ROOT / ".venv")  # the workflow runs ../.venv/bin/tb from tinybird/
    env = dict(tb_env(served), TB_HOST=served.url, TB_TOKEN=served.token)
    append_transactions(served, repo)
    before = endpoint(served, "cltv_summary")
    edit(repo / "tinybird" / "endpoints" / "cltv_summary.pipe", *ROUNDING)

    def run(index: int) -> subprocess.CompletedProcess:
        _, folder, command = steps[index]
        return subprocess.run(
            ["bash", "-e", "-c", command], cwd=repo / folder, env=env, capture_output=True, text=True, timeout=300
        )

    check = run(0)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "| modified | cltv_summary | endpoint | endpoints/cltv_summary.pipe |" in check.stdout
    assert "✓ Deployment is valid" in check.stdout and NESTED_WARNING not in check.stdout
    assert endpoint(served, "cltv_summary") == before  # checked, not applied

    deployed = run(1)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "✓ Deployment #1 is live!" in deployed.stdout
    after = endpoint(served, "cltv_summary")
    assert after["average_cltv"] == round(before["average_cltv"])
    assert after["transactions"] == before["transactions"] == 118  # the datasource's rows were kept

    again = run(1)
    assert again.returncode == 0 and "Not deploying. No changes." in again.stdout

    edit(repo / "tinybird" / "datasources" / "customer_transactions.datasource", "Float64", "Float32")
    refused = run(0)
    assert refused.returncode != 0
    assert "datasources/customer_transactions.datasource" in refused.stdout
    assert "--allow-destructive-operations" in refused.stdout
    assert endpoint(served, "cltv_summary")["transactions"] == 118


def table(output: str) -> list[list[str]]:
    """The ID and Status cells of the table `tb deployment ls` prints."""
    rows = [[cell.strip() for cell in line.split("|")[1:3]] for line in output.splitlines() if line.startswith("|")]
    return rows[1:]  # after the header


def test_tb_deployment_create_promote_discard_and_ls_on_the_served_workspace(served, repo):
    project = repo / "tinybird"
    append_transactions(served, repo)
    edit(project / "endpoints" / "cltv_summary.pipe", *ROUNDING)
    created = cloud(served, project, "deployment", "create", "--wait")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "It won't be auto-promoted when ready." in created.stdout and "✓ Deployment is ready" in created.stdout
    listed = cloud(served, project, "deployment", "ls")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert table(listed.stdout) == [["1", "Staging"]]
    assert "." in str(endpoint(served, "cltv_summary")["average_cltv"])  # the staged change is not served

    promoted = cloud(served, project, "deployment", "promote", "--wait")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "✓ Deployment promoted" in promoted.stdout and "✓ Deployment #1 is live!" in promoted.stdout
    assert endpoint(served, "cltv_summary")["average_cltv"] == 4737969

    edit(project / "endpoints" / "cltv_summary.pipe", ROUNDING[1], ROUNDING[0])
    assert cloud(served, project, "deployment", "create").returncode == 0
    discarded = cloud(served, project, "deployment", "discard", "--wait")
    assert discarded.returncode == 0, discarded.stdout + discarded.stderr
    assert "Removing deployment 2" in discarded.stdout and "Discard process successfully completed" in discarded.stdout
    listed = cloud(served, project, "deployment", "ls", "--include-deleted")
    assert table(listed.stdout) == [["2", "Deleted"], ["1", "Live"]]
    assert endpoint(served, "cltv_summary")["average_cltv"] == 4737969


def test_tb_local_works_after_tb_recorded_the_served_workspace(served, repo):
    """`tb --host ... --token ...` saves the served workspace ("main") in .tinyb, and `tb --local` then uses
    that workspace as Tinybird Local would: its deploys and builds go to the served workspace."""
    project = repo / "tinybird"
    assert cloud(served, project, "deploy", "--check").returncode == 0
    assert json.loads((project / ".tinyb").read_text())["name"] == "main"
    edit(project / "endpoints" / "cltv_summary.pipe", *ROUNDING)
    deployed = tb(served, project, "deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "/main/deployments/1" in deployed.stdout and "✓ Deployment #1 is live!" in deployed.stdout
    built = tb(served, project, "build")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "No changes. Build skipped." in built.stdout


def test_tb_build_loads_the_fixtures_without_warnings(local, repo):
    result = tb(local, repo / "tinybird", "build")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ Build completed" in result.stdout and "Error" not in result.stdout
    counts = tb(local, repo / "tinybird", "--output", "json", "sql", "SELECT count() AS n FROM customer_events")
    assert json.loads(counts.stdout)["data"][0]["n"] == 246


def test_tb_test_update_rewrites_expectations_from_the_servers_answers(local, repo):
    assert tbkit(local, repo, "export-tests").returncode == 0
    tests = repo / "tinybird" / "tests" / "cltv_summary.yaml"
    assert '"average_cltv":4737969.2' in tests.read_text()
    edit(repo / "tinybird" / "endpoints" / "cltv_summary.pipe", *ROUNDING)
    stale = tb(local, repo / "tinybird", "test", "run", "cltv_summary")
    assert stale.returncode != 0 and "4737969.2" in stale.stdout
    updated = tb(local, repo / "tinybird", "test", "update", "cltv_summary")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "✓ defaults updated" in updated.stdout
    [case] = yaml.safe_load(tests.read_text())
    assert json.loads(case["expected_result"])["average_cltv"] == 4737969
    passed = tb(local, repo / "tinybird", "test", "run", "cltv_summary")
    assert passed.returncode == 0 and "✓ 1/1 passed" in passed.stdout


def test_tb_dev_builds_rebuilds_on_change_and_stops_on_sigint(local, repo):
    project = repo / "tinybird"
    env = dict(tb_env(local), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [tbcli.tb_executable(), "--local", "dev"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()

    def wait_for(text: str, deadline: float = 60.0) -> None:
        limit = time.monotonic() + deadline
        while not any(text in line for line in list(lines)):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < limit, f"no {text!r} after {deadline} s:\n" + "".join(lines)
            time.sleep(0.05)

    try:
        wait_for("Watching for changes...")
        assert any("✓ Build completed" in line for line in lines), "".join(lines)
        assert "." in str(endpoint_of_workspace(local, project, "cltv_summary")["average_cltv"])
        edit(project / "endpoints" / "cltv_summary.pipe", *ROUNDING)
        wait_for("✓ Rebuild completed")
        assert "✓ endpoints/cltv_summary.pipe changed" in "".join(lines)
        assert endpoint_of_workspace(local, project, "cltv_summary")["average_cltv"] == 4737969
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        reader.join(timeout=5)
    assert code == 0, "".join(lines)
    assert NESTED_WARNING not in "".join(lines)


def endpoint_of_workspace(local, project: Path, name: str) -> dict:
    """An endpoint's first row in the workspace `tb --local` builds `project` into."""
    token = tbcli.local_workspace_token(project, local.url)
    answer = requests.get(f"{local.url}/v0/pipes/{name}.json", params={"token": token}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"][0]


def test_the_local_workspace_name_follows_tbs_rule(tmp_path):
    project = tmp_path / "tinybird"
    project.mkdir()
    hashed = tbcli.local_workspace_name(project, {})
    assert hashed.startswith("Tinybird_Local_Build_")
    assert tbcli.local_workspace_name(project, {"GITHUB_HEAD_REF": "feature/x-1"}) == "feature_x_1"  # a PR's checkout
    git = ["git", "-C", str(tmp_path), "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], check=True)
    assert tbcli.local_workspace_name(project, {}) == hashed  # on main
    subprocess.run(["git", "-C", str(tmp_path), "checkout", "-q", "-b", "2024-fix"], check=True)
    assert tbcli.local_workspace_name(project, {}) == "branch_2024_fix"
    assert tbcli.local_workspace_name(project, {"TB_TOKEN": "t"}) == hashed  # a token turns branches off
    (project / ".tinyb").write_text(json.dumps({"name": "main", "host": "http://127.0.0.1:7181"}))
    assert tbcli.local_workspace_name(project, {"TB_TOKEN": "t"}) == "main"


def test_check_target_local_on_a_git_branch_finds_the_branch_workspace(local, repo):
    """On a branch other than main, `tb --local deploy` deploys to a workspace named after it."""
    subprocess.run(["git", "-C", str(repo), "-c", "init.defaultBranch=feature-x", "init", "-q"], check=True)
    result = tbkit(local, repo, "check", "--target", "local", "--endpoint", "cltv_summary")
    assert result.returncode == 0, result.stdout + result.stderr
    listing = requests.get(
        f"{local.url}/v1/user/workspaces", params={"token": tbcli.local_tokens(local.url)["admin_token"]}
    )
    assert "feature_x" in [workspace["name"] for workspace in listing.json()["workspaces"]]
