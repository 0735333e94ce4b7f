"""Tokens as Tinybird has them: an admin token, scoped tokens declared in datafiles, tokens made through the
Tokens API, and JWTs signed with the admin token.

`TOKEN <name> READ` in an endpoint grants reading that pipe (Tinybird's `PIPES:READ:<pipe>`); in a datasource
`TOKEN <name> APPEND` grants appending to it (`DATASOURCES:APPEND:<ds>`) and `READ` grants querying it
(`DATASOURCES:READ:<ds>`). Several datafiles may name the same token, which then holds every scope. The Tokens
API (`/v0/tokens`) creates, alters, refreshes and removes static tokens with scopes in Tinybird's notation.
Values are generated once and kept in the workspace's `tokens.json` (mode 0600) with the scopes of the tokens
made through the API, so everything survives restarts; values are compared in constant time and never logged.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt  # PyJWT, which the pinned tinybird package installs (and pins) for its own JWT tokens

from ...errors import AuthError, NotFoundError, ParameterError
from ...project.datafiles import Project
from .files import write_json

TOKENS_FILE = "tokens.json"
USER_TOKENS_FILE = "local_tokens.json"
ADMIN = "admin token"
# Scopes as `Token.allows` checks them; USER is the Local API's user-level access (listing and creating workspaces).
ADMIN_SCOPE, READ, APPEND, USER = "ADMIN", "READ", "APPEND", "USER"
PIPES, DATASOURCES = "PIPES", "DATASOURCES"
# Tinybird's scope types this server grants, as (kind of resource, access) pairs.
SCOPE_TYPES = {
    "PIPES:READ": (PIPES, READ),
    "DATASOURCES:READ": (DATASOURCES, READ),
    "DATASOURCES:APPEND": (DATASOURCES, APPEND),
}
JWT_SCOPE_TYPES = ("PIPES:READ", "DATASOURCES:READ")
SUPPORTED = "ADMIN, PIPES:READ:<pipe>, DATASOURCES:READ:<datasource> or DATASOURCES:APPEND:<datasource>"
# Where each token comes from: the workspace's admin token, a datafile's TOKEN line, the Tokens API, a JWT.
ORIGIN_ADMIN, ORIGIN_DATAFILE, ORIGIN_API, ORIGIN_JWT = "admin", "datafile", "api", "jwt"
_FILE_LOCK = threading.RLock()  # one writer of a tokens file at a time (the API on the loop, deploys in the pool)


def new_token_value() -> str:
    """A fresh random token value."""
    return "p." + secrets.token_urlsafe(36)


@dataclass
class Token:
    """A token: its name and value, `scopes` as the (scope, resource) pairs `allows` checks, and `grants` as
    Tinybird prints them (`PIPES:READ:name`); the admin token (or one with the ADMIN scope) holds every scope."""

    name: str
    value: str
    scopes: set[tuple[str, str]] = field(default_factory=set)
    admin: bool = False
    user: bool = False
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    grants: set[str] = field(default_factory=set)
    origin: str = ORIGIN_DATAFILE
    description: str = ""

    def allows(self, scope: str, resource: str | None = None) -> bool:
        """True when this token holds `scope` (ADMIN, READ, APPEND or USER) on `resource`.

        The admin token holds every workspace scope; the Local API's user tokens hold USER and nothing in a
        workspace, as in Tinybird, where a user token names no workspace.
        """
        if scope == USER or self.user:
            return scope == USER and self.user
        return self.admin or (scope, resource) in self.scopes

    def describe(self) -> list[str]:
        """Scopes as Tinybird prints them: `ADMIN`, `PIPES:READ:x`, `DATASOURCES:READ:x`, `DATASOURCES:APPEND:x`."""
        if self.user:
            return [USER]
        if self.admin and not self.grants:
            return [ADMIN_SCOPE]
        return sorted(self.grants)

    def as_json(self) -> dict[str, Any]:
        """The token as Tinybird's Tokens API answers it."""
        return {
            "id": self.id,
            "name": self.name,
            "token": self.value,
            "description": self.description,
            "scopes": [scope_json(grant) for grant in self.describe()],
            "origin": {"type": "C"},
        }


def scope_json(grant: str) -> dict[str, str]:
    """`PIPES:READ:x` as Tinybird's `{"type": "PIPES:READ", "resource": "x"}`."""
    parts = grant.split(":", 2)
    if len(parts) < 3:
        return {"type": grant}
    return {"type": f"{parts[0]}:{parts[1]}", "resource": parts[2]}


