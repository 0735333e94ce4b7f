"""`tbkit export-tests`: the golden cases as `tb test` files (`tinybird/tests/<endpoint>.yaml`).

`tb test run` requests `/v0/pipes/<endpoint>.ndjson?<parameters>` and compares the body's text exactly
with `expected_result`; for a status of 400 or more it compares the JSON `error` field and the
`expected_http_status`. So the expected results are the NDJSON the embedded engine answers now.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from ..engine import Engine
from ..errors import TbkitError
from ..project.datafiles import load_project
from ..project.layout import Layout
from ..query import Reader
from ..remote import testfiles
from . import golden
from .golden import Case
from .targets import EmbeddedTarget


def tb_test(case: Case, reader: Reader) -> testfiles.TbTest:
    """A case as a `tb test`, with the NDJSON (or error) the workspace answers."""
    description = case.description or f"tbkit case {case.id}"
    parameters = urllib.parse.urlencode(case.params)
    try:
        answer = reader.query_endpoint(case.endpoint, case.params, "ndjson").decode()
    except TbkitError as e:
        return testfiles.TbTest(case.name, description, parameters, str(e), e.status)
    return testfiles.TbTest(case.name, description, parameters, answer)


def export_tests(cases: list[Case], reader: Reader, tests_dir: Path) -> list[Path]:
    """Write one `tb test` file per endpoint; return the files written."""
    by_endpoint: dict[str, list[Case]] = {}
    for case in cases:
        by_endpoint.setdefault(case.endpoint, []).append(case)
    return [
        testfiles.write(tests_dir, endpoint, [tb_test(case, reader) for case in endpoint_cases])
        for endpoint, endpoint_cases in sorted(by_endpoint.items())
    ]


def export(layout: Layout, engine: Engine | None = None) -> list[Path]:
    """Build and seed a fresh embedded workspace (in `engine`, else a temporary one), then write the `tb test`
    files of every case."""
    project = load_project(layout.project_dir)
    cases = golden.load_cases(layout.cases_dir, project)
    with Engine.or_temporary(engine) as engine:
        target = EmbeddedTarget(project, engine)
        try:
            target.prepare(layout.fixtures_dir)
            return export_tests(cases, target.reader, layout.tests_dir)
        finally:
            target.close()
