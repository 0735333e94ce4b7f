"""Workspaces: list them with their tokens, create, describe and delete them, and the token's own."""

from __future__ import annotations

from ...tokens import USER
from ..base import BaseHandler

ORGANIZATION_ID = "tbkit-local"


class UserWorkspacesHandler(BaseHandler):
    """`GET /v1/user/workspaces`: every workspace, with its admin token (user token)."""

    def get(self) -> None:
        self.require(USER)
        workspaces = [tenant.describe(with_token=True) for tenant in self.service.registry.tenants.values()]
        self.send_json({"organization_id": ORGANIZATION_ID, "workspaces": workspaces})


class WorkspacesHandler(BaseHandler):
    """`POST /v1/workspaces?name=<name>`: create a workspace (user token)."""

    async def post(self) -> None:
        self.require(USER)
        name = self.get_query_argument("name", None) or self.get_body_argument("name", None)
        tenant = await self.service.run(self.service.registry.create, name or "")
        self.send_json(tenant.describe(with_token=True))


class WorkspaceHandler(BaseHandler):
    """`GET /v1/workspaces/<id or name>` describes a workspace; `DELETE` drops it and its data (user token)."""

    def get(self, key: str) -> None:
        self.require(USER)
        self.send_json(self.service.registry.find(key).describe(with_token=True))

    async def delete(self, key: str) -> None:
        self.require(USER)
        tenant = await self.service.run(self.service.registry.delete, key)
        self.send_json({"id": tenant.id, "name": tenant.name, "deleted": True})
