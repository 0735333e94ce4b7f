"""Tokens as Tinybird has them: an admin token, and scoped tokens declared in datafiles.

`TOKEN <name> READ` in an endpoint grants reading that pipe; `TOKEN <name> APPEND` in a datasource grants
appending to it (and `READ` on a datasource grants querying it). Several datafiles may name the same
token, which then holds every scope. Values are generated once and kept in the data directory with file
permissions 0600, so they survive restarts; they are compared in constant time and never logged.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AuthError
from .project import Project

TOKENS_FILE = "tokens.json"
USER_TOKENS_FILE = "local_tokens.json"
ADMIN = "admin token"
# Scopes as Tinybird names them; USER is the Local API's user-level access (listing and creating workspaces).
ADMIN_SCOPE, READ, APPEND, USER = "ADMIN", "READ", "APPEND", "USER"


def new_token_value() -> str:
    """A fresh random token value."""
    return "p." + secrets.token_urlsafe(36)


@dataclass
class Token:
    """A token: its name, value and scopes as (scope, resource) pairs; the admin token has every scope."""

    name: str
    value: str
    scopes: set[tuple[str, str]] = field(default_factory=set)
    admin: bool = False
    user: bool = False

    def allows(self, scope: str, resource: str | None = None) -> bool:
        """True when this token holds `scope` (ADMIN, READ, APPEND or USER) on `resource`.

        The admin token holds every workspace scope; the Local API's user tokens hold USER and nothing in a
        workspace, as in Tinybird, where a user token names no workspace.
        """
        if scope == USER or self.user:
            return scope == USER and self.user
        return self.admin or (scope, resource) in self.scopes

    def describe(self) -> list[str]:
        """Scopes as Tinybird prints them: `PIPES:READ:name`, `DATASOURCES:APPEND:name`."""
        if self.admin or self.user:
            return [ADMIN_SCOPE if self.admin else USER]
        return sorted(
            f"{'DATASOURCES' if scope == 'APPEND' else 'PIPES'}:{scope}:{name}" for scope, name in self.scopes
        )


class TokenStore:
    """Every token of a served workspace, loaded from (and saved to) the data directory."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens

    @classmethod
    def load(cls, data_dir: Path, project: Project, admin_value: str | None = None) -> TokenStore:
        """Tokens for `project`: saved values are reused, new scoped tokens get new values."""
        path = Path(data_dir) / TOKENS_FILE
        saved: dict = {}
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise AuthError(f"{path} is not valid JSON ({e.msg}); fix or delete it to make new tokens") from None
        values: dict[str, str] = dict(saved.get("tokens", {}))
        admin = Token(ADMIN, admin_value or saved.get("admin") or new_token_value(), admin=True)
        scoped: dict[str, Token] = {}
        resources = {**{n: "pipe" for n in project.pipes}, **{n: "datasource" for n in project.datasources}}
        for declared in project.tokens:
            token = scoped.setdefault(
                declared.name, Token(declared.name, values.get(declared.name) or new_token_value())
            )
            scope = declared.scope if resources.get(declared.resource) == "datasource" else "READ"
            token.scopes.add((scope, declared.resource))
        store = cls([admin, *scoped.values()])
        store.save(path)
        return store

    def save(self, path: Path) -> None:
        """Write the token values with permissions 0600 (created that way, never world-readable)."""
        content = {"admin": self.admin.value, "tokens": {t.name: t.value for t in self.tokens if not t.admin}}
        _write_private(path, content)

    @property
    def admin(self) -> Token:
        """The admin token."""
        return self.tokens[0]


def _write_private(path: Path, content: dict) -> None:
    """Write JSON readable by its owner only (created with mode 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
    os.chmod(path, 0o600)


def user_tokens(data_dir: Path) -> list[Token]:
    """The Local API's user and admin tokens (what `GET /tokens` hands out), made once and kept (mode 0600)."""
    path = Path(data_dir) / USER_TOKENS_FILE
    if path.is_file():
        values = json.loads(path.read_text(encoding="utf-8"))
    else:
        values = {"user_token": new_token_value(), "admin_token": new_token_value()}
        _write_private(path, values)
    return [Token(name, values[name], user=True) for name in ("user_token", "admin_token")]
