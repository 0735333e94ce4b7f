"""The part of Tinybird Local's API that `tb --local build|deploy|test run` uses, over the embedded engine.

`tb` first reads `/tokens` (unauthenticated, as Tinybird Local serves it, which is why this API is only
mounted with `tbkit serve --local-api`), lists and creates workspaces with the user and admin tokens,
then uses the workspace's token to upload datafiles to `/v1/build` or `/v1/deploy`, poll
`/v1/deployments/<id>`, append fixtures with `/v1/datasources/<name>/append` and call endpoints. The
installed `tb` client (site-packages `tinybird/tb/`) is the reference for every request and field here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import deployments
from .errors import AuthError, NotFoundError, ParameterError
from .server import BaseHandler, Service
from .tokens import new_token_value
from .workspaces import Tenant

LOCAL_TOKENS_FILE = "local_tokens.json"
ORGANIZATION_ID = "tbkit-local"


def local_tokens(data_dir: Path) -> dict[str, str]:
    """The user and admin tokens of the Local API, made once and kept (mode 0600) in the data directory."""
    path = Path(data_dir) / LOCAL_TOKENS_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    tokens = {"user_token": new_token_value(), "admin_token": new_token_value()}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(tokens, handle)
    return tokens


class LocalHandler(BaseHandler):
    """Local API handlers: the user/admin tokens, or a workspace token, depending on the route."""

    def require_user(self) -> None:
        """Accept only the Local API's user or admin token."""
        tokens = local_tokens(self.service.config.data_dir)
        if self.token_value() not in (tokens["user_token"], tokens["admin_token"]):
            raise AuthError("Invalid token: this route needs the user or admin token (GET /tokens)")

    def workspace_admin(self) -> Tenant:
        """The workspace of the request's token, which must be that workspace's admin token."""
        tenant, token = self.auth()
        if not token.admin:
            raise AuthError("Forbidden: this route needs the workspace's admin token")
        return tenant


class TokensHandler(LocalHandler):
    """`GET /tokens`: Tinybird Local's tokens, which `tb --local` reads first."""

    def get(self) -> None:
        tokens = local_tokens(self.service.config.data_dir)
        self.send_json({**tokens, "workspace_admin_token": self.service.main.tokens.admin.value})


class UserWorkspacesHandler(LocalHandler):
    """`GET /v1/user/workspaces`: the workspaces, with their tokens."""

    def get(self) -> None:
        self.require_user()
        workspaces = [tenant.describe() for tenant in self.service.registry.tenants.values()]
        self.send_json({"organization_id": ORGANIZATION_ID, "workspaces": workspaces})


class WorkspacesHandler(LocalHandler):
    """`POST /v1/workspaces?name=<name>`: create a workspace."""

    async def post(self) -> None:
        self.require_user()
        name = self.get_query_argument("name", None) or self.get_body_argument("name", None)
        tenant = await self.service.run(self.service.registry.create, name or "")
        self.send_json(tenant.describe())


class WorkspaceHandler(LocalHandler):
    """`DELETE /v1/workspaces/<id or name>`: delete a workspace and its data; `GET` describes it."""

    async def delete(self, key: str) -> None:
        self.require_user()
        tenant = await self.service.run(self.service.registry.delete, key)
        self.send_json({"id": tenant.id, "name": tenant.name, "deleted": True})

    def get(self, key: str) -> None:
        self.require_user()
        self.send_json(self.service.registry.find(key).describe())


class CurrentWorkspaceHandler(LocalHandler):
    """`GET /v0/workspace` and `/v1/workspace`: the workspace of the token."""

    def get(self) -> None:
        tenant, _ = self.auth()
        self.send_json({**tenant.describe(), "is_forward": True, "is_branch": False})


def _uploaded_datafiles(handler: BaseHandler) -> list[tuple[str, str]]:
    """The datafiles of a `tb build`/`tb deploy` multipart upload: (relative path, text)."""
    files = []
    for field_name, uploads in handler.request.files.items():
        if not field_name.startswith("data_project"):
            continue
        for upload in uploads:
            files.append((upload.filename, upload.body.decode("utf-8")))
    if not files:
        raise ParameterError("No datafiles in the upload: send .datasource and .pipe files as data_project:// parts")
    return files


class DeployHandler(LocalHandler):
    """`POST /v1/deploy[?check=true][&auto_promote=true][&allow_destructive_operations=true]`."""

    async def post(self) -> None:
        tenant = self.workspace_admin()
        flag = {k: self.get_query_argument(k, "false").lower() == "true" for k in _DEPLOY_FLAGS}
        result, record, errors = await self.service.run(
            lambda: deployments.apply(
                self.service.registry,
                tenant,
                _uploaded_datafiles(self),
                check=flag["check"],
                allow_destructive=flag["allow_destructive_operations"],
                live=flag["auto_promote"],
            )
        )
        if result == "failed":
            record = {**record, "id": "0", "status": "failed", "live": False, "feedback": [], "errors": errors}
        self.send_json({"result": result, "deployment": record or {"id": "0", "errors": [], "feedback": []}})


