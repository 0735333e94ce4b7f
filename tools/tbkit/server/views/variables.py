"""Tinybird's Environment Variables API (`tb secret`): `/v0/variables` and `/v0/variables/<name>` (admin token).

`GET` lists, `POST name=&value=[&type=secret]` creates, `GET|PUT value=|DELETE /v0/variables/<name>` reads,
updates and deletes one. Secrets are kept per workspace in its folder of the data directory (mode 0600);
no answer carries a value.
"""

from __future__ import annotations

from ...errors import NotFoundError, ParameterError
from ..base import BaseHandler
from ..workspaces.secrets import SECRET_TYPE, SecretStore
from ..workspaces.tokens import ADMIN_SCOPE


class VariablesBase(BaseHandler):
    """The request's workspace secrets, behind the admin token."""

    def store(self) -> SecretStore:
        return self.require(ADMIN_SCOPE).secrets

    def edited_by(self) -> str | None:
        """Who changes a secret, as Tinybird records it: `token: '<token name>'`."""
        return f"token: '{self.token.name}'" if self.token is not None else None

    def argument(self, name: str) -> str | None:
        """A query or form-body argument (the `tb` client sends form bodies)."""
        return self.get_argument(name, None)


class VariablesHandler(VariablesBase):
    """`GET /v0/variables` lists the workspace's secrets; `POST /v0/variables` creates one."""

    def get(self) -> None:
        store = self.store()
        self.send_json({"variables": store.list()})

    async def post(self) -> None:
        store = self.store()
        name, value = self.argument("name"), self.argument("value")
        kind = self.argument("type") or SECRET_TYPE
        self.send_json(await self.service.run(store.create, name or "", value or "", self.edited_by(), kind))


class VariableHandler(VariablesBase):
    """`GET`, `PUT value=` and `DELETE /v0/variables/<name>`: one secret of the workspace."""

    def get(self, name: str) -> None:
        secret = self.store().get(name)
        if secret is None:
            raise NotFoundError(f"Variable '{name}' not found")
        self.send_json(secret)

    async def put(self, name: str) -> None:
        store = self.store()
        if self.argument("type") is not None:
            raise ParameterError("Variable type cannot be changed: send only the 'value' parameter")
        value = self.argument("value")
        self.send_json(await self.service.run(store.update, name, value or "", self.edited_by()))

    async def delete(self, name: str) -> None:
        store = self.store()
        await self.service.run(store.delete, name)
        self.send_json({"ok": True})