def resource_kinds(project: Project) -> dict[str, str]:
    """Every resource of a project with its kind (PIPES or DATASOURCES): Tinybird names each resource once."""
    return {**{n: PIPES for n in project.pipes}, **{n: DATASOURCES for n in project.datasources}}


def parse_scope(text: str, kinds: dict[str, str]) -> str:
    """A scope parameter in Tinybird's notation, checked against the workspace's resources; the grant it makes.

    ParameterError names the scope and what was expected: one of SUPPORTED on an existing resource of that kind.
    """
    text = text.strip()
    if text == ADMIN_SCOPE:
        return ADMIN_SCOPE
    parts = text.split(":", 3)
    scope_type = ":".join(parts[:2])
    if scope_type not in SCOPE_TYPES:
        raise ParameterError(f"Invalid scope '{text}': this server supports {SUPPORTED}")
    if len(parts) < 3 or not parts[2]:
        raise ParameterError(f"Invalid scope '{text}': {scope_type} needs a resource, as {scope_type}:<name>")
    if len(parts) == 4:
        raise ParameterError(
            f"Invalid scope '{text}': SQL filters on scopes (:<filter>) are not supported in Tinybird Forward"
        )
    kind, resource = SCOPE_TYPES[scope_type][0], parts[2]
    if kinds.get(resource) != kind:
        names = ", ".join(sorted(n for n, k in kinds.items() if k == kind)) or "none"
        what = "pipe" if kind == PIPES else "Data Source"
        raise ParameterError(f"Invalid scope '{text}': there is no {what} called '{resource}' ({what}s: {names})")
    return f"{scope_type}:{resource}"


def _grant(token: Token, grant: str, kinds: dict[str, str]) -> None:
    """Give `token` a grant; it takes effect only while its resource exists with the kind the grant names."""
    token.grants.add(grant)
    if grant == ADMIN_SCOPE:
        token.admin = True
        return
    scope_type, resource = grant.rsplit(":", 1)
    kind, access = SCOPE_TYPES[scope_type]
    if kinds.get(resource) == kind:
        token.scopes.add((access, resource))


