"""Deployments: `tb build` and `tb deploy` uploads, their status, promotion and discarding (admin token)."""

from __future__ import annotations

from typing import Any

from ... import deployments
from ...errors import NotFoundError, ParameterError
from ...tokens import ADMIN_SCOPE
from ...workspaces import Tenant
from ..base import BaseHandler

DEPLOY_FLAGS = ("check", "auto_promote", "allow_destructive_operations")


def uploaded_datafiles(handler: BaseHandler) -> list[tuple[str, str]]:
    """The datafiles of a `tb build`/`tb deploy` multipart upload: (relative path, text)."""
    files = []
    for field_name, uploads in handler.request.files.items():
        if field_name.startswith("data_project"):
            files += [(upload.filename, upload.body.decode("utf-8")) for upload in uploads]
    if not files:
        raise ParameterError("No datafiles in the upload: send .datasource and .pipe files as data_project:// parts")
    return files


def find_deployment(tenant: Tenant, deployment_id: str) -> dict[str, Any]:
    """A deployment record of the workspace, by id."""
    for record in tenant.deployments:
        if record["id"] == deployment_id:
            return record
    raise NotFoundError(f"Deployment {deployment_id} not found")


class DeployHandler(BaseHandler):
    """`POST /v1/deploy[?check=true][&auto_promote=true][&allow_destructive_operations=true]`."""

    async def post(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        flag = {name: self.flag(name) for name in DEPLOY_FLAGS}
        files = uploaded_datafiles(self)
        result, record, errors = await self.service.run(
            lambda: deployments.apply(
                self.service.registry,
                tenant,
                files,
                check=flag["check"],
                allow_destructive=flag["allow_destructive_operations"],
                live=flag["auto_promote"],
            )
        )
        if result == "failed":
            record = {**record, "id": "0", "status": "failed", "live": False, "feedback": [], "errors": errors}
        self.send_json({"result": result, "deployment": record or {"id": "0", "errors": [], "feedback": []}})


class BuildHandler(BaseHandler):
    """`POST /v1/build`: rebuild the workspace from the uploaded datafiles, as `tb build` expects."""

    async def post(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        files = uploaded_datafiles(self)
        result, record, errors = await self.service.run(
            lambda: deployments.apply(self.service.registry, tenant, files, allow_destructive=True)
        )
        if result == "failed":
            self.send_json({"result": "failed", "errors": errors})
        else:
            changes = {key: record.get(key, []) for key in deployments.CHANGE_KEYS}
            self.send_json({"result": "success", "build": {**changes, "feedback": []}})


class DeploymentsHandler(BaseHandler):
    """`GET /v1/deployments`: the workspace's deployments, newest first."""

    def get(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        current = [record for record in tenant.deployments if record["status"] != "deleted"]
        self.send_json({"deployments": list(reversed(current))})


class DeploymentHandler(BaseHandler):
    """`GET /v1/deployments/<id>` (status), `DELETE` (discard)."""

    def get(self, deployment_id: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        self.send_json({"deployment": find_deployment(tenant, deployment_id)})

    def delete(self, deployment_id: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        record = find_deployment(tenant, deployment_id)
        if record["live"]:
            raise ParameterError("The live deployment cannot be discarded")
        record["status"] = "deleted"
        tenant.save()
        self.send_json({"deployment": record})


class SetLiveHandler(BaseHandler):
    """`POST /v1/deployments/<id>/set-live`: promote a deployment."""

    def post(self, deployment_id: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        record = find_deployment(tenant, deployment_id)
        deployments.promote(tenant, record)
        tenant.save()
        self.send_json({"result": "success", "deployment": record})
