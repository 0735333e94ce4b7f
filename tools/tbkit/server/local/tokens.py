"""`GET /tokens`: Tinybird Local's tokens, which `tb --local` reads first (unauthenticated, as there)."""

from __future__ import annotations

from ..base import BaseHandler


class TokensHandler(BaseHandler):
    """The Local API's user and admin tokens, and the served workspace's admin token."""

    def get(self) -> None:
        tokens = {token.name: token.value for token in self.service.registry.user_tokens}
        self.send_json({**tokens, "workspace_admin_token": self.service.main.tokens.admin.value})
