"""Write `tb test` files (`tinybird/tests/<endpoint>.yaml`) from the golden cases.

`tb test run` requests `/v0/pipes/<endpoint>.ndjson?<parameters>` and compares the body's text exactly
with `expected_result`; for a status of 400 or more it compares the JSON `error` field and the
`expected_http_status`. So the expected results are the NDJSON the embedded engine answers now.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import yaml

from ..engine.workspace import Workspace
from ..errors import TbkitError
from ..project.datafiles import load_project
from ..project.layout import Layout
from . import golden
from .golden import Case
from .targets import EmbeddedTarget


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, as `tb test create` writes them."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _represent_str)


def test_entry(case: Case, workspace: Workspace) -> dict:
    """One `tb test` entry for a case, with the NDJSON (or error) the workspace answers."""
    entry: dict = {
        "name": case.name,
        "description": case.description or f"tbkit case {case.id}",
        "parameters": urllib.parse.urlencode(case.params),
    }
    try:
        entry["expected_result"] = workspace.query_endpoint(case.endpoint, case.params, "ndjson").decode()
    except TbkitError as e:
        entry["expected_result"] = str(e)
        entry["expected_http_status"] = e.status
    return entry


def export_tests(cases: list[Case], workspace: Workspace, tests_dir: Path) -> list[Path]:
    """Write one YAML file per endpoint; return the files written."""
    by_endpoint: dict[str, list[Case]] = {}
    for case in cases:
        by_endpoint.setdefault(case.endpoint, []).append(case)
    tests_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for endpoint, endpoint_cases in sorted(by_endpoint.items()):
        entries = [test_entry(case, workspace) for case in endpoint_cases]
        text = yaml.dump(entries, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=1000)
        path = tests_dir / f"{endpoint}.yaml"
        path.write_text(text.replace("\n- name:", "\n\n- name:"), encoding="utf-8")
        written.append(path)
    return written


def export(layout: Layout) -> list[Path]:
    """Build and seed a fresh embedded workspace, then write the `tb test` files of every case."""
    project = load_project(layout.project_dir)
    cases = golden.load_cases(layout.cases_dir, project)
    target = EmbeddedTarget(project)
    try:
        target.prepare(layout.fixtures_dir)
        return export_tests(cases, target.workspace, layout.tests_dir)
    finally:
        target.close()
