"""`tbkit diff --base <ref>`: the project at a git revision against the working tree, in a temporary repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tbkit.checks.diff import diff

from .repo_copy import copy_project, edit, invoke

DEMOGRAPHICS = "tinybird/datasources/customer_demographics.datasource"
CLTV = "tinybird/endpoints/customer_cltv.pipe"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=tbkit", "-c", "user.email=tbkit@example.com", "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A git repository holding a copy of the project and fixtures, one commit, as the current folder."""
    root = copy_project(tmp_path / "repo")
    git(root, "init", "-q", "-b", "main")
    commit(root, "project")
    monkeypatch.chdir(root)
    return root


def run(*args: str):
    return invoke(["diff", *args, "--project", "tinybird", "--fixtures", "fixtures"])


def test_no_change_is_empty_and_exits_0(repo, engine):
    report = diff(repo, repo / "tinybird", repo / "fixtures", "HEAD", engine=engine)
    assert report.empty and not report.breaking
    result = run("--base", "HEAD")
    assert result.exit_code == 0, result.output
    assert result.output == "No changes between HEAD and the working tree\n"


def test_a_renamed_endpoint_column_is_breaking_in_text_and_markdown(repo, engine):
    edit(repo / CLTV, "toUInt64(transactions) AS transactions", "toUInt64(transactions) AS transaction_count")
    result = run("--base", "HEAD", "--markdown", "diff.md")
    assert result.exit_code == 1, result.output
    assert "✗ customer_cltv: column transactions renamed to transaction_count (breaking)" in result.output
    assert result.output.strip().endswith("1 change(s) between HEAD and the working tree: BREAKING")
    markdown = (repo / "diff.md").read_text()
    assert "| Endpoints | 1 | 1 |" in markdown
    assert "- `customer_cltv`: column transactions renamed to transaction_count — **breaking**" in markdown
    allowed = run("--base", "HEAD", "--allow-breaking")
    assert allowed.exit_code == 0, allowed.output
    assert "renamed to transaction_count" in allowed.output


def test_a_new_datasource_column_is_compatible_a_removed_one_destructive(repo, engine):
    edit(
        repo / DEMOGRAPHICS,
        "`age` UInt8 `json:$.age`,",
        "`age` UInt8 `json:$.age`,\n    `income` Float64 `json:$.income`,",
    )
    added = diff(repo, repo / "tinybird", repo / "fixtures", "HEAD", engine=engine)
    assert [str(c) for c in added.datasource_changes] == [
        "datasource customer_demographics: new column income Float64 (compatible)"
    ]
    assert not added.breaking and added.contract_changes == []
    result = run("--base", "HEAD")
    assert result.exit_code == 0, result.output
    assert "~ customer_demographics: new column income Float64 (compatible)" in result.output

    commit(repo, "income column")
    edit(repo / DEMOGRAPHICS, "\n    `income` Float64 `json:$.income`,", "")
    removed = run("--base", "HEAD")
    assert removed.exit_code == 1, removed.output
    assert "✗ customer_demographics: column income removed (was Float64) (destructive)" in removed.output


def test_changed_golden_files_and_materializations_are_listed(repo, engine):
    golden = repo / "fixtures/golden/customer_cltv/heavy_buyer.json"
    golden.write_text(golden.read_text() + "\n")
    edit(repo / "tinybird/materializations/customers_latest.pipe", "SELECT", "SELECT\n       ")
    report = diff(repo, repo / "tinybird", repo / "fixtures", "HEAD", engine=engine)
    assert report.golden_changed == ["fixtures/golden/customer_cltv/heavy_buyer.json"]
    assert report.materialization_changes == []  # whitespace only
    edit(repo / "tinybird/materializations/customers_latest.pipe", "SELECT\n       ", "SELECT DISTINCT")
    report = diff(repo, repo / "tinybird", repo / "fixtures", "HEAD", engine=engine)
    assert [str(c) for c in report.materialization_changes] == ["materialization customers_latest: SQL changed"]
    assert not report.breaking


def test_an_unknown_ref_is_one_clear_error(repo, engine):
    result = run("--base", "no_such_branch")
    assert result.exit_code == 1
    assert result.output.startswith("Error: unknown git revision 'no_such_branch'")


def test_a_broken_datafile_names_the_side_and_file(repo, engine):
    edit(repo / CLTV, "NODE customer_cltv_node", "NODE customer_cltv_node\nNODE")
    result = run("--base", "HEAD")
    assert result.exit_code == 1
    assert result.output.startswith("Error: working tree: tinybird/endpoints/customer_cltv.pipe"), result.output
