"""`GET /tokens`: Tinybird Local's tokens, which `tb --local` reads first (unauthenticated, as there)."""

from __future__ import annotations

from ...errors import AuthError
from ..base import LOCAL_API_OFF, OFF_MESSAGE, BaseHandler


class TokensHandler(BaseHandler):
    """The Local API's user and admin tokens, and the served workspace's admin token."""

    def get(self) -> None:
        tokens = {token.name: token.value for token in self.service.registry.user_tokens}
        self.send_json({**tokens, "workspace_admin_token": self.service.main.tokens.admin.value})


class LocalApiOffTokensHandler(BaseHandler):
    """`GET /tokens` with the Local API off: placeholder tokens, so `tb` goes on to print OFF_MESSAGE."""

    limited = False

    def get(self) -> None:
        self.send_json({name: LOCAL_API_OFF for name in ("user_token", "admin_token", "workspace_admin_token")})


class LocalApiOffHandler(BaseHandler):
    """Any other Local API path with the Local API off: 403 with OFF_MESSAGE."""

    limited = False

    def prepare(self) -> None:
        raise AuthError(OFF_MESSAGE)