class TokenStore:
    """Every static token of a served workspace, loaded from (and saved to) the workspace's `tokens.json`.

    The file keeps the admin token's value, every other token's value, each token's id, and the scopes and
    description of the tokens made through the Tokens API (`created`).
    """

    def __init__(self, tokens: list[Token], path: Path | None = None, kinds: dict[str, str] | None = None):
        self.tokens = tokens
        self.path = path
        self.kinds = kinds or {}
        self.created: dict[str, dict[str, Any]] = {}
        self.declared: set[str] = set()

    @classmethod
    def load(cls, data_dir: Path, project: Project, admin_value: str | None = None) -> TokenStore:
        """Tokens for `project`: saved values are reused, new scoped tokens get new values."""
        path = Path(data_dir) / TOKENS_FILE
        with _FILE_LOCK:
            saved = _read(path)
            values: dict[str, str] = dict(saved.get("tokens", {}))
            ids: dict[str, str] = dict(saved.get("ids", {}))
            kinds = resource_kinds(project)
            admin = Token(
                ADMIN, admin_value or saved.get("admin") or new_token_value(), admin=True, origin=ORIGIN_ADMIN
            )
            admin.grants.add(ADMIN_SCOPE)
            scoped: dict[str, Token] = {}
            for declared in project.tokens:
                kind = kinds.get(declared.resource)
                if kind == DATASOURCES:
                    grant = f"DATASOURCES:{'APPEND' if declared.scope == APPEND else 'READ'}:{declared.resource}"
                else:
                    grant = f"PIPES:READ:{declared.resource}"
                token = scoped.get(declared.name) or Token(
                    declared.name, values.get(declared.name) or new_token_value()
                )
                scoped[declared.name] = token
                _grant(token, grant, kinds)
            created: dict[str, dict[str, Any]] = dict(saved.get("created", {}))
            for name, entry in created.items():
                token = scoped.get(name)
                if token is None:
                    token = Token(name, values.get(name) or new_token_value(), origin=ORIGIN_API)
                    scoped[name] = token
                token.description = entry.get("description", "")
                for grant in entry.get("scopes", []):
                    _grant(token, grant, kinds)
            store = cls([admin, *scoped.values()], path, kinds)
            store.created = created
            store.declared = {declared.name for declared in project.tokens}
            for token in store.tokens:
                token.id = ids.get(token.name) or token.id
            store.save(if_changed_from=saved)
        return store

    def save(self, path: Path | None = None, if_changed_from: dict | None = None) -> None:
        """Write values, ids and API-made scopes with permissions 0600 (atomically, never world-readable)."""
        content = {
            "admin": self.admin.value,
            "tokens": {t.name: t.value for t in self.tokens if t is not self.admin},
            "ids": {t.name: t.id for t in self.tokens},
            "created": self.created,
        }
        if content != if_changed_from:
            write_json(path or self.path, content)

    @property
    def admin(self) -> Token:
        """The workspace's admin token."""
        return self.tokens[0]

    def find(self, key: str) -> Token:
        """The static token with this name or id (NotFoundError names it)."""
        for token in self.tokens:
            if key in (token.name, token.id):
                return token
        raise NotFoundError(f"Token '{key}' does not exist")

    def is_declared(self, token: Token) -> bool:
        """True for a token some datafile declares with a TOKEN line (its scopes live in the datafiles)."""
        return token.name in self.declared

    # -- the Tokens API --------------------------------------------------------------------------------

    def create(self, name: str, scopes: list[str], description: str = "") -> Token:
        """A new static token with scopes in Tinybird's notation (ParameterError for a taken name or bad scope)."""
        _check_name(name)
        if any(name in (t.name, t.id) for t in self.tokens):
            raise ParameterError(f"A token called '{name}' already exists; PUT /v0/tokens/{name} changes its scopes")
        grants = self._grants(scopes)
        with _FILE_LOCK:
            token = Token(name, new_token_value(), origin=ORIGIN_API, description=description)
            for grant in grants:
                _grant(token, grant, self.kinds)
            self.created = {**self.created, name: {"scopes": sorted(grants), "description": description}}
            self.tokens = [*self.tokens, token]
            self.save()
        return token

    def alter(self, key: str, scopes: list[str], description: str | None = None, new_name: str | None = None) -> Token:
        """Replace the scopes (and optionally the description and name) of a token made through the API."""
        token = self.find(key)
        if token is self.admin:
            raise ParameterError(f"The scopes of '{ADMIN}' cannot be changed: it holds every scope")
        if self.is_declared(token):
            raise ParameterError(
                f"Token '{token.name}' is declared by TOKEN lines in the datafiles: change its scopes there and deploy"
            )
        name = new_name or token.name
        if name != token.name:
            _check_name(name)
            if any(name in (t.name, t.id) for t in self.tokens):
                raise ParameterError(f"A token called '{name}' already exists")
        grants = self._grants(scopes) if scopes else set(self.created[token.name]["scopes"])
        with _FILE_LOCK:
            entry = {"scopes": sorted(grants), "description": token.description if description is None else description}
            altered = Token(name, token.value, id=token.id, origin=ORIGIN_API, description=entry["description"])
            for grant in grants:
                _grant(altered, grant, self.kinds)
            created = {k: v for k, v in self.created.items() if k != token.name}
            self.created = {**created, name: entry}
            self.tokens = [altered if t is token else t for t in self.tokens]
            self.save()
        return altered

    def remove(self, key: str) -> Token:
        """Remove a token made through the API (never the admin token, nor one a datafile declares)."""
        token = self.find(key)
        if token is self.admin:
            raise ParameterError(f"'{ADMIN}' cannot be removed: it is the workspace's admin token")
        if self.is_declared(token):
            raise ParameterError(
                f"Token '{token.name}' is declared by TOKEN lines in the datafiles: remove them there and deploy"
            )
        with _FILE_LOCK:
            self.created = {k: v for k, v in self.created.items() if k != token.name}
            self.tokens = [t for t in self.tokens if t is not token]
            self.save()
        return token

    def refresh(self, key: str) -> Token:
        """Give a token a new value (the old one stops working at once); the new value is saved."""
        token = self.find(key)
        with _FILE_LOCK:
            token.value = new_token_value()
            self.save()
        return token

    def _grants(self, scopes: list[str]) -> set[str]:
        if not scopes:
            raise ParameterError(f"At least one 'scope' parameter is required: {SUPPORTED}")
        return {parse_scope(scope, self.kinds) for scope in scopes}

    # -- JWTs ------------------------------------------------------------------------------------------

    def sign_jwt(self, workspace_id: str, name: str, expiration_time: Any, scopes: Any) -> str:
        """A JWT as Tinybird makes them: HS256, signed with the admin token, naming workspace, name, exp, scopes."""
        _check_name(name)
        try:
            expires = int(expiration_time)
        except (TypeError, ValueError):
            raise ParameterError(
                f"Invalid 'expiration_time' '{expiration_time}': expected a Unix timestamp in seconds"
            ) from None
        if expires <= time.time():
            raise ParameterError(f"Invalid 'expiration_time' {expires}: it is in the past")
        if not isinstance(scopes, list) or not scopes:
            raise ParameterError('A JWT needs a JSON body {"scopes": [{"type": "PIPES:READ", "resource": "<pipe>"}]}')
        checked = []
        for scope in scopes:
            if not isinstance(scope, dict) or scope.get("type") not in JWT_SCOPE_TYPES:
                raise ParameterError(
                    f"Invalid JWT scope {json.dumps(scope)}: the type must be PIPES:READ or DATASOURCES:READ"
                )
            _jwt_extras_refused(scope)
            parse_scope(f"{scope['type']}:{scope.get('resource') or ''}", self.kinds)
            checked.append({"type": scope["type"], "resource": scope["resource"]})
        payload = {"workspace_id": workspace_id, "name": name, "exp": expires, "scopes": checked}
        return jwt.encode(payload, self.admin.value, algorithm="HS256")

    def verify_jwt(self, value: str) -> Token:
        """The token a JWT signed with this workspace's admin token stands for (AuthError if it is not valid)."""
        try:
            claims = jwt.decode(value, self.admin.value, algorithms=["HS256"], options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("Invalid token: the JWT has expired") from None
        except jwt.InvalidTokenError:
            raise AuthError("Invalid token: the JWT is not signed with this workspace's admin token") from None
        token = Token(str(claims.get("name", "")), value, origin=ORIGIN_JWT)
        for scope in claims.get("scopes") or []:
            if not isinstance(scope, dict) or scope.get("type") not in JWT_SCOPE_TYPES or not scope.get("resource"):
                raise AuthError("Invalid token: a JWT scope must be PIPES:READ or DATASOURCES:READ on a resource")
            try:
                _jwt_extras_refused(scope)
            except ParameterError as e:
                raise AuthError(f"Invalid token: {e}") from None
            _grant(token, f"{scope['type']}:{scope['resource']}", self.kinds)
        return token


def _jwt_extras_refused(scope: dict) -> None:
    """Fixed parameters and row filters cannot be enforced here: refuse them rather than grant more."""
    if scope.get("fixed_params"):
        raise ParameterError("JWT fixed_params are not supported by this server: it cannot pin endpoint parameters")
    if scope.get("filter"):
        raise ParameterError("JWT row filters are not supported by this server")


def looks_like_jwt(value: str) -> bool:
    """True for a value shaped as a JWT (three base64url parts), not a static token."""
    return value.count(".") == 2 and value.startswith("eyJ")


def jwt_workspace_id(value: str) -> str:
    """The workspace a JWT names (not yet verified: the workspace's admin token verifies it)."""
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise AuthError("Invalid token: not a valid JWT") from None
    return str(claims.get("workspace_id", ""))


def _check_name(name: str) -> None:
    if not name or len(name) > 255 or "/" in name or name != name.strip():
        raise ParameterError(
            f"Invalid token name '{name}': expected 1 to 255 characters, no '/', no leading or trailing spaces"
        )


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AuthError(f"{path} is not valid JSON ({e.msg}); fix or delete it to make new tokens") from None


def listing(store: TokenStore) -> list[str]:
    """The tokens as `tbkit tokens` prints them: name and scopes, then the value, in the API's order."""
    lines = []
    for token in store.tokens:
        lines.append(f"{token.name:<30} {', '.join(token.describe())}")
        lines.append(f"{'':<30} {token.value}")
    return lines


def user_tokens(data_dir: Path) -> list[Token]:
    """The Local API's user and admin tokens (what `GET /tokens` hands out), made once and kept (mode 0600)."""
    path = Path(data_dir) / USER_TOKENS_FILE
    if path.is_file():
        values = json.loads(path.read_text(encoding="utf-8"))
    else:
        values = {"user_token": new_token_value(), "admin_token": new_token_value()}
        write_json(path, values)
    return [Token(name, values[name], user=True, origin=ORIGIN_ADMIN) for name in ("user_token", "admin_token")]
