"""The project's data generator plugged in through its configuration: imported and checked, reused once generated,
loaded with its counts checked; and the message a project without one gets.

A tiny project of its own (one datasource, one endpoint) and a tiny generator show that nothing here is ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tbkit.datagen import GeneratedFile, load, load_workload, prepare, workload_of
from tbkit.engine import Workspace
from tbkit.errors import ProjectError, TbkitError
from tbkit.project.config import Config
from tbkit.project.datafiles import load_project

from .repo_copy import invoke, run

DATASOURCE = """DESCRIPTION >
    Page views.

SCHEMA >
    `path` String `json:$.path`,
    `at` DateTime `json:$.at`

ENGINE MergeTree
ENGINE_SORTING_KEY path, at
"""
ENDPOINT = """DESCRIPTION >
    The most viewed paths.

NODE top_paths_node
SQL >
    %
    SELECT path, count() AS views FROM page_views GROUP BY path ORDER BY views DESC, path
    LIMIT {{ Int32(limit, 10, description="Paths returned.") }}

TYPE ENDPOINT
"""
# A generator of page views: `rows` valid lines and one that is not JSON, which the engine must quarantine.
HOOK = """
import json
from pathlib import Path

from tbkit.datagen import GeneratedData, GeneratedFile


class Parameters:
    def default(self, endpoint):
        return {}

    def varied(self, endpoint):
        return {"limit": "2"}


class PageViews:
    datasources = ("page_views",)
    scales = {"XS": 10, "XM": 100}

    def generate(self, out: Path, rows: int, seed: int, workers: int) -> GeneratedData:
        lines = [json.dumps({"path": f"/p{(seed + i) % 3}", "at": "2025-01-01 00:00:00"}) for i in range(rows)]
        data = ("\\n".join([*lines, "not json"]) + "\\n").encode()
        (out / "page_views.ndjson").write_bytes(data)
        return GeneratedData(rows, seed, {"page_views": GeneratedFile(rows + 1, 1, len(data))})

    def parameters(self, rows, seed):
        return Parameters()


WORKLOAD = PageViews()
NOT_A_WORKLOAD = object()
HALF_A_WORKLOAD = type("Half", (), {"datasources": "page_views", "scales": {"S": 0}, "generate": None})()
"""


def tiny_project(root: Path, workload: str | None = "page_views_hook:WORKLOAD") -> Path:
    """A project folder under `root` (its tbkit.yaml beside it naming `workload`); the project folder."""
    project = root / "tinybird"
    (project / "datasources").mkdir(parents=True)
    (project / "endpoints").mkdir()
    (project / "datasources" / "page_views.datasource").write_text(DATASOURCE)
    (project / "endpoints" / "top_paths.pipe").write_text(ENDPOINT)
    (root / "hooks").mkdir()
    (root / "hooks" / "page_views_hook.py").write_text(HOOK)
    if workload:
        (root / "tbkit.yaml").write_text(f"workload: {workload}\npython-path: [hooks]\n")
    return project


@pytest.fixture(scope="module")
def page_views(tmp_path_factory) -> Path:
    return tiny_project(tmp_path_factory.mktemp("page-views"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("page_views_nope:WORKLOAD", "cannot import page_views_nope (No module named 'page_views_nope'"),
        ("page_views_hook:NOPE", "page_views_hook has no attribute NOPE"),
        ("page_views_hook:NOT_A_WORKLOAD", "does not fit tbkit's Workload: no generate() method; no parameters()"),
        (
            "page_views_hook:HALF_A_WORKLOAD",
            "no generate() method; no parameters() method; datasources must be a non-empty list of datasource names, "
            "got 'page_views'; scales must map scale names to a positive number of rows, got {'S': 0}",
        ),
    ],
)
def test_a_hook_that_cannot_be_imported_or_does_not_fit_names_the_file_the_key_and_the_spec(page_views, spec, message):
    config = Config(page_views.parent / "tbkit.yaml", spec, (page_views.parent / "hooks",))
    with pytest.raises(ProjectError) as error:
        load_workload(config, "a test")
    assert f"{page_views.parent / 'tbkit.yaml'} workload = {spec!r}: " in str(error.value)
    assert message in str(error.value)


def test_a_project_without_a_generator_is_told_how_to_plug_one_in(tmp_path_factory, tmp_path, repo):
    bare = tiny_project(tmp_path_factory.mktemp("bare"), workload=None)  # not under the copy of ours
    plug = (
        'needs a data generator for this project: set `workload = "module:attribute"` under [tool.tbkit] in '
        'pyproject.toml (or `workload:` in tbkit.yaml); see the README\'s "Plugging in a data generator"'
    )
    datagen = invoke(["datagen", "--rows", "5", "--out", str(tmp_path / "out"), "--project", str(bare)])
    assert datagen.exit_code == 1 and datagen.output == f"Error: tbkit datagen {plug}\n"
    bench = invoke(["bench", "--rows", "100", "--project", str(bare), "--work-dir", str(tmp_path / "bench")])
    assert bench.exit_code == 1 and bench.output == f"Error: tbkit bench {plug}\n"
    (repo / "tbkit.yaml").unlink()  # the copy of our project, without its hook
    budgets = invoke(["check", "--budgets", "--scale", "XS", "--endpoint", "cltv_summary"])
    assert budgets.exit_code == 1 and f"Error: tbkit check --budgets {plug}\n" in budgets.output
    with pytest.raises(TbkitError, match=r"\(.*tbkit.yaml sets no workload\)"):
        load_workload(Config(tmp_path / "tbkit.yaml"), "tbkit bench")


def test_another_project_plugs_in_its_own_generator(page_views, tmp_path, engine):
    result = run("datagen", "--scale", "XS", "--out", str(tmp_path / "data"), "--project", str(page_views), "--json")
    report = json.loads(result.output)
    size = (tmp_path / "data" / "page_views.ndjson").stat().st_size
    assert report["size"] == 10
    assert report["files"] == {"page_views": {"rows": 11, "valid": 10, "malformed": 1, "bytes": size}}
    unknown = invoke(["datagen", "--scale", "S", "--out", str(tmp_path / "s"), "--project", str(page_views)])
    assert unknown.exit_code == 1 and "Error: unknown scale 'S': use one of XS, XM" in unknown.output

    workload = workload_of(page_views, "a test")
    project = load_project(page_views)
    assert workload.endpoints_of(project) == ["top_paths"]  # every endpoint, as the hook names none
    logged: list[str] = []
    folder, data = prepare(workload, tmp_path / "work", "XS", 10, seed=1, log=logged.append)
    again = prepare(workload, tmp_path / "work", "XS", 10, seed=1, log=logged.append)
    assert again == (folder, data) and logged == [f"generating XS data into {folder}"]  # reused the second time
    assert folder == tmp_path / "work" / "data-XS-seed1"

    ws = Workspace(engine, "page_views_hook", project)
    ws.drop()
    ws.build()
    try:
        [(name, loaded)] = load(ws, folder, data).items()
        assert (name, loaded.successful_rows, loaded.quarantined_rows) == ("page_views", 10, 1)
        lying = type(data)(10, 1, {"page_views": GeneratedFile(11, 0, 0)})
        with pytest.raises(
            TbkitError, match="page_views: the engine stored 10 and quarantined 1, the generator wrote 11"
        ):
            load(ws, folder, lying)
    finally:
        ws.drop()
