"""Where checks run: the embedded engine, or any Tinybird-compatible HTTP API, behind one protocol.

A `Target` answers what the checks ask of a workspace: a case's response (`fetch`), a Query API query (`sql`), and
an endpoint's columns (`endpoint_columns`). The embedded target builds the project into a fresh workspace of an
engine and seeds the fixtures first, so every run starts from the same data; an HTTP target calls the API as it
is (`tbkit serve`, Tinybird Local or Cloud), after seeding it only when asked.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..engine import AppendResult, Engine, Workspace
from ..errors import ParameterError, TbkitError
from ..project import fixtures
from ..project.datafiles import Project
from ..project.layout import Layout
from ..query import Reader
from ..remote import tb
from ..remote.client import AppendTotals, TinybirdClient
from .golden import Case, Response


class Target(Protocol):
    """What the checks need of a workspace, wherever it runs."""

    name: str
    # The engine holding the workspace (budgets load generated data beside it); None over HTTP.
    engine: Engine | None
    # True when `endpoint_columns` is derived from the project (the embedded engine); False when it is learnt from
    # the answers seen, which may be compared with the contracts but not written to them.
    derives_columns: bool

    def fetch(self, case: Case) -> Response:
        """A case's response: its JSON answer, or the error as the API answers it."""
        ...

    def sql(self, query: str) -> dict[str, Any]:
        """A Query API query's JSON answer (`meta`, `data`, ...)."""
        ...

    def endpoint_columns(self, endpoint: str) -> list[tuple[str, str]] | None:
        """The (name, type) of every column the endpoint answers with; None when not known."""
        ...

    def close(self) -> None:
        """Release what the target holds."""
        ...


def answer(reader: Reader, case: Case) -> Response:
    """A case's request run on an embedded workspace: its JSON answer, or the error as the API answers it."""
    try:
        return Response.from_json(200, reader.endpoint(case.endpoint, case.params))
    except TbkitError as e:
        return Response.from_json(e.status, {"error": str(e)})


class EmbeddedTarget:
    """The project built in-process on chDB, in a workspace of its own in `engine`, seeded with the fixtures."""

    name = "embedded"
    derives_columns = True

    def __init__(self, project: Project, engine: Engine, workspace: str | None = None):
        self.project = project
        self.engine: Engine | None = engine
        self.workspace: Workspace = Workspace(engine, workspace or f"check_{uuid.uuid4().hex[:12]}", project)
        self.reader = Reader(self.workspace)

    def prepare(self, fixtures_dir: Path) -> list[AppendResult]:
        """Build the workspace from scratch and append every fixture."""
        files = fixtures.fixture_files(self.project, fixtures_dir)
        self.workspace.drop()
        self.workspace.build()
        return fixtures.seed(self.workspace.append, files)

    def fetch(self, case: Case) -> Response:
        """Run a case's request on the workspace."""
        return answer(self.reader, case)

    def sql(self, query: str) -> dict[str, Any]:
        """Run a Query API query on the workspace."""
        return json.loads(self.reader.sql(query))

    def endpoint_columns(self, endpoint: str) -> list[tuple[str, str]]:
        """The endpoint's columns, from the engine, without running it."""
        return self.reader.endpoint_columns(endpoint)

    def close(self) -> None:
        """Drop the workspace (the engine is the caller's)."""
        self.workspace.drop()


