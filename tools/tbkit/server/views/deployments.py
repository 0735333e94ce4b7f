"""Deployments: `tb build` and `tb deploy` uploads, the list, status, promotion and discarding (admin token).

Every workspace deploys the same way, the served (main) one included, as Tinybird Cloud's and Local's do:
`tb --cloud --host http://127.0.0.1:7181 --token <admin> deploy [--check]` deploys the main workspace.
"""

from __future__ import annotations

from ...errors import ParameterError
from ..base import BaseHandler
from ..workspaces import deployments
from ..workspaces.deployment import CHANGE_KEYS, DELETED, FAILED
from ..workspaces.tokens import ADMIN_SCOPE

DEPLOY_FLAGS = ("check", "auto_promote", "allow_destructive_operations")
NO_DEPLOYMENT = {"id": "0", "errors": [], "feedback": []}


def uploaded_datafiles(handler: BaseHandler) -> list[tuple[str, str]]:
    """The datafiles of a `tb build`/`tb deploy` multipart upload: (relative path, text)."""
    files = []
    for field_name, uploads in handler.request.files.items():
        if field_name.startswith("data_project"):
            files += [(upload.filename, upload.body.decode("utf-8")) for upload in uploads]
    if not files:
        raise ParameterError("No datafiles in the upload: send .datasource and .pipe files as data_project:// parts")
    return files


class DeployHandler(BaseHandler):
    """`POST /v1/deploy[?check=true][&auto_promote=true][&allow_destructive_operations=true]`.

    `check` validates without applying; `auto_promote` makes the deployment live at once (`tb deploy`);
    without it the deployment is staged (`tb deployment create`).
    """

    async def post(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        flag = {name: self.flag(name) for name in DEPLOY_FLAGS}
        files = uploaded_datafiles(self)
        outcome = await self.service.run(
            lambda: deployments.apply(
                self.service.registry,
                tenant,
                files,
                check=flag["check"],
                allow_destructive=flag["allow_destructive_operations"],
                live=flag["auto_promote"],
            )
        )
        if outcome.result == "failed":
            shown = {
                **outcome.changes,
                "id": "0",
                "status": FAILED,
                "live": False,
                "feedback": [],
                "errors": outcome.errors,
            }
        elif outcome.deployment is not None:
            shown = outcome.deployment.to_api()
        elif outcome.changes:  # checked: what it would change, nothing created
            shown = {**outcome.changes, "feedback": [], "errors": []}
        else:
            shown = NO_DEPLOYMENT
        self.send_json({"result": outcome.result, "deployment": shown})


class BuildHandler(BaseHandler):
    """`POST /v1/build`: rebuild the workspace from the uploaded datafiles, as `tb build` expects."""

    async def post(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        files = uploaded_datafiles(self)
        outcome = await self.service.run(
            lambda: deployments.apply(self.service.registry, tenant, files, allow_destructive=True)
        )
        if outcome.result == "failed":
            self.send_json({"result": "failed", "errors": outcome.errors})
        else:
            changes = {key: outcome.changes.get(key, []) for key in CHANGE_KEYS}
            self.send_json({"result": "success", "build": {**changes, "feedback": []}})


class DeploymentsHandler(BaseHandler):
    """`GET /v1/deployments[?include_deleted=true]`: the workspace's deployments, oldest first."""

    def get(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        shown = tenant.all_deployments()
        if not self.flag("include_deleted"):
            shown = [deployment for deployment in shown if deployment.status != DELETED]
        self.send_json({"deployments": [deployment.to_api() for deployment in shown]})


class DeploymentHandler(BaseHandler):
    """`GET /v1/deployments/<id>` (status), `DELETE` (discard a deployment that is not live)."""

    def get(self, deployment_id: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        self.send_json({"deployment": deployments.find(tenant, deployment_id).to_api()})

    async def delete(self, deployment_id: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        deployment = await self.service.run(deployments.discard, tenant, deployment_id)
        self.send_json({"deployment": deployment.to_api()})


class SetLiveHandler(BaseHandler):
    """`POST /v1/deployments/<id>/set-live`: promote a staged deployment."""

    async def post(self, deployment_id: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        deployment = await self.service.run(deployments.promote, self.service.registry, tenant, deployment_id)
        self.send_json({"result": "success", "deployment": deployment.to_api()})
