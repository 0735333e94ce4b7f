"""Fixture files: one `<datasource>.ndjson` per datasource, the convention `tb build` and `tb test` use."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import IngestError, NotFoundError
from .datafiles import Project

FIXTURE_SUFFIXES = (".ndjson", ".jsonl")


@dataclass(frozen=True)
class FixtureFile:
    """A fixture file and the datasource it fills."""

    datasource: str
    path: Path

    @property
    def lines(self) -> int:
        """Non-blank lines in the file."""
        with self.path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())


def fixture_files(project: Project, fixtures_dir: Path, datasource: str | None = None) -> list[FixtureFile]:
    """The fixture of every landing datasource; a landing datasource without one is an error."""
    if not fixtures_dir.is_dir():
        raise NotFoundError(f"fixtures folder not found: {fixtures_dir}")
    names = [datasource] if datasource else sorted(project.landing_datasources)
    found = []
    for name in names:
        project.datasource(name)
        candidates = [fixtures_dir / f"{name}{suffix}" for suffix in FIXTURE_SUFFIXES]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise NotFoundError(f"missing fixture for datasource '{name}': expected {candidates[0]}")
        found.append(FixtureFile(name, path))
    return found


def files_to_seed(project: Project, paths: Iterable[str | Path], datasource: str | None) -> list[FixtureFile]:
    """Explicit files to append: to `datasource`, or to the datasource named by each file's stem."""
    found = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise IngestError(f"file not found: {path}")
        name = datasource or path.name.split(".", 1)[0]
        if name not in project.datasources:
            raise NotFoundError(
                f"{path}: no datasource '{name}' (name the file <datasource>.ndjson or pass --datasource)"
            )
        found.append(FixtureFile(name, path))
    return found


def seed(append: Callable[[str, Path], object], files: list[FixtureFile]) -> list[object]:
    """Append every file through `append(datasource, path)`; return what each append returned."""
    return [append(fixture.datasource, fixture.path) for fixture in files]
