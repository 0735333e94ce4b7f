"""The project's tbkit configuration: `[tool.tbkit]` in a pyproject.toml or a tbkit.yaml, found from the project
folder up, and every mistake in it named with the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tbkit.errors import ProjectError
from tbkit.project.config import Config, find_config


def test_the_configuration_is_found_from_the_project_folder_up(tmp_path):
    project = tmp_path / "repo" / "analytics" / "tinybird"
    project.mkdir(parents=True)
    assert find_config(project) == Config()  # nothing up to the root: nothing plugged in
    (tmp_path / "repo" / "pyproject.toml").write_text('[tool.tbkit]\nworkload = "a.b:C"\npython-path = ["tools"]\n')
    (tmp_path / "repo" / "analytics" / "pyproject.toml").write_text('[project]\nname = "other"\n')  # not tbkit's
    config = find_config(project)
    assert config.path == tmp_path / "repo" / "pyproject.toml" and config.folder == tmp_path / "repo"
    assert (config.workload, config.python_path) == ("a.b:C", (tmp_path / "repo" / "tools",))
    (tmp_path / "repo" / "analytics" / "tbkit.yaml").write_text("workload: x:Y\n")
    assert find_config(project).path == tmp_path / "repo" / "analytics" / "tbkit.yaml"
    (tmp_path / "repo" / "analytics" / "pyproject.toml").write_text("[tool.tbkit]\n")
    with pytest.raises(ProjectError, match="both .*tbkit.yaml and .*pyproject.toml \\[tool.tbkit\\] configure tbkit"):
        find_config(project)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[tool.tbkit]\nworkload = "no_colon"', '[tool.tbkit] workload: expected a "module:attribute" string'),
        ("[tool.tbkit]\nworkload = 3", "got 3"),
        ('[tool.tbkit]\nworkload = "a:b"\npython-path = "tools"', "[tool.tbkit] python-path: expected a list"),
        ('[tool.tbkit]\nworkloads = "a:b"', "[tool.tbkit] workloads: unknown key (expected workload: "),
        ("[tool.tbkit\n", "invalid TOML"),
    ],
)
def test_a_bad_configuration_names_the_file_the_key_and_what_was_expected(tmp_path, content, message):
    (tmp_path / "pyproject.toml").write_text(content)
    with pytest.raises(ProjectError) as error:
        find_config(tmp_path / "tinybird")
    assert str(tmp_path / "pyproject.toml") in str(error.value) and message in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- workload", "expected a mapping of settings (workload, python-path), got ['workload']"),
        ("workload: [a, b]", 'tbkit.yaml workload: expected a "module:attribute" string'),
        ("python-path: [tools, 3]", "tbkit.yaml python-path: expected a list of folders (strings)"),
        ("workload: [a", "invalid YAML"),
    ],
)
def test_a_bad_tbkit_yaml_names_the_file_the_key_and_what_was_expected(tmp_path, content, message):
    (tmp_path / "tbkit.yaml").write_text(content)
    with pytest.raises(ProjectError) as error:
        find_config(tmp_path)
    assert str(tmp_path / "tbkit.yaml") in str(error.value) and message in str(error.value)


def test_an_empty_tbkit_yaml_plugs_nothing_in_and_paths_are_relative_to_it(tmp_path):
    (tmp_path / "tbkit.yaml").write_text("")
    assert find_config(tmp_path) == Config(tmp_path / "tbkit.yaml")
    (tmp_path / "tbkit.yaml").write_text("workload: gen.hook:WORKLOAD\npython-path: [src, /opt/shared]\n")
    assert find_config(tmp_path / "tinybird").python_path == (tmp_path / "src", Path("/opt/shared"))
