"""The real `tb` CLI against `tbkit serve --local-api`, and tbkit's deploys and checks through it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tbkit import tbcli
from tbkit.cli import main
from tbkit.errors import TbCommandError

from . import ROOT
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
    shutil.copytree(ROOT / "tinybird", tmp_path / "tinybird", symlinks=True, ignore=shutil.ignore_patterns("tests"))
    shutil.copytree(ROOT / "fixtures", tmp_path / "fixtures")
    return tmp_path


def tb(local, project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TB_LOCAL_HOST="127.0.0.1", TB_LOCAL_PORT=str(local.port), TB_CLI_TELEMETRY_OPTOUT="1")
    command = [tbcli.tb_executable(), "--local", *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)


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
    result = CliRunner().invoke(main, ["deploy", "--target", "local"])
    assert result.exit_code == 1
    assert "Tinybird Local is not running at http://localhost:" in result.output
    assert "tbkit serve --local-api" in result.output


def test_deploy_to_cloud_without_credentials_says_what_to_set(repo, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.delenv("TB_HOST", raising=False)
    monkeypatch.delenv("TB_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["deploy", "--target", "cloud"])
    assert result.exit_code == 1
    assert "TB_HOST and TB_TOKEN are not set" in result.output
    (repo / ".env.local").write_text("TB_HOST=https://api.example.invalid\n")
    result = CliRunner().invoke(main, ["deploy", "--target", "cloud"])
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
