"""What a workspace answers: endpoint calls and Query API queries, rendered above the engine.

A `Reader` serves one built workspace: it renders an endpoint request with Tinybird's template engine
(`pipes.py`) or plans a Query API query (`policy.py`), runs the SELECT read-only within the workspace's time
limit, and returns the body in Tinybird's format. It keeps what makes the next call cheaper: the table rewrites
by query shape (`skeletons.py`, shared by the readers of one server) and which endpoints answer small.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..engine import Workspace
from ..errors import NotFoundError
from ..project.datafiles import Project
from . import pipes, policy
from .skeletons import Skeletons

FORMATS = {"json": "JSON", "csv": "CSVWithNames", "ndjson": "JSONEachRow", "parquet": "Parquet"}
# An endpoint whose last answer was under this many bytes has its next answer formatted on one thread: ClickHouse's
# parallel formatting costs 0.1-0.2 ms of thread hand-offs per query, and pays off only on large answers (2M rows
# of JSON: 0.43 s in parallel, 0.67 s on one thread, on 2 cores).
SMALL_ANSWER = 256 * 1024


class Reader:
    """Endpoint calls and Query API queries on one workspace.

    `skeletons` caches table rewrites by query shape (a cache of its own without one); `secrets` gives the
    workspace's secrets by name, for `tb_secret()` in templates; `service_tables` says the engine holds the
    tables of Tinybird's service datasources (a server makes them), else they read as empty.
    """

    def __init__(
        self,
        workspace: Workspace,
        skeletons: Skeletons | None = None,
        secrets: Callable[[], dict[str, str]] = dict,
        service_tables: bool = False,
    ):
        self.workspace = workspace
        self.skeletons = skeletons if skeletons is not None else Skeletons()
        self.secrets = secrets
        self.service_tables = service_tables  # the engine holds the service datasources' tables (a server made them)
        # Endpoints whose last answer was small: the next call formats its answer on one thread (SMALL_ANSWER).
        self.small_answers: dict[str, bool] = {}

    @property
    def project(self) -> Project:
        """The project the workspace was built from."""
        return self.workspace.project

    def _secrets(self) -> dict[str, str] | None:
        return self.secrets() if self.project.reads_secrets else None  # no file read per call otherwise

    def endpoint_sql(self, name: str, params: dict[str, Any]) -> str:
        """The SELECT that answers endpoint `name` for `params`."""
        pipe = self.project.endpoint(name)
        return pipes.render_pipe(
            self.project, pipe, params, self.workspace.name, secrets=self._secrets(), skeletons=self.skeletons
        )

    def call_endpoint(self, name: str, params: dict[str, Any], fmt: str = "json") -> tuple[bytes, int, int]:
        """Run an endpoint: the response body (json, csv, ndjson or parquet), and the rows and bytes its query read
        from tables."""
        if fmt not in FORMATS:
            raise NotFoundError(f"unknown format '.{fmt}': use one of {', '.join('.' + f for f in FORMATS)}")
        sql = self.endpoint_sql(name, params)
        small = self.small_answers.get(name, False)
        result = self.workspace.engine.execute(
            sql, FORMATS[fmt], readonly=True, timeout=self.workspace.query_timeout, serial_output=small
        )
        body = result.bytes()
        self.small_answers[name] = len(body) < SMALL_ANSWER
        # storage_*: what the query read from tables, as Tinybird's statistics (rows_read() counts the result's rows)
        return body, result.storage_rows_read(), result.storage_bytes_read()

    def query_endpoint(self, name: str, params: dict[str, Any], fmt: str = "json") -> bytes:
        """Run an endpoint and return the response body in Tinybird's format (json, csv, ndjson)."""
        return self.call_endpoint(name, params, fmt)[0]

    def endpoint(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run an endpoint and return Tinybird's JSON response as a dict (meta, data, rows, statistics)."""
        return json.loads(self.query_endpoint(name, params or {}, "json"))

    def endpoint_columns(self, name: str) -> list[tuple[str, str]]:
        """The (name, type) of every column an endpoint returns, without running it."""
        pipe = self.project.endpoint(name)
        sql = pipes.render_pipe(self.project, pipe, {}, self.workspace.name, placeholders=True)
        text = self.workspace.read(f"DESCRIBE TABLE ({sql})", "TSV").bytes().decode()
        return [tuple(line.split("\t")[:2]) for line in text.splitlines() if line]

    def sql(self, text: str, params: dict[str, Any] | None = None, fmt: str = "JSON") -> bytes:
        """Run a read-only query over the workspace's datasources and endpoints (the Query API)."""
        return self.run_query(policy.plan(self.project, text, fmt), params)

    def run_query(self, plan: policy.QueryPlan, params: dict[str, Any] | None = None) -> bytes:
        """Run a Query API query that `policy.plan` allowed, read-only, and return the response body."""
        sql = policy.render(plan, self.project, self.workspace.name, params or {}, self._secrets(), self.service_tables)
        return self.workspace.read(sql, plan.fmt).bytes()
