"""`GET /v0/workspace` and `/v1/workspace`: the workspace of the request's token."""

from __future__ import annotations

from ...tokens import READ
from ..base import BaseHandler


class CurrentWorkspaceHandler(BaseHandler):
    """`GET /v0/workspace` and `/v1/workspace`: the workspace of the request's token."""

    def get(self) -> None:
        tenant = self.require(READ)
        self.send_json({**tenant.describe(), "is_forward": True, "is_branch": False})
