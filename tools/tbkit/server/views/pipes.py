"""The Pipes API: list and describe pipes, call an endpoint, a pipe's datafile, and the endpoints' OpenAPI document.

Pipes are described as Tinybird's Pipes API does (`id`, `name`, `type`: endpoint, materialized, copy, sink or
default, `endpoint`, `nodes`, `created_at`, `updated_at`, ...), with ids in Tinybird's form (`resource_id`, the
form the Data Sources API gives datasources; a materialized node's `materialized` is its target's id there); a
pipe is found by name or id. Every endpoint call is recorded for the service datasources `tinybird.pipe_stats_rt` and
`tinybird.pipe_stats` (`tbkit.stats`), under the pipe's id and name.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from ...errors import NotFoundError, ParameterError
from ...project.datafiles import Node, Pipe
from .. import openapi
from ..base import BaseHandler
from ..workspaces.deployment import FAILED
from ..workspaces.registry import Tenant
from ..workspaces.tokens import ADMIN_SCOPE, READ
from .endpoints import FORMATS

PIPE_ATTRS = ("id", "name", "description", "type", "endpoint", "url", "created_at", "updated_at", "parent", "nodes")
NODE_ATTRS = (
    "id",
    "name",
    "sql",
    "description",
    "node_type",
    "materialized",
    "dependencies",
    "cluster",
    "tags",
    "created_at",
    "updated_at",
    "version",
    "project",
    "result",
    "ignore_sql_errors",
)
_OUTPUT_TYPES = ("endpoint", "materialized", "copy", "sink")


def find_pipe(tenant: Tenant, name_or_id: str) -> Pipe:
    """The pipe with this name or id; NotFoundError otherwise."""
    pipes = tenant.project.pipes
    if name_or_id in pipes:
        return pipes[name_or_id]
    for name, pipe in pipes.items():
        if tenant.resource_id(name) == name_or_id:
            return pipe
    raise NotFoundError(f"The pipe '{name_or_id}' does not exist")


def pipe_type(pipe: Pipe) -> str:
    """The pipe's type as Tinybird names it: endpoint, materialized, copy, sink or default."""
    return pipe.kind if pipe.kind in _OUTPUT_TYPES else "default"


def _timestamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def pipe_times(tenant: Tenant) -> dict[str, tuple[str, str]]:
    """(created_at, updated_at) of every pipe of a workspace, as Tinybird formats them.

    From the deployments that added and last changed each pipe; a pipe no deployment names (the served project
    folder) takes its datafile's modification time for both.
    """
    times: dict[str, tuple[str, str]] = {}
    for deployment in tenant.deployments:
        if deployment.status == FAILED:
            continue
        when = _timestamp(dt.datetime.strptime(deployment.created_at[:19], "%Y-%m-%d %H:%M:%S"))
        for name in deployment.changed("new_pipe_names"):
            times[name] = (when, when)
        for name in deployment.changed("changed_pipe_names"):
            times[name] = (times.get(name, (when, when))[0], when)
    for name, pipe in tenant.project.pipes.items():
        if name not in times:
            modified = _timestamp(dt.datetime.fromtimestamp(pipe.path.stat().st_mtime, dt.UTC))
            times[name] = (modified, modified)
    return times


def describe_node(tenant: Tenant, pipe: Pipe, node: Node, when: tuple[str, str]) -> dict[str, Any]:
    """A node as Tinybird's Pipes API shows it."""
    output = node is pipe.output_node and pipe.kind in _OUTPUT_TYPES
    target = node.datasource if output and node.type == "materialized" else None
    return {
        "id": tenant.resource_id(f"{pipe.name}/{node.name}"),
        "name": node.name,
        "sql": node.sql,
        "description": node.description,
        "node_type": node.type if output else "standard",
        "materialized": tenant.resource_id(target) if target else None,
        "dependencies": list(node.reads),
        "cluster": None,
        "tags": {},
        "created_at": when[0],
        "updated_at": when[1],
        "version": 0,
        "project": None,
        "result": None,
        "ignore_sql_errors": False,
    }


def describe_pipe(tenant: Tenant, pipe: Pipe, when: tuple[str, str], base_url: str) -> dict[str, Any]:
    """A pipe as Tinybird's Pipes API shows it (`GET /v0/pipes`, `GET /v0/pipes/<name>`)."""
    kind = pipe_type(pipe)
    endpoint = tenant.resource_id(f"{pipe.name}/{pipe.output_node.name}") if kind == "endpoint" else None
    return {
        "id": tenant.resource_id(pipe.name),
        "name": pipe.name,
        "description": pipe.description,
        "type": kind,
        "endpoint": endpoint,
        "url": f"{base_url}/v0/pipes/{pipe.name}.json" if kind == "endpoint" else None,
        "created_at": when[0],
        "updated_at": when[1],
        "parent": None,
        "nodes": [describe_node(tenant, pipe, node, when) for node in pipe.nodes],
    }


