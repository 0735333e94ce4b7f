"""The Tokens API: list, describe, create (static or JWT), alter, refresh and remove a workspace's tokens.

As in Tinybird, every path needs a token with the ADMIN scope; scopes are written in Tinybird's notation
(`PIPES:READ:<pipe>`, `DATASOURCES:READ:<ds>`, `DATASOURCES:APPEND:<ds>`, `ADMIN`) as repeated `scope`
parameters, in the query string or a form body. `tb token ls|create|rm|refresh|scopes|copy` call these paths.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from ...errors import ParameterError
from ..base import BaseHandler
from ..workspaces.tokens import ADMIN_SCOPE


class TokenArgumentsMixin(BaseHandler):
    """Repeated parameters from the query string and from a form body (with or without its Content-Type)."""

    def arguments(self, name: str) -> list[str]:
        values = [v.decode("utf-8", "replace") for v in self.request.query_arguments.get(name, [])]
        values += [v.decode("utf-8", "replace") for v in self.request.body_arguments.get(name, [])]
        content_type = self.request.headers.get("Content-Type", "")
        if (
            self.request.body
            and not self.request.body_arguments
            and not content_type.startswith(("application/json", "multipart/"))
        ):
            values += parse_qs(self.request.body.decode("utf-8", "replace")).get(name, [])
        return values

    def argument(self, name: str) -> str | None:
        values = self.arguments(name)
        return values[-1] if values else None


class TokensHandler(TokenArgumentsMixin):
    """`GET /v0/tokens` lists the static tokens; `POST /v0/tokens?name=<n>&scope=<scope>...` creates one, or
    with `expiration_time=<unix seconds>` and a JSON body `{"scopes": [...]}`, a JWT signed with the admin token."""

    def get(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        self.send_json({"tokens": [token.as_json() for token in tenant.tokens.tokens]})

    def post(self) -> None:
        tenant = self.require(ADMIN_SCOPE)
        name = self.argument("name")
        if not name:
            raise ParameterError("The 'name' parameter is required: POST /v0/tokens?name=<name>&scope=<scope>")
        expiration_time = self.argument("expiration_time")
        if expiration_time is not None:
            try:
                scopes = json.loads(self.request.body or b"{}").get("scopes")
            except (ValueError, AttributeError):
                raise ParameterError('A JWT needs a JSON body {"scopes": [...]}') from None
            value = tenant.tokens.sign_jwt(tenant.id, name, expiration_time, scopes)
            self.send_json({"name": name, "token": value, "scopes": scopes, "expiration_time": int(expiration_time)})
            return
        token = tenant.tokens.create(name, self.arguments("scope"), self.argument("description") or "")
        self.send_json(token.as_json())


class TokenHandler(TokenArgumentsMixin):
    """`GET /v0/tokens/<name or id>` describes a token; `PUT` replaces its scopes (`scope`, `description`,
    `name` to rename); `DELETE` removes it (204). The admin token and datafile tokens keep their scopes."""

    def get(self, key: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        self.send_json(tenant.tokens.find(key).as_json())

    def put(self, key: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        token = tenant.tokens.alter(key, self.arguments("scope"), self.argument("description"), self.argument("name"))
        self.send_json(token.as_json())

    def delete(self, key: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        tenant.tokens.remove(key)
        self.set_status(204)
        self.finish()


class RefreshHandler(BaseHandler):
    """`POST /v0/tokens/<name or id>/refresh`: a new value for the token; the old one is refused from now on."""

    def post(self, key: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        token = tenant.tokens.find(key)
        if token is tenant.tokens.admin and tenant is self.service.main and self.service.config.admin_token:
            raise ParameterError(
                "The admin token was given to `tbkit serve` with --admin-token: restart the server with "
                "another value to change it"
            )
        self.send_json(tenant.tokens.refresh(key).as_json())
