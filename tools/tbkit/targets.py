"""Where golden cases run: the embedded engine, or any Tinybird-compatible HTTP API.

A target answers `fetch(case)` with a `Response`. The embedded target builds the project into a fresh
temporary workspace and seeds the fixtures first, so every run starts from the same data.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from . import fixtures
from .engine import AppendResult, Engine, Workspace
from .errors import ParameterError, TbkitError
from .golden import Case, Response
from .layout import Layout
from .project import Project


class EmbeddedTarget:
    """The project built in-process on chDB, in a workspace of its own, seeded with the fixtures."""

    name = "embedded"

    def __init__(self, project: Project, workspace: str | None = None):
        self.project = project
        self.engine = Engine.open(None)
        self.workspace: Workspace = self.engine.workspace(workspace or f"check_{uuid.uuid4().hex[:12]}", project)

    def prepare(self, fixtures_dir: Path) -> list[AppendResult]:
        """Build the workspace from scratch and append every fixture."""
        files = fixtures.fixture_files(self.project, fixtures_dir)
        self.workspace.drop()
        self.workspace.build()
        return fixtures.seed(self.workspace.append, files)

    def fetch(self, case: Case) -> Response:
        """Run a case's request on the workspace."""
        try:
            return Response.from_json(200, self.workspace.endpoint(case.endpoint, case.params))
        except TbkitError as e:
            return Response.from_json(e.status, {"error": str(e)})

    def close(self) -> None:
        """Drop the workspace and release the engine."""
        try:
            self.workspace.drop()
        finally:
            self.engine.close()


def open_target(spec: str, project: Project, layout: Layout, token: str | None = None, seed: bool = False):
    """A ready target for `spec`: `embedded` (built and seeded now)."""
    if spec == "embedded":
        target = EmbeddedTarget(project)
        try:
            target.prepare(layout.fixtures_dir)
        except BaseException:
            target.close()
            raise
        return target
    raise ParameterError(f"unknown target '{spec}': use embedded")
