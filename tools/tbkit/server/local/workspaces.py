"""Workspaces: list them with their tokens, create, describe and delete them, and the token's own."""

from __future__ import annotations

from ..base import BaseHandler
from ..workspaces.tokens import ADMIN_SCOPE, USER

ORGANIZATION_ID = "tbkit-local"


class UserWorkspacesHandler(BaseHandler):
    """`GET /v1/user/workspaces`: the user's workspaces with their admin tokens.

    A user token sees every workspace; a workspace's admin token (what `tb info` sends) sees its own only,
    so it never learns another workspace's token.
    """

    def get(self) -> None:
        tenant = self.require((USER, ADMIN_SCOPE))
        tenants = self.service.registry.tenants.values() if self.token.user else [tenant]
        workspaces = [each.describe(with_token=True) for each in tenants]
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