def _attribute_list(value: str, known: tuple[str, ...], parameter: str) -> tuple[str, ...] | None:
    """The attributes a comma-separated `attrs`/`node_attrs` asks for (None: all); ParameterError on unknown ones."""
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ParameterError(
            f"Unknown attribute{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)} in "
            f"'{parameter}': use a comma-separated list of {', '.join(known)}"
        )
    return names or None


class PipesHandler(BaseHandler):
    """`GET /v0/pipes[?attrs=...&node_attrs=...&dependencies=true]`: the pipes the token can read.

    The admin token sees every pipe; a token with READ on some endpoints sees those. `attrs` and `node_attrs`
    keep only the named attributes of pipes and nodes (`nodes` is always there); node `dependencies` (the
    datasources and nodes a node reads) are listed with `dependencies=true`.
    """

    async def get(self) -> None:
        tenant = self.require(READ)
        attrs = _attribute_list(self.get_query_argument("attrs", ""), PIPE_ATTRS, "attrs")
        node_attrs = _attribute_list(self.get_query_argument("node_attrs", ""), NODE_ATTRS, "node_attrs")
        dependencies = self.flag("dependencies")
        times = pipe_times(tenant)
        base_url = f"{self.request.protocol}://{self.request.host}"
        listed = []
        for name in sorted(tenant.project.pipes):
            if not self.token.allows(READ, name):
                continue
            pipe = describe_pipe(tenant, tenant.project.pipes[name], times[name], base_url)
            nodes = [
                {k: v for k, v in node.items() if (node_attrs is None or k in node_attrs)} for node in pipe["nodes"]
            ]
            if not dependencies and (node_attrs is None or "dependencies" not in node_attrs):
                for node in nodes:
                    node.pop("dependencies", None)
            pipe = {k: v for k, v in pipe.items() if attrs is None or k in attrs}
            listed.append({**pipe, "nodes": nodes})
        self.send_json({"pipes": listed})


class PipeHandler(BaseHandler):
    """`GET /v0/pipes/<name or id>`: one pipe, its nodes and their types (`tb test run` reads the output node's)."""

    def get(self, name_or_id: str) -> None:
        tenant = self.require(READ)
        pipe = find_pipe(tenant, name_or_id)
        self.require(READ, pipe.name)
        base_url = f"{self.request.protocol}://{self.request.host}"
        self.send_json(describe_pipe(tenant, pipe, pipe_times(tenant)[pipe.name], base_url))


class PipeFileHandler(BaseHandler):
    """`GET /v1/pipes/<name>.pipe`: a pipe's datafile (`tb endpoint token` checks the pipe exists with it)."""

    def get(self, name_or_id: str) -> None:
        tenant = self.require(READ)
        pipe = find_pipe(tenant, name_or_id)
        self.require(READ, pipe.name)
        self.set_header("Content-Type", "text/plain")
        self.finish(pipe.path.read_text(encoding="utf-8"))


class ExampleQueryHandler(BaseHandler):
    """`GET /examples/query.http?pipe=<name>&format=json&token=...`: the URL that calls an endpoint.

    `tb endpoint url` and `tb endpoint ls` print it: the endpoint's URL with its token (and `q` when given).
    """

    def get(self) -> None:
        name = self.get_query_argument("pipe", "")
        if not name:
            raise ParameterError("The 'pipe' parameter is required: /examples/query.http?pipe=<endpoint>")
        fmt = self.get_query_argument("format", "json")
        if fmt not in FORMATS:
            raise ParameterError(f"Unsupported format '{fmt}': use one of {', '.join(FORMATS)}")
        tenant = self.require(READ, name)
        tenant.project.endpoint(name)
        params = {"q": self.get_query_argument("q", "")}
        query = urlencode({k: v for k, v in params.items() if v} | {"token": self.token.value})
        self.set_header("Content-Type", "text/plain")
        self.finish(f"{self.request.protocol}://{self.request.host}/v0/pipes/{name}.{fmt}?{query}")


class ExplainHandler(BaseHandler):
    """`GET /v0/pipes/<name>/explain?<parameters>` (admin token): `{"debug_query": ...}`, the SELECT a call of the
    endpoint with these parameters runs, as the engine runs it (bad parameters are the call's 400)."""

    async def get(self, name: str) -> None:
        tenant = self.require(ADMIN_SCOPE)  # the SQL names the workspace's tables: not for scoped tokens
        tenant.project.endpoint(name)
        sql = await self.service.run(tenant.reader.endpoint_sql, name, self.query_params())
        self.send_json({"debug_query": sql})


class OpenApiHandler(BaseHandler):
    """`GET /v0/pipes/openapi.json`: the OpenAPI 3 document of the endpoints the token can read."""

    async def get(self) -> None:
        tenant = self.require(READ)
        columns = await self.service.run(self.service.endpoint_columns, tenant)
        readable = {n: p for n, p in tenant.project.endpoints.items() if self.token.allows(READ, n)}
        url = f"{self.request.protocol}://{self.request.host}"
        self.send_json(openapi.document(readable, columns, url))