_DEPLOY_FLAGS = ("check", "auto_promote", "allow_destructive_operations")


class BuildHandler(LocalHandler):
    """`POST /v1/build`: rebuild the workspace from the uploaded datafiles, as `tb build` expects."""

    async def post(self) -> None:
        tenant = self.workspace_admin()
        result, record, errors = await self.service.run(
            lambda: deployments.apply(self.service.registry, tenant, _uploaded_datafiles(self), allow_destructive=True)
        )
        if result == "failed":
            self.send_json({"result": "failed", "errors": errors})
        else:
            changes = {key: record.get(key, []) for key in deployments.CHANGE_KEYS}
            self.send_json({"result": "success", "build": {**changes, "feedback": []}})


class DeploymentsHandler(LocalHandler):
    """`GET /v1/deployments`: the workspace's deployments, newest first."""

    def get(self) -> None:
        tenant = self.workspace_admin()
        current = [record for record in tenant.deployments if record["status"] != "deleted"]
        self.send_json({"deployments": list(reversed(current))})


def _deployment(tenant: Tenant, deployment_id: str) -> dict[str, Any]:
    for record in tenant.deployments:
        if record["id"] == deployment_id:
            return record
    raise NotFoundError(f"Deployment {deployment_id} not found")


class DeploymentHandler(LocalHandler):
    """`GET /v1/deployments/<id>` (status), `DELETE` (discard)."""

    def get(self, deployment_id: str) -> None:
        tenant = self.workspace_admin()
        self.send_json({"deployment": _deployment(tenant, deployment_id)})

    def delete(self, deployment_id: str) -> None:
        tenant = self.workspace_admin()
        record = _deployment(tenant, deployment_id)
        if record["live"]:
            raise ParameterError("The live deployment cannot be discarded")
        record["status"] = "deleted"
        tenant.save()
        self.send_json({"deployment": record})


class SetLiveHandler(LocalHandler):
    """`POST /v1/deployments/<id>/set-live`: promote a deployment."""

    def post(self, deployment_id: str) -> None:
        tenant = self.workspace_admin()
        record = _deployment(tenant, deployment_id)
        deployments.promote(tenant, record)
        tenant.save()
        self.send_json({"result": "success", "deployment": record})


class JobsHandler(LocalHandler):
    """`GET /v0/jobs[/<id>]`: appends finish before they answer, so every job is already done."""

    def get(self, job_id: str | None = None) -> None:
        tenant, _ = self.auth()
        jobs = self.service.jobs
        if job_id is None:
            self.send_json({"jobs": [job for job in jobs.values() if job["workspace"] == tenant.id]})
            return
        job = jobs.get(job_id)
        if job is None or job["workspace"] != tenant.id:
            raise NotFoundError(f"Job {job_id} not found")
        self.send_json(job)


class AppendV1Handler(LocalHandler):
    """`POST /v1/datasources/<name>/append?format=ndjson`: the append `tb` uses for fixtures."""

    async def post(self, name: str) -> None:
        tenant, token = self.auth()
        tenant.project.datasource(name)
        if not token.can_append(name):
            raise AuthError(f"Forbidden: this token has no APPEND scope on the Data Source '{name}'")
        fmt = self.get_query_argument("format", "ndjson")
        if fmt != "ndjson":
            raise ParameterError(f"Unsupported format '{fmt}': this server appends ndjson")
        result = await self.service.run(tenant.workspace.append, name, self.request.body)
        job = self.service.record_job(tenant, "import", name, result.to_dict(), result.import_id)
        self.send_json({**job, "job_id": job["id"], "job": job})


def routes(service: Service) -> list[tuple[str, type, dict[str, Any]]]:
    """The Local API's routes, to mount beside the regular API."""
    args = {"service": service}
    return [
        (r"/tokens", TokensHandler, args),
        (r"/v[01]/user/workspaces", UserWorkspacesHandler, args),
        (r"/v[01]/workspaces", WorkspacesHandler, args),
        (r"/v[01]/workspaces/([^/]+)", WorkspaceHandler, args),
        (r"/v[01]/workspace", CurrentWorkspaceHandler, args),
        (r"/v1/deploy", DeployHandler, args),
        (r"/v1/build", BuildHandler, args),
        (r"/v1/deployments", DeploymentsHandler, args),
        (r"/v1/deployments/([^/]+)", DeploymentHandler, args),
        (r"/v1/deployments/([^/]+)/set-live", SetLiveHandler, args),
        (r"/v0/jobs", JobsHandler, args),
        (r"/v0/jobs/([^/]+)", JobsHandler, args),
        (r"/v1/datasources/([^/]+)/append", AppendV1Handler, args),
    ]
