"""Tokens as Tinybird has them: an admin token, and scoped tokens declared in datafiles.

`TOKEN <name> READ` in an endpoint grants reading that pipe; `TOKEN <name> APPEND` in a datasource grants
appending to it (and `READ` on a datasource grants querying it). Several datafiles may name the same
token, which then holds every scope. Values are generated once and kept in the data directory with file
permissions 0600, so they survive restarts; they are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AuthError
from .project import Project

TOKENS_FILE = "tokens.json"
ADMIN = "admin token"


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

    def can_read_pipe(self, pipe: str) -> bool:
        """True when this token may call the endpoint `pipe`."""
        return self.admin or ("READ", pipe) in self.scopes

    def can_append(self, datasource: str) -> bool:
        """True when this token may append to `datasource`."""
        return self.admin or ("APPEND", datasource) in self.scopes

    def can_query(self, resources: list[str]) -> bool:
        """True when this token may read every resource (pipe or datasource) through the Query API."""
        return self.admin or all(("READ", name) in self.scopes for name in resources)

    def describe(self) -> list[str]:
        """Scopes as Tinybird prints them: `PIPES:READ:name`, `DATASOURCES:APPEND:name`."""
        if self.admin:
            return ["ADMIN"]
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
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
        os.chmod(path, 0o600)

    @property
    def admin(self) -> Token:
        """The admin token."""
        return self.tokens[0]

    def authenticate(self, value: str | None) -> Token:
        """The token with this value (compared in constant time); AuthError when missing or unknown."""
        if not value:
            raise AuthError("Invalid token: a token is required, as `Authorization: Bearer <token>` or `?token=`")
        found = None
        for token in self.tokens:
            # Compare against every token, so the time taken does not depend on which one matches.
            if hmac.compare_digest(token.value.encode(), value.encode()):
                found = token
        if found is None:
            raise AuthError("Invalid token")
        return found
