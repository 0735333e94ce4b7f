"""The Pipes API: call an endpoint, describe a pipe, and the OpenAPI document of the endpoints."""

from __future__ import annotations

import json

from ... import openapi
from ...errors import NotFoundError, ParameterError
from ...tokens import READ
from ..base import BaseHandler

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


class EndpointHandler(BaseHandler):
    """`GET|POST /v0/pipes/<name>.json|.csv|.ndjson`: call an endpoint (POST takes a JSON body too)."""

    async def get(self, name: str, fmt: str) -> None:
        await self._answer(name, fmt, self.query_params())

    async def post(self, name: str, fmt: str) -> None:
        params = self.query_params()
        if self.request.body and "json" in self.request.headers.get("Content-Type", ""):
            try:
                params.update({k: str(v) for k, v in json.loads(self.request.body).items()})
            except (ValueError, AttributeError):
                raise ParameterError("The body must be a JSON object of parameters") from None
        await self._answer(name, fmt, params)

    async def _answer(self, name: str, fmt: str, params: dict[str, str]) -> None:
        tenant = self.require(READ, name)
        tenant.project.endpoint(name)
        body = await self.service.run(tenant.workspace.query_endpoint, name, params, fmt)
        self.set_header("Content-Type", FORMATS[fmt])
        self.finish(body)


class PipeHandler(BaseHandler):
    """`GET /v0/pipes/<name>`: a pipe's nodes and their types, as `tb test run` reads them."""

    def get(self, name: str) -> None:
        tenant = self.require(READ, name)
        pipe = tenant.project.pipes.get(name)
        if pipe is None:
            raise NotFoundError(f"The pipe '{name}' does not exist")
        output = pipe.output_node
        nodes = [
            {
                "id": node.name,
                "name": node.name,
                "sql": node.sql,
                "description": node.description,
                "node_type": node.type if node is output and pipe.kind != "pipe" else "standard",
            }
            for node in pipe.nodes
        ]
        self.send_json({"id": name, "name": name, "description": pipe.description, "type": pipe.kind, "nodes": nodes})


class OpenApiHandler(BaseHandler):
    """`GET /v0/pipes/openapi.json`: the OpenAPI 3 document of the endpoints the token can read."""

    async def get(self) -> None:
        tenant = self.require(READ)
        columns = await self.service.run(self.service.endpoint_columns, tenant)
        readable = {n: p for n, p in tenant.project.endpoints.items() if self.token.allows(READ, n)}
        url = f"{self.request.protocol}://{self.request.host}"
        self.send_json(openapi.document(readable, columns, url))
