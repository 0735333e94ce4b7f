"""The Data Sources API: list, describe, append a file (v0 and v1), truncate."""

from __future__ import annotations

import time

from ...errors import ParameterError
from ...tokens import ADMIN_SCOPE, APPEND, READ
from ..base import BaseHandler
from ..bodies import decompress, format_of, to_ndjson, uploaded_file


class DatasourcesHandler(BaseHandler):
    """`POST /v0/datasources?name=<ds>&mode=append&format=ndjson|csv` with a file; `GET` lists them (admin)."""

    async def post(self) -> None:
        name = self.get_query_argument("name", None)
        if not name:
            raise ParameterError("The 'name' parameter is required: /v0/datasources?name=<datasource>&mode=append")
        mode = self.get_query_argument("mode", "append")
        if mode != "append":
            raise ParameterError(f"Unsupported mode '{mode}': this server supports mode=append")
        tenant = self.require(APPEND, name)
        datasource = tenant.project.datasource(name)
        data, filename = uploaded_file(self.request, self.service.config.max_upload_bytes)
        fmt = self.get_query_argument("format", None) or format_of(filename)
        data = decompress(data, None, self.service.config.max_upload_bytes)
        data = to_ndjson(data, fmt, [c.name for c in datasource.columns])
        started = time.perf_counter()
        result = await self.service.run(tenant.workspace.append, name, data)
        self.send_json(
            {
                "id": result.import_id,
                "import_id": result.import_id,
                "job_id": result.import_id,
                "datasource": {"id": name, "name": name},
                "successful_rows": result.successful_rows,
                "quarantined_rows": result.quarantined_rows,
                "quarantine_rows": result.quarantined_rows,
                "invalid_lines": 0,
                "error": False,
                "elapsed": round(time.perf_counter() - started, 3),
            }
        )

    async def get(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        names = sorted(tenant.project.datasources)
        self.send_json({"datasources": [{"name": n, "type": "ndjson"} for n in names]})


class DatasourceHandler(BaseHandler):
    """`GET /v0/datasources/<name>`: a datasource's schema, engine and row count (any scope on it)."""

    async def get(self, name: str) -> None:
        tenant = self.require((READ, APPEND), name)
        datasource = tenant.project.datasource(name)
        rows = await self.service.run(tenant.workspace.row_count, name)
        self.send_json(
            {
                "id": name,
                "name": name,
                "description": datasource.description,
                "type": "ndjson",
                "engine": {"engine": datasource.engine, **datasource.engine_args},
                "columns": [{"name": c.name, "type": c.full_type, "jsonpath": c.jsonpath} for c in datasource.columns],
                "statistics": {"row_count": rows},
            }
        )


class TruncateHandler(BaseHandler):
    """`POST /v0/datasources/<name>/truncate` (admin): empty a datasource and its quarantine."""

    async def post(self, name: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        await self.service.run(tenant.workspace.truncate, name)
        self.send_json({"result": "ok", "datasource": name})


class AppendHandler(BaseHandler):
    """`POST /v1/datasources/<name>/append?format=ndjson`: the append `tb` uses for fixtures, as a job."""

    async def post(self, name: str) -> None:
        tenant = self.require(APPEND, name)
        tenant.project.datasource(name)
        fmt = self.get_query_argument("format", "ndjson")
        if fmt != "ndjson":
            raise ParameterError(f"Unsupported format '{fmt}': this server appends ndjson")
        result = await self.service.run(tenant.workspace.append, name, self.request.body)
        job = self.service.jobs.record(tenant, "import", name, result)
        self.send_json({**job, "job_id": job["id"], "job": job})
