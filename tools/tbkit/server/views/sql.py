"""`GET|POST /v0/sql?q=...`: the Query API, a read-only query over datasources and endpoints."""

from __future__ import annotations

from ...errors import ParameterError
from ...query import policy as query_api
from ..base import BaseHandler
from ..workspaces.tokens import READ


class SqlHandler(BaseHandler):
    """The query is planned once (`query_api.plan`): the token must read every resource the plan names."""

    async def get(self) -> None:
        await self._answer(self.get_query_argument("q", None))

    async def post(self) -> None:
        q = self.get_query_argument("q", None) or self.get_body_argument("q", None)
        if q is None and self.request.body:
            q = self.request.body.decode("utf-8", "replace")
        await self._answer(q)

    async def _answer(self, q: str | None) -> None:
        if not q or not q.strip():
            raise ParameterError("The 'q' parameter is required: /v0/sql?q=SELECT ...")
        tenant = self.require(READ)
        # Planned on a pool thread, whose large stack lets Tinybird's SQL parser refuse a deeply nested query
        # with an error instead of overflowing the event loop's stack (service.PARSER_STACK_BYTES).
        pipeline = self.get_argument("pipeline", None)
        plan = await self.service.run(lambda: query_api.plan(tenant.project, q, pipeline=pipeline))
        self.require(READ, *plan.resources)
        body = await self.service.run(tenant.reader.run_query, plan, self.query_params("q", "pipeline"))
        self.set_header("Content-Type", CONTENT_TYPES.get(plan.fmt, "text/plain; charset=utf-8"))
        self.finish(body)


# The Content-Type of each output format: `tb` reads JSON as JSON and returns CSV and NDJSON as text.
CONTENT_TYPES = {
    "JSON": "application/json",
    "JSONCompact": "application/json",
    "JSONEachRow": "application/x-ndjson",
    "CSV": "text/csv; charset=utf-8",
    "CSVWithNames": "text/csv; charset=utf-8",
    "TSV": "text/tab-separated-values; charset=utf-8",
    "TSVWithNames": "text/tab-separated-values; charset=utf-8",
    "Parquet": "application/octet-stream",
}
