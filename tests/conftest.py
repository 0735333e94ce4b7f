"""Shared fixtures.

chDB holds one data directory per process, so the whole session shares one embedded `Engine`; every test
that needs data gets a workspace (a database) of its own in it. Under `pytest -n auto` each worker is a
process with its own engine.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tbkit.engine import Engine, Workspace
from tbkit.project.datafiles import Project, load_project
from tbkit.project.layout import Layout
from tbkit.query import Reader

from . import ROOT
from .repo_copy import SHARED, copy_project
from .serving import ADMIN_TOKEN, InProcessServer

AS_OF = "2025-07-01 12:00:00"
LANDING = ("customers", "customer_events", "customer_transactions", "customer_demographics")
_names = itertools.count()

# No test inherits where the developer's shell points `tb` and tbkit (TB_HOST, TB_TOKEN, TB_LOCAL_HOST, TB_LOCAL_PORT
# and every other TB_* but TB_VERSION_WARNING, which only silences tb): every `tb` the tests run, in a process or
# through tbkit, sees only what the test sets.
for name in [name for name in os.environ if name.startswith("TB_") and name != "TB_VERSION_WARNING"]:
    del os.environ[name]
os.environ["TB_CLI_TELEMETRY_OPTOUT"] = "1"


@pytest.fixture(scope="session")
def layout() -> Layout:
    """The repository's own project and fixtures."""
    return Layout(ROOT / "tinybird", ROOT / "fixtures")


@pytest.fixture(scope="session")
def project(layout: Layout) -> Project:
    """The repository's Tinybird project, loaded once."""
    return load_project(layout.project_dir)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """One embedded engine for the whole session, in a temporary directory; the commands the tests run in-process
    share it (`repo_copy.SHARED`), since chDB holds one data directory per process."""
    instance = Engine.open(None)
    SHARED.engine = instance
    yield instance
    SHARED.engine = None
    instance.close()


@pytest.fixture
def workspace(engine: Engine, project: Project) -> Iterator[Workspace]:
    """An empty, built workspace of the project, dropped after the test."""
    ws = Workspace(engine, f"test_{os.getpid()}_{next(_names)}", project)
    ws.build()
    yield ws
    ws.drop()


@pytest.fixture(scope="session")
def reader(seeded: Workspace) -> Reader:
    """Endpoint calls and queries on the seeded workspace."""
    return Reader(seeded)


@pytest.fixture(scope="session")
def seeded(engine: Engine, project: Project, layout: Layout) -> Iterator[Workspace]:
    """A workspace with every fixture appended, shared read-only by the tests of a worker."""
    ws = Workspace(engine, f"seeded_{os.getpid()}", project)
    ws.drop()
    ws.build()
    for name in LANDING:
        ws.append(name, layout.fixtures_dir / f"{name}.ndjson")
    yield ws
    ws.drop()


@pytest.fixture
def start_server(engine: Engine, tmp_path: Path) -> Iterator[Callable[..., InProcessServer]]:
    """Start in-process servers over the session's engine (`start_server(token=..., **ServerConfig)`)."""
    servers: list[InProcessServer] = []

    def start(token: str | None = ADMIN_TOKEN, **config) -> InProcessServer:
        server = InProcessServer(engine, tmp_path / f"server{len(servers)}", token, **config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A copy of the repository's project and fixtures, as the current folder (outside GitHub Actions)."""
    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    return tmp_path
