"""The datafiles are what `tb` accepts and formats, and the fixtures are what their generator writes."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import sys
from pathlib import Path

from tbkit.checks.lint import datafiles
from tbkit.remote import tb as tbcli

from . import ROOT

DATAFILES = datafiles(ROOT / "tinybird")


def test_the_project_has_its_datafiles():
    assert len(DATAFILES) == 19  # 8 datasources, 5 materializations, 6 endpoints


def test_tb_fmt_diff_passes_on_every_datafile():
    problems = tbcli.fmt_diff(DATAFILES)
    assert [str(p.path) for p in problems] == [], "\n".join(p.diff for p in problems)


def test_tb_fmt_diff_catches_a_misformatted_file_among_clean_ones(tmp_path: Path):
    path = tmp_path / "bad.datasource"
    path.write_text('SCHEMA >\n    `a` String `json:$.a`\n\nENGINE "MergeTree"\nENGINE_SORTING_KEY "a"\n')
    problems = tbcli.fmt_diff([*DATAFILES[:3], path])
    assert [p.path for p in problems] == [path]
    assert "+ENGINE MergeTree" in problems[0].diff


def test_tb_fixtures_link_each_datasource_fixture_and_nothing_deeper(project, layout):
    folder = layout.tb_fixtures_dir
    assert folder.is_dir() and not folder.is_symlink()
    links = sorted(folder.iterdir())
    assert [link.name for link in links] == sorted(f"{name}.ndjson" for name in project.landing_datasources)
    for link in links:
        assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()  # survives a copy of the repo
        assert link.resolve() == (layout.fixtures_dir / link.name).resolve()
    # tb scans three levels (tinybird/*/*/*) and warns about any folder at the third one
    assert not [path for path in layout.project_dir.glob("*/*/*") if path.is_dir()]


def test_committed_fixtures_match_their_generator(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("fixture_generator", ROOT / "fixtures" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    module.write(tmp_path)
    for path in sorted(tmp_path.rglob("*.ndjson")):
        committed = ROOT / "fixtures" / path.relative_to(tmp_path)
        assert filecmp.cmp(path, committed, shallow=False), f"{committed} is stale: run python fixtures/generate.py"
