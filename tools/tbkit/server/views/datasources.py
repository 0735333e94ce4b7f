"""The Data Sources API: list and describe datasources, append or replace a file (v0 and v1), truncate, delete
rows, and the Analyze and Dependencies APIs that `tb datasource` calls.

Scopes as Tinybird's: appending needs `DATASOURCES:APPEND` on the datasource (or the admin token); replacing,
truncating and deleting rows need `DATASOURCES:CREATE`, which this server grants only to the admin token, as it
does analyzing a file and listing dependencies. Listing and describing needs `DATASOURCES:READ` (or APPEND, to
describe the datasource a token appends to).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from ...engine import AppendResult, ddl
from ...errors import NotFoundError, ParameterError, PayloadTooLargeError
from ...query import policy
from ..analyze import analyze
from ..base import BaseHandler
from ..bodies import decompress, format_of, to_ndjson, uploaded_file
from ..workspaces.registry import Tenant
from ..workspaces.tokens import ADMIN_SCOPE, APPEND, READ

# Import formats this server reads, as `tb` names them (`format=`), and the ones it refuses with a reason.
FORMATS = ("ndjson", "csv")
MODES = ("append", "replace")


def resolve(tenant: Tenant, name_or_id: str) -> str:
    """The name of the datasource called, or with the id, `name_or_id`; NotFoundError otherwise."""
    if name_or_id in tenant.project.datasources:
        return name_or_id
    for name in tenant.project.datasources:
        if tenant.resource_id(name) == name_or_id:
            return name
    return tenant.project.datasource(name_or_id).name  # raises NotFoundError naming the known ones


def _time(text: str) -> str:
    """A time of system.tables / system.parts in Tinybird's form, `2024-07-22 11:47:58.000000`."""
    return f"{text}.000000" if text else ""


