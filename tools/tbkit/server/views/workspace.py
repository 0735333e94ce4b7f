"""`GET /v0/workspace` and `/v1/workspace`: the workspace of the request's token.

`tb` reads `id` and `name` (it keeps them in its config), `is_forward`, `is_branch` and `main`. Any token
of the workspace may ask; the answer carries no token value, so a read-only token learns nothing more.
"""

from __future__ import annotations

from ..base import BaseHandler
from ..workspaces.tokens import READ

PLAN = "dev"  # Tinybird's plan code of a free (Build) workspace, which `tb` shows as "Build"


class CurrentWorkspaceHandler(BaseHandler):
    """`GET /v0/workspace` and `/v1/workspace`: the workspace of the request's token."""

    def get(self) -> None:
        tenant = self.require(READ)
        self.send_json(
            {
                "id": tenant.id,
                "name": tenant.name,
                "plan": PLAN,
                "is_forward": True,
                "is_branch": False,
                "main": None,
            }
        )