class HttpTarget:
    """A Tinybird API over HTTP (`tbkit serve`, Tinybird Local or Cloud), through `TinybirdClient`."""

    engine: Engine | None = None
    derives_columns = False

    def __init__(self, url: str, token: str | None, project: Project, settle_seconds: float = 60.0):
        if not token:
            raise ParameterError(f"a token is needed for {url}: pass --token or set TB_TOKEN")
        self.name = url
        self.project = project
        self.client = TinybirdClient(url, token)
        self.settle_seconds = settle_seconds
        self._columns: dict[str, list[tuple[str, str]]] = {}  # from each endpoint's first 200 answer

    def prepare(self, fixtures_dir: Path) -> list[AppendTotals]:
        """Empty every datasource, append the fixtures through the Events API and wait until all are stored."""
        files = fixtures.fixture_files(self.project, fixtures_dir)
        for name in self.project.datasources:
            self.client.truncate(name)
        totals = [self.client.append_ndjson(f.datasource, f.path) for f in files]
        self.wait_for_rows({t.datasource: t.successful_rows for t in totals})
        return totals

    def wait_for_rows(self, expected: dict[str, int]) -> None:
        """Poll row counts until they equal `expected`, or fail after the deadline."""
        deadline = time.monotonic() + self.settle_seconds
        while True:
            counts = {name: self.client.row_count(name) for name in expected}
            if counts == expected:
                return
            if time.monotonic() > deadline:
                raise TbkitError(f"{self.name}: row counts {counts} did not reach {expected} within the deadline")
            time.sleep(0.2)

    def fetch(self, case: Case) -> Response:
        """Call the case's endpoint over HTTP; a 200 answer's columns are kept (`endpoint_columns`)."""
        status, body = self.client.query_pipe(case.endpoint, case.params)
        response = Response.from_json(status, body if isinstance(body, dict) else {"error": str(body)})
        if status == 200:
            self._columns.setdefault(case.endpoint, [(m["name"], m["type"]) for m in response.meta])
        return response

    def sql(self, query: str) -> dict[str, Any]:
        """Run a query through `/v0/sql`."""
        return self.client.sql(query)

    def endpoint_columns(self, endpoint: str) -> list[tuple[str, str]] | None:
        """The columns the endpoint answered its first successful case with (None before one)."""
        return self._columns.get(endpoint)

    def close(self) -> None:
        """Nothing to release: the data stays on the server."""


def _local_address(layout: Layout) -> str:
    """Tinybird Local's address, from the environment or the project's `.env` files, as `tb` finds it."""
    return tb.local_address({**tb.read_env_files(Path("."), layout.project_dir), **os.environ})


def remote_as_it_is(spec: str, project: Project, layout: Layout, token: str | None = None) -> HttpTarget:
    """A Tinybird API to read as it is (no deploy, no seeding): `local` (Tinybird Local, its workspace token
    for this project unless `token`), `cloud` (TB_HOST, and `token` or TB_TOKEN) or a URL with `token`."""
    if spec == "local":
        address = _local_address(layout)
        remote = HttpTarget(address, token or tb.local_workspace_token(layout.project_dir, address), project)
        remote.name = f"local ({address})"
        return remote
    if spec == "cloud":
        host, cloud_token = tb.cloud_credentials(layout.project_dir, token)
        remote = HttpTarget(host, cloud_token, project)
        remote.name = f"cloud ({host})"
        return remote
    if spec.startswith(("http://", "https://")):
        return HttpTarget(spec, token, project)
    raise ParameterError(f"unknown target '{spec}': use embedded, local, cloud or the URL of a Tinybird API")


def open_target(
    spec: str,
    project: Project,
    layout: Layout,
    engine: Engine | None = None,
    token: str | None = None,
    seed: bool = False,
    on_message: Callable[[str], object] = lambda message: None,
) -> Target:
    """A ready target: `embedded` (a fresh workspace of `engine`, which it needs, seeded with the fixtures),
    `local` (the project deployed to Tinybird Local with `tb`, then seeded), `cloud` (TB_HOST/TB_TOKEN) or a URL
    (both as they are, unless `seed`)."""
    if spec == "embedded":
        if engine is None:
            raise TbkitError("the embedded target needs an engine: open one (Engine.open) and pass it")
        target = EmbeddedTarget(project, engine)
        try:
            target.prepare(layout.fixtures_dir)
        except BaseException:
            target.close()
            raise
        return target
    if spec == "local":
        on_message(
            f"deploying {layout.project_dir} to Tinybird Local at {_local_address(layout)} with tb --local deploy"
        )
        tb.deploy("local", layout.project_dir, on_output=lambda line: None)
        remote = remote_as_it_is(spec, project, layout)  # the workspace tb deployed to, whatever --token says
        remote.prepare(layout.fixtures_dir)
        return remote
    remote = remote_as_it_is(spec, project, layout, token)
    if spec != "cloud":
        remote.client.health()
    if seed:
        if spec == "cloud":
            on_message(
                f"--seed: emptying every datasource of the workspace at {remote.client.host} and appending the fixtures"
            )
        remote.prepare(layout.fixtures_dir)
    elif spec == "cloud":
        on_message(
            f"not seeding {remote.client.host}: its datasources keep their data, so cases pass only if it holds the "
            "fixtures; pass --seed to empty the workspace's datasources and append the fixtures"
        )
    return remote
