"""The project's tbkit configuration: `[tool.tbkit]` in a pyproject.toml, or a `tbkit.yaml`.

It is found by walking up from the project folder (`--project`, `tinybird` by default) to the filesystem root: the
first folder holding a `tbkit.yaml`, or a `pyproject.toml` with a `[tool.tbkit]` table, is the configuration's
(a pyproject.toml without the table is another tool's, and the walk goes on). Both in one folder is an error, as
tbkit could not tell which one is meant. No configuration at all is an empty `Config`: nothing is plugged in.

    [tool.tbkit]
    workload = "my_package.workload:WORKLOAD"   # the project's data generator (module:attribute)
    python-path = ["tools"]                      # folders put on sys.path to import it, relative to this file
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ProjectError

PYPROJECT = "pyproject.toml"
YAML_FILE = "tbkit.yaml"
# `package.module:attribute`, the attribute possibly dotted (`module:Class.instance`), as entry points are written.
_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_KEYS = {
    "workload": 'a "module:attribute" string naming the project\'s workload (its data generator)',
    "python-path": "a list of folders (strings), relative to the configuration file",
}


@dataclass(frozen=True)
class Config:
    """What the configuration says; `path` is None when the project has no configuration file."""

    path: Path | None = None
    workload: str | None = None
    python_path: tuple[Path, ...] = ()

    @property
    def folder(self) -> Path | None:
        """The folder of the configuration file, which relative paths in it start from."""
        return None if self.path is None else self.path.parent

    def where(self, key: str) -> str:
        """`pyproject.toml [tool.tbkit] workload` or `tbkit.yaml workload`, for a message."""
        table = " [tool.tbkit]" if self.path is not None and self.path.name == PYPROJECT else ""
        return f"{self.path}{table} {key}"


def _tbkit_table(path: Path) -> dict[str, Any] | None:
    """The `[tool.tbkit]` table of a pyproject.toml (None without one)."""
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ProjectError(f"invalid TOML: {e}", path=str(path)) from None
    table = content.get("tool", {}).get("tbkit") if isinstance(content.get("tool"), dict) else None
    if table is not None and not isinstance(table, dict):
        raise ProjectError("tool.tbkit: expected a table ([tool.tbkit])", path=str(path))
    return table


def _yaml_mapping(path: Path) -> dict[str, Any]:
    """The content of a tbkit.yaml: a mapping (an empty file is an empty one)."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ProjectError(f"invalid YAML: {e}", path=str(path), line=line + 1 if line is not None else None) from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ProjectError(f"expected a mapping of settings ({', '.join(_KEYS)}), got {content!r}", path=str(path))
    return content


def parse(path: Path, settings: dict[str, Any]) -> Config:
    """A `Config` from the settings read from `path`; ProjectError naming the file, the key and what was expected."""
    config = Config(path=path)
    if unknown := sorted(str(key) for key in settings if key not in _KEYS):
        expected = "; ".join(f"{key}: {what}" for key, what in _KEYS.items())
        raise ProjectError(f"{config.where(unknown[0])}: unknown key (expected {expected})")
    workload = settings.get("workload")
    if workload is not None and not (isinstance(workload, str) and _SPEC.match(workload)):
        raise ProjectError(f"{config.where('workload')}: expected {_KEYS['workload']}, got {workload!r}")
    folders = settings.get("python-path", [])
    if not isinstance(folders, list) or not all(isinstance(folder, str) and folder for folder in folders):
        raise ProjectError(f"{config.where('python-path')}: expected {_KEYS['python-path']}, got {folders!r}")
    return Config(path, workload, tuple((path.parent / folder).resolve() for folder in folders))


def find_config(project_dir: str | Path) -> Config:
    """The configuration of the project in `project_dir`: the nearest one from that folder up, or an empty one."""
    start = Path(project_dir).resolve()
    for folder in (start, *start.parents):
        yaml_path, pyproject = folder / YAML_FILE, folder / PYPROJECT
        table = _tbkit_table(pyproject) if pyproject.is_file() else None
        if yaml_path.is_file() and table is not None:
            raise ProjectError(f"both {yaml_path} and {pyproject} [tool.tbkit] configure tbkit: keep one of them")
        if yaml_path.is_file():
            return parse(yaml_path, _yaml_mapping(yaml_path))
        if table is not None:
            return parse(pyproject, table)
    return Config()
