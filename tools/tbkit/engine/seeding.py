"""`tbkit seed`: files appended to a persistent workspace of an engine, built first when needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..project.datafiles import load_project
from ..project.fixtures import files_to_seed, fixture_files
from ..project.layout import Layout
from .append import AppendResult
from .instance import Engine
from .workspace import Workspace

# Files larger than this get a progress bar.
PROGRESS_THRESHOLD = 16 * 1024 * 1024


def seed_workspace(
    layout: Layout,
    data_dir: Path,
    workspace: str,
    files: list[Path],
    datasource: str | None = None,
    progress: Callable | None = None,
) -> list[AppendResult]:
    """Append files (the fixtures when none) to a persistent workspace, building it if needed."""
    project = load_project(layout.project_dir)
    to_seed = files_to_seed(project, files, datasource) if files else fixture_files(project, layout.fixtures_dir)
    with Engine.open(data_dir) as engine:
        target = Workspace(engine, workspace, project)
        target.build()
        results = []
        for fixture in to_seed:
            size = fixture.path.stat().st_size
            if progress and size > PROGRESS_THRESHOLD:
                with progress(f"{fixture.datasource:<24}", size) as bar:
                    results.append(target.append(fixture.datasource, fixture.path, on_progress=bar.update))
            else:
                results.append(target.append(fixture.datasource, fixture.path))
        return results