def describe(tenant: Tenant, name: str, stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A datasource as Tinybird's Data Sources API answers it (GET /v0/datasources[/<name>])."""
    datasource = tenant.project.datasource(name)
    own = stats.get(name, {})
    quarantine = stats.get(name + "_quarantine", {})
    args = datasource.engine_args
    engine: dict[str, Any] = {"engine": datasource.engine}
    for key in ("sorting_key", "partition_key", "primary_key", "ttl", "ver", "sign", "version", "settings"):
        if args.get(key):
            engine[f"engine_{key}"] = args[key]
    targets = ddl.materializations_reading(tenant.project, name)
    feeding = [p for p in tenant.project.materializations.values() if p.output_node.datasource == name]
    return {
        "id": tenant.resource_id(name),
        "name": name,
        "description": datasource.description,
        "type": "ndjson",
        "cluster": "tbkit",
        "tags": {},
        "created_at": _time(own.get("created_at", "")),
        "updated_at": _time(own.get("updated_at", "")),
        "replicated": False,
        "version": 0,
        "project": None,
        "headers": {},
        "shared_with": [],
        "engine": engine,
        "columns": [
            {
                "name": c.name,
                "type": c.full_type,
                "codec": c.codec,
                "default_value": c.default,
                "jsonpath": c.jsonpath,
                "nullable": c.nullable,
                "normalized_name": c.name,
            }
            for c in datasource.columns
        ],
        "schema": ", ".join(
            f"{c.name} {c.full_type}" + (f" `json:{c.jsonpath}`" if c.jsonpath else "") for c in datasource.columns
        ),
        "indexes": [
            {"name": i.name, "expr": i.expr, "type": i.type_full, "granularity": i.granularity}
            for i in datasource.indexes
        ],
        "used_by": [{"id": p.name, "name": p.name} for p in targets],
        "materialized_from": [{"id": p.name, "name": p.name} for p in feeding],
        "new_columns_detected": {},
        "quarantine_rows": quarantine.get("row_count", 0),
        "statistics": {"bytes": own.get("bytes", 0), "row_count": own.get("row_count", 0)},
    }


class DatasourcesHandler(BaseHandler):
    """`GET /v0/datasources`: the datasources the token reads; `POST /v0/datasources?name=<ds>&mode=append|replace`
    with a file (multipart or the body), `format=ndjson|csv`, `replace_condition` for a partial replace."""

    async def get(self) -> None:
        tenant = self.require(READ)  # any token of the workspace; the list holds what it may read
        names = sorted(n for n in tenant.project.datasources if self.token.allows(READ, n))
        if not names:
            self.require(ADMIN_SCOPE)  # a token that reads no datasource may not list them (403)
        stats = await self.service.run(tenant.workspace.datasource_stats)
        self.send_json({"datasources": [describe(tenant, name, stats) for name in names]})

    async def post(self) -> None:
        name = self.get_query_argument("name", None)
        if not name:
            raise ParameterError("The 'name' parameter is required: /v0/datasources?name=<datasource>&mode=append")
        mode = self.get_query_argument("mode", "append")
        if mode not in MODES:
            raise ParameterError(
                f"Unsupported mode '{mode}': this server appends to or replaces the data of a datasource its "
                "deployment created (mode=append or mode=replace)"
            )
        tenant = self.require(APPEND if mode == "append" else ADMIN_SCOPE)
        name = resolve(tenant, name)
        self.require(APPEND if mode == "append" else ADMIN_SCOPE, name)
        if self.get_query_argument("url", None):
            raise ParameterError("Importing from a URL is not supported by this server: upload the file instead")
        data, filename = uploaded_file(self.request, self.service.config.max_upload_bytes)
        fmt = self.get_query_argument("format", None) or format_of(filename)
        await import_data(self, tenant, name, mode, data, fmt)


def job_url(handler: BaseHandler, job_id: str) -> str:
    """Where the Jobs API answers a job, on the host the request came to."""
    return f"{handler.request.protocol}://{handler.request.host}/v0/jobs/{job_id}"


async def import_data(handler: BaseHandler, tenant: Tenant, name: str, mode: str, data: bytes, fmt: str) -> None:
    """Append or replace with `data` in `fmt` (as `handler` asked); answer the finished import job."""
    if fmt not in FORMATS:
        raise ParameterError(f"Unsupported format '{fmt}': this server imports {' or '.join(FORMATS)}")
    datasource = tenant.project.datasource(name)
    limit = handler.service.config.max_upload_bytes
    if len(data) > limit:
        raise PayloadTooLargeError(f"The file is larger than the import limit of {limit} bytes")
    data = decompress(data, handler.request.headers.get("Content-Encoding"), limit)
    data = to_ndjson(data, fmt, [c.name for c in datasource.columns])
    condition = handler.get_argument("replace_condition", None) if mode == "replace" else None
    checked = None if condition is None else policy.check_condition(tenant.project, name, condition)
    started = time.perf_counter()
    began = datetime.now(UTC)
    workspace = tenant.workspace
    if mode == "replace":
        result = await handler.service.run(workspace.replace, name, data, checked)
    else:
        result = await handler.service.run(workspace.append, name, data)
    job = handler.service.jobs.record(tenant, "import", name, result, started=began, bytes_read=len(data), mode=mode)
    handler.send_json(
        {
            **job,
            "id": result.import_id,
            "job_id": result.import_id,
            "import_id": result.import_id,
            "job_url": job_url(handler, result.import_id),
            "job": job,
            "mode": mode,
            "datasource": {"id": tenant.resource_id(name), "name": name},
            "successful_rows": result.successful_rows,
            "quarantined_rows": result.quarantined_rows,
            "quarantine_rows": result.quarantined_rows,
            "invalid_lines": 0,
            "elapsed": round(time.perf_counter() - started, 3),
            **({"replace_condition": condition} if condition else {}),
        }
    )


class DatasourceHandler(BaseHandler):
    """`GET /v0/datasources/<name or id>`: a datasource's schema, engine and statistics (READ or APPEND on it)."""

    async def get(self, name: str) -> None:
        tenant = self.require((READ, APPEND))
        name = resolve(tenant, name)
        self.require((READ, APPEND), name)
        stats = await self.service.run(tenant.workspace.datasource_stats)
        self.send_json(describe(tenant, name, stats))


class TruncateHandler(BaseHandler):
    """`POST /v0/datasources/<name>/truncate` (admin): empty a datasource and its quarantine.

    As Tinybird, the datasources its materializations feed keep their rows; `tb datasource truncate --cascade`
    asks `/v0/dependencies` for them and truncates each.
    """

    async def post(self, name: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        name = resolve(tenant, name)
        await self.service.run(tenant.workspace.truncate, name)
        self.send_json({"result": "ok", "datasource": name})


class DeleteHandler(BaseHandler):
    """`POST /v0/datasources/<name>/delete` (admin) with `delete_condition`: delete the matching rows, as a job
    (done when it answers); `dry_run=true` only counts them. `/v1/.../delete` is the lightweight delete, which
    answers `rows_affected` (with `wait=false`, a job).

    As Tinybird, deleting rows does not cascade to the datasources materializations feed from this one.
    """

    async def post(self, version: str, name: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        name = resolve(tenant, name)
        condition = self.get_argument("delete_condition", None)
        if condition is None or not condition.strip():
            raise ParameterError(
                "The 'delete_condition' parameter is required: a SQL condition on the datasource's columns, "
                "e.g. delete_condition=country='ES'"
            )
        workspace = tenant.workspace
        checked = policy.check_condition(tenant.project, name, condition)
        if self.get_argument("dry_run", "false").lower() in ("true", "1"):
            rows = await self.service.run(workspace.count_where, name, checked)
            self.send_json({"rows_to_be_deleted": rows})
            return
        started = time.perf_counter()
        rows = await self.service.run(workspace.delete_rows, name, checked)
        if version == "v1" and self.get_argument("wait", "true").lower() in ("true", "1"):
            self.send_json(
                {
                    "rows_affected": rows,
                    "datasource": {"id": tenant.resource_id(name), "name": name},
                    "delete_condition": condition,
                    "mutation": {"partitions_scanned": 0, "partitions_done": 0, "partitions_in_progress": 0},
                    "elapsed": round(time.perf_counter() - started, 3),
                }
            )
            return
        job_id = str(uuid.uuid4())
        job = self.service.jobs.record(tenant, "delete_data", name, AppendResult(name, 0, 0, job_id))
        self.send_json(
            {
                **job,
                "id": job_id,
                "job_id": job_id,
                "delete_id": job_id,
                "job_url": job_url(self, job_id),
                "job": job,
                "delete_condition": condition,
                "rows_affected": rows,
                "datasource": {"id": tenant.resource_id(name), "name": name},
            }
        )


class ImportHandler(BaseHandler):
    """`POST /v1/datasources/<name>/append|replace?format=ndjson|csv`: what `tb datasource append|replace` sends
    (the file as the body, gzip when `Content-Encoding` says so; `replace_condition` for a partial replace). The
    import runs before it answers, so its job is done when `tb` asks the Jobs API."""

    async def post(self, name: str, mode: str) -> None:
        scope = APPEND if mode == "append" else ADMIN_SCOPE
        tenant = self.require(scope)
        name = resolve(tenant, name)
        self.require(scope, name)
        if self.get_query_argument("url", None):
            raise ParameterError("Importing from a URL is not supported by this server: send the file as the body")
        fmt = self.get_query_argument("format", "ndjson")
        data = self.request.body
        if self.request.files:
            data, _ = uploaded_file(self.request, self.service.config.max_upload_bytes)
        await import_data(self, tenant, name, mode, data, fmt)


class AnalyzeHandler(BaseHandler):
    """`POST /v0/analyze` (admin): the schema Tinybird would guess for an NDJSON or CSV sample (multipart or the
    body; `format=` when the content does not tell)."""

    async def post(self) -> None:
        self.require(ADMIN_SCOPE)
        if self.get_query_argument("url", None):
            raise ParameterError("Analyzing a URL is not supported by this server: send the file (or its start)")
        limit = self.service.config.max_upload_bytes
        data, filename = uploaded_file(self.request, limit)
        data = decompress(data, self.request.headers.get("Content-Encoding"), limit)
        fmt = self.get_query_argument("format", None) or (format_of(filename) if filename else None)
        self.send_json(await self.service.run(analyze, data, fmt))


class DependenciesHandler(BaseHandler):
    """`GET /v0/dependencies` (admin): datasources and the materializations that depend on them.

    With `datasource=<ds>&check_for_partial_replace=true` (what `tb datasource truncate --cascade` asks): the
    datasources fed from `<ds>` through materializations, each with the pipes that feed it (`recursive=true`
    goes past the first level). Otherwise every datasource (or `<ds>`, or those matching `match`, or those
    `pipe` reads) with the materializations that read it.
    """

    def get(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        project = tenant.project
        datasource = self.get_query_argument("datasource", None)
        if datasource is not None:
            datasource = resolve(tenant, datasource)
        dependencies: dict[str, list[str]] = {}
        if datasource is not None and self.flag("check_for_partial_replace"):
            if self.flag("recursive"):
                targets = ddl.downstream(project, datasource)
            else:
                targets = [p.output_node.datasource for p in ddl.materializations_reading(project, datasource)]
            for target in targets:
                pipes = [p for p in project.materializations.values() if p.output_node.datasource == target]
                dependencies[target] = sorted(p.name for p in pipes)
            self.send_json({"dependencies": dependencies, "incompatible_datasources": {}})
            return
        names = sorted(project.datasources)
        if datasource is not None:
            names = [datasource]
        pipe = self.get_query_argument("pipe", None)
        if pipe is not None:
            if pipe not in project.pipes:
                raise NotFoundError(f"Pipe '{pipe}' not found")
            read = {t for n in project.pipes[pipe].nodes for t in n.reads}
            names = [n for n in names if n in read]
        match = self.get_query_argument("match", None)
        if match:
            names = [n for n in names if match in n]
        for name in names:
            dependencies[name] = (
                [] if self.flag("no_deps") else [p.name for p in ddl.materializations_reading(project, name)]
            )
        self.send_json({"dependencies": dependencies})
