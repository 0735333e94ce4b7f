"""The `tbkit` commands a developer runs: check, --update, --junit, --json, export-tests, seed, lint, datagen, bench.

And the command line's own consistency: help on every option, one meaning per option name, click-checked usage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import click
import pytest
import yaml

from tbkit.cli import main
from tbkit.cli.options import Target

from .repo_copy import edit, invoke, run


def test_check_passes_every_case_and_prints_a_summary(repo):
    result = run("check")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    cases = sum(len(yaml.safe_load(p.read_text())["cases"]) for p in (repo / "fixtures" / "cases").glob("*.yaml"))
    other_checks = ("✓ assertion ", "✓ coverage ")
    case_lines = [line for line in lines if line.startswith("✓ ") and not line.startswith(other_checks)]
    assert len(case_lines) == cases
    assert lines[-1].startswith(f"{cases} passed, 0 failed")


def test_a_changed_pipe_fails_with_a_diff_naming_the_column_then_update_accepts_it(repo):
    edit(
        repo / "tinybird/endpoints/cltv_summary.pipe",
        "round(sum(customer_cltv), 2) AS total_revenue",
        "round(sum(customer_cltv) * 2, 2) AS total_revenue",
    )
    failed = run("check", "--endpoint", "cltv_summary")
    assert failed.exit_code == 1
    assert "✗ cltv_summary/defaults" in failed.output
    assert "changed: total_revenue: 184780798.65 -> 369561597.3" in failed.output
    assert failed.output.strip().endswith("on embedded") and "0 passed, 1 failed" in failed.output

    updated = run("check", "--endpoint", "cltv_summary", "--update")
    assert updated.exit_code == 0
    assert "↻ cltv_summary/defaults" in updated.output and "total_revenue" in updated.output
    assert "(1 updated)" in updated.output
    golden = json.loads((repo / "fixtures/golden/cltv_summary/defaults.json").read_text())
    assert golden["data"][0]["total_revenue"] == 369561597.3
    assert run("check", "--endpoint", "cltv_summary").exit_code == 0


def test_a_schema_change_is_reported_as_such(repo):
    edit(repo / "tinybird/endpoints/cltv_summary.pipe", "AS total_revenue", "AS revenue")
    result = run("check", "--case", "cltv_summary/defaults")
    assert result.exit_code == 1
    assert "schema: column 'total_revenue' removed (was Float64)" in result.output
    assert "schema: column 'revenue' added (Float64)" in result.output


def test_adding_a_case_is_two_lines_and_one_command(repo):
    cases = repo / "fixtures/cases/customer_cltv.yaml"
    cases.write_text(cases.read_text() + "  - name: added_case\n    params: {customer_id: cust_010}\n")
    assert run("check", "--case", "added_case").exit_code == 1  # no golden file yet
    created = run("check", "--case", "added_case", "--update")
    assert created.exit_code == 0 and "+ customer_cltv/added_case" in created.output
    assert (
        json.loads((repo / "fixtures/golden/customer_cltv/added_case.json").read_text())["data"][0]["customer_id"]
        == "cust_010"
    )
    assert run("check", "--case", "added_case").exit_code == 0


def test_junit_report_parses_and_counts_match(repo):
    edit(repo / "tinybird/endpoints/cltv_by_location.pipe", "count() AS customers", "count() + 1 AS customers")
    result = run("check", "--junit", "reports/junit.xml")
    assert result.exit_code == 1
    root = ET.parse(repo / "reports/junit.xml").getroot()
    testcases = root.findall(".//testcase")
    failures = root.findall(".//testcase/failure")
    summary = result.output.strip().splitlines()[-1]
    passed, failed = int(summary.split()[0]), int(summary.split(", ")[1].split()[0])
    assert (len(testcases), len(failures)) == (passed + failed, failed) == (int(root.get("tests")), 1)
    assert failures[0].get("message").startswith("~ row")
    suite = root.find("testsuite[@name='cltv_by_location']")
    assert suite is not None and suite.get("failures") == "1"


def test_json_report(repo):
    result = run("check", "--endpoint", "customer_cltv", "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["failed"] == 0 and report["passed"] == len(report["cases"]) == 9
    assert {c["outcome"] for c in report["cases"]} == {"passed"}


def test_export_tests_writes_tb_test_files(repo):
    result = run("export-tests")
    assert result.exit_code == 0, result.output
    files = sorted((repo / "tinybird/tests").glob("*.yaml"))
    assert [f.stem for f in files] == sorted(p.stem for p in (repo / "fixtures/cases").glob("*.yaml"))
    tests = yaml.safe_load((repo / "tinybird/tests/customer_cltv.yaml").read_text())
    assert isinstance(tests, list) and all({"name", "parameters", "expected_result"} <= set(t) for t in tests)
    outlier = next(t for t in tests if t["name"] == "seed_outlier")
    assert outlier["parameters"] == "customer_id=cust_969"
    assert json.loads(outlier["expected_result"])["cltv"] == 184751118
    missing = next(t for t in tests if t["name"] == "missing_customer_id")
    assert missing["expected_http_status"] == 400 and "customer_id" in missing["expected_result"]


def run_process(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a process of its own: for commands that open a persistent data directory, which chDB allows
    only once per process (the tests' own engine holds this one's)."""
    command = [sys.executable, "-m", "tbkit.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_seed_appends_fixtures_to_a_persistent_workspace(repo):
    result = run_process("seed", "--data-dir", "data")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "customer_events" in result.stdout and "246 successful" in result.stdout
    again = run_process(
        "seed", "--data-dir", "data", "--datasource", "customers", "fixtures/malformed/customers.ndjson"
    )
    assert again.returncode == 0, again.stderr
    assert "1 successful" in again.stdout and "7 quarantined" in again.stdout


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (lambda r: (r / "fixtures/customers.ndjson").unlink(), ["check"], "missing fixture for datasource 'customers'"),
        (
            lambda r: edit(r / "tinybird/endpoints/customer_cltv.pipe", "FROM customer_cltv_mv", "FROM x"),
            ["check"],
            "customer_cltv.pipe:",
        ),
        (lambda r: None, ["check", "--endpoint", "nope"], "no cases for endpoint 'nope'"),
        (lambda r: None, ["check", "--case", "nope"], "no case named 'nope'"),
        (lambda r: None, ["check", "--project", "missing"], "project folder not found"),
        (
            lambda r: None,
            ["seed", "--data-dir", "d", "fixtures/cases/cltv_summary.yaml"],
            "no datasource 'cltv_summary'",
        ),
    ],
)
def test_user_errors_are_one_clear_message(repo, setup, args, message):
    setup(repo)
    result = invoke(args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ")


def test_lint_passes_on_the_project_and_fails_on_a_misformatted_file(repo):
    assert run("lint").exit_code == 0
    edit(repo / "tinybird/datasources/customers.datasource", "ENGINE ReplacingMergeTree", 'ENGINE "ReplacingMergeTree"')
    result = invoke(["lint"])
    assert result.exit_code == 1
    assert "customers.datasource: not formatted" in result.output


@pytest.mark.parametrize("command", [[], *([name] for name in sorted(main.commands))])
def test_help_explains_with_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def _options():
    """(command name, option) for every option of every command (arguments are explained in the docstring)."""
    commands = sorted(main.commands.items())
    return [(name, param) for name, command in commands for param in command.params if isinstance(param, click.Option)]


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {param.opts[0]}" for name, param in _options() if not (param.help or "").strip()]
    assert missing == []


# An option of one command that differs on purpose: `tbkit dev` starts from a fresh data directory unless told;
# `tbkit deploy` has nothing to deploy on the embedded engine, so its --target leaves that out and defaults, as
# `tb deploy`, to Tinybird Local (the same kind of value: a place, checked by the same type).
OWN_MEANING = {("dev", "--data-dir"), ("deploy", "--target")}


def test_an_option_name_has_one_meaning_help_and_default_across_commands():
    seen: dict[str, set[tuple[str, object]]] = {}
    for command, param in _options():
        for opt in param.opts:
            if (command, opt) in OWN_MEANING:
                continue
            seen.setdefault(opt, set()).add((param.help, param.default))
    assert {opt: meanings for opt, meanings in seen.items() if len(meanings) > 1} == {}
    assert len(seen["--data-dir"]) == 1 and {d for _, d in seen["--data-dir"]} == {".tbkit"}


def test_target_is_one_kind_of_value_and_tb_token_one_token():
    """--target is a place (the same type everywhere); $TB_TOKEN is the token of the Tinybird that --target names,
    never the served workspace's admin token (--admin-token)."""
    targets = {name: param for name, param in _options() if "--target" in param.opts}
    assert sorted(targets) == ["audit", "check", "deploy"]
    assert {type(param.type) for param in targets.values()} == {Target}
    token_commands = sorted(name for name, param in _options() if param.envvar == "TB_TOKEN")
    assert token_commands == sorted(targets)
    assert {name for name, param in _options() if "--admin-token" in param.opts} == {"serve", "dev"}
    refused = invoke(["deploy", "--target", "embedded"])
    assert refused.exit_code == 2 and "'embedded': use local, cloud or the URL of a Tinybird API" in refused.output
    unknown = invoke(["check", "--target", "elsewhere"])
    assert unknown.exit_code == 2 and "use embedded, local, cloud or the URL of a Tinybird API" in unknown.output


def test_the_server_options_are_made_from_its_configuration():
    """Each default of `tbkit serve` is ServerConfig's, written once."""
    import dataclasses

    from tbkit.server import ServerConfig

    serve = {param.name: param for param in main.commands["serve"].params}
    for config_field in dataclasses.fields(ServerConfig):
        if "option" in config_field.metadata:
            assert serve[config_field.name].default == config_field.default, config_field.name
            assert serve[config_field.name].help.startswith(config_field.metadata["option"]["help"].rstrip("."))
    assert serve["port"].default == ServerConfig().port == 7181


def test_generators_take_random_seed_and_only_check_takes_seed():
    takes_seed = sorted(name for name, param in _options() if "--seed" in param.opts)
    takes_random_seed = sorted(name for name, param in _options() if "--random-seed" in param.opts)
    assert (takes_seed, takes_random_seed) == (["check"], ["bench", "datagen"])
    old = invoke(["datagen", "--rows", "3", "--seed", "3", "--out", "x"])
    assert old.exit_code == 2 and "No such option: --seed" in old.output


@pytest.mark.parametrize(("command", "output"), [("datagen", "--out"), ("bench", "--result")])
@pytest.mark.parametrize("sizes", [["--scale", "S", "--rows", "200"], ["--rows", "200", "--scale", "S"], []])
def test_generators_take_exactly_one_of_scale_and_rows(tmp_path, command, output, sizes):
    result = invoke([command, *sizes, output, str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Usage: main {command} [OPTIONS]")
    assert result.output.strip().endswith("Error: pass exactly one of --scale and --rows")
    assert not (tmp_path / "out").exists()


def test_bench_passes_its_options_to_the_library(monkeypatch, tmp_path):
    import tbkit.bench.harness
    import tbkit.bench.report

    calls = []
    monkeypatch.setattr(
        tbkit.bench.harness, "run", lambda config, result_path, markdown_path: calls.append((config, result_path))
    )
    monkeypatch.setattr(tbkit.bench.report, "markdown", lambda result: "| table |")
    args = ["bench", "--rows", "300", "--random-seed", "7", "--work-dir", str(tmp_path), "--no-peer"]
    result = run(*args, "--http-series", "all", "--result", str(tmp_path / "r.json"))
    assert result.exit_code == 0 and result.output == "| table |\n"
    ((config, result_path),) = calls
    assert (config.scale, config.rows, config.seed, config.work_dir, config.peer, config.http_series) == (
        None,
        300,
        7,
        tmp_path,
        False,
        "all",
    )
    assert result_path == tmp_path / "r.json"


def test_datagen_writes_the_four_datasources(tmp_path):
    result = run("datagen", "--rows", "300", "--random-seed", "3", "--out", str(tmp_path / "data"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["files"]["customer_events"]["rows"] == 3000
    for name in ("customers", "customer_events", "customer_transactions", "customer_demographics"):
        lines = (tmp_path / "data" / f"{name}.ndjson").read_text().splitlines()
        assert len(lines) == report["files"][name]["rows"]
    again = run("datagen", "--rows", "300", "--random-seed", "3", "--out", str(tmp_path / "again"), "--json")
    assert again.exit_code == 0, again.output
    for name in report["files"]:  # same --random-seed, same bytes
        assert (tmp_path / "again" / f"{name}.ndjson").read_bytes() == (
            tmp_path / "data" / f"{name}.ndjson"
        ).read_bytes()
