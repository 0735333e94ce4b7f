"""The workspaces a server holds: the one built from the project folder, and those `tb` creates.

Each workspace is a database of the engine with its own project, tokens and deployments. Workspaces made
through the Tinybird Local API (`tb --local build|deploy|test`) keep their datafiles under
`<data-dir>/workspaces/<id>/`, so they survive restarts like the data does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import Engine, Workspace
from .errors import AuthError, NotFoundError, ParameterError
from .project import Project, load_project
from .tokens import Token, TokenStore, jwt_workspace_id, looks_like_jwt

MAIN = "main"


def empty_project(root: Path) -> Project:
    """A project with no resources yet, for a workspace nothing was deployed to."""
    return Project(root=root, datasources={}, pipes={})


def database_name(name: str, prefix: str = "") -> str:
    """The engine database for a workspace name: short, safe and stable (`prefix` keeps registries apart)."""
    return prefix + (MAIN if name == MAIN else "ws_" + hashlib.sha1(name.encode()).hexdigest()[:16])


@dataclass
class Tenant:
    """A served workspace: its database, project, tokens and deployments."""

    id: str
    name: str
    workspace: Workspace
    tokens: TokenStore
    folder: Path | None = None
    deployments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def project(self) -> Project:
        """The project currently deployed in this workspace."""
        return self.workspace.project

    def describe(self) -> dict[str, Any]:
        """The workspace as Tinybird's workspace listings show it."""
        return {"id": self.id, "name": self.name, "token": self.tokens.admin.value, "role": "admin"}

    def save(self) -> None:
        """Persist the workspace's identity and deployments (not for the main workspace)."""
        if self.folder is None:
            return
        meta = {"id": self.id, "name": self.name, "deployments": self.deployments}
        (self.folder / "workspace.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


class Registry:
    """Every workspace of a served data directory, found by name, id or token."""

    def __init__(self, engine: Engine, data_dir: Path, main: Tenant, prefix: str = ""):
        self.engine = engine
        self.data_dir = data_dir
        self.prefix = prefix
        self.query_timeout = main.workspace.query_timeout
        self.tenants: dict[str, Tenant] = {main.name: main}
        self.user_tokens: list[Token] = []

    @classmethod
    def open(
        cls,
        engine: Engine,
        data_dir: Path,
        project: Project,
        admin_token: str | None,
        prefix: str = "",
        query_timeout: float | None = None,
    ) -> Registry:
        """The main workspace built from `project`, plus every workspace saved in the data directory.

        Each workspace is a database named by `prefix` and the workspace's name, so several registries can
        share one engine (chDB holds one data directory per process); reads stop after `query_timeout` s.
        """
        workspace = engine.workspace(database_name(MAIN, prefix), project, query_timeout)
        workspace.build()
        main = Tenant(MAIN, MAIN, workspace, TokenStore.load(data_dir, project, admin_token))
        registry = cls(engine, data_dir, main, prefix)
        for meta_path in sorted((data_dir / "workspaces").glob("*/workspace.json")):
            registry._load(meta_path.parent)
        return registry

    @property
    def main(self) -> Tenant:
        """The workspace built from the served project folder."""
        return self.tenants[MAIN]

    def _load(self, folder: Path) -> Tenant:
        meta = json.loads((folder / "workspace.json").read_text(encoding="utf-8"))
        project_dir = folder / "project"
        has_files = any(project_dir.rglob("*.datasource")) or any(project_dir.rglob("*.pipe"))
        project = load_project(project_dir) if has_files else empty_project(project_dir)
        workspace = self.engine.workspace(database_name(meta["name"], self.prefix), project, self.query_timeout)
        workspace.build()
        tokens = TokenStore.load(folder, project)
        tenant = Tenant(meta["id"], meta["name"], workspace, tokens, folder, meta.get("deployments", []))
        self.tenants[tenant.name] = tenant
        return tenant

    def create(self, name: str) -> Tenant:
        """A new empty workspace called `name`."""
        if not name or len(name) > 200:
            raise ParameterError("A workspace needs a name of 1 to 200 characters")
        if name in self.tenants:
            raise ParameterError(f"A workspace called '{name}' already exists")
        workspace_id = str(uuid.uuid4())
        folder = self.data_dir / "workspaces" / workspace_id
        (folder / "project").mkdir(parents=True)
        project = empty_project(folder / "project")
        workspace = self.engine.workspace(database_name(name, self.prefix), project, self.query_timeout)
        workspace.drop()
        workspace.build()
        tenant = Tenant(workspace_id, name, workspace, TokenStore.load(folder, project), folder)
        tenant.save()
        self.tenants[name] = tenant
        return tenant

    def find(self, key: str) -> Tenant:
        """The workspace with this id or name."""
        for tenant in self.tenants.values():
            if key in (tenant.id, tenant.name):
                return tenant
        raise NotFoundError(f"Workspace '{key}' not found")

    def delete(self, key: str) -> Tenant:
        """Drop a workspace and its data (never the main one)."""
        tenant = self.find(key)
        if tenant.name == MAIN:
            raise ParameterError("The main workspace cannot be deleted")
        tenant.workspace.drop()
        if tenant.folder is not None:
            shutil.rmtree(tenant.folder, ignore_errors=True)
        del self.tenants[tenant.name]
        return tenant

    def authenticate(self, value: str | None) -> tuple[Tenant | None, Token]:
        """The workspace and token for a token value (no workspace for a user token).

        The value is compared in constant time against every token, so the time taken does not tell which
        one matched; AuthError when the value is missing or unknown.
        """
        if not value:
            raise AuthError("Invalid token: a token is required, as `Authorization: Bearer <token>` or `?token=`")
        if looks_like_jwt(value):  # a JWT names its workspace and is verified with that workspace's admin token
            workspace_id = jwt_workspace_id(value)
            tenant = next((t for t in self.tenants.values() if t.id == workspace_id), None)
            if tenant is None:
                raise AuthError("Invalid token: the JWT names no workspace of this server")
            return tenant, tenant.tokens.verify_jwt(value)
        candidates = [(tenant, token) for tenant in self.tenants.values() for token in tenant.tokens.tokens]
        candidates += [(None, token) for token in self.user_tokens]
        found: tuple[Tenant | None, Token] | None = None
        for tenant, token in candidates:
            if hmac.compare_digest(token.value.encode(), value.encode()):
                found = (tenant, token)
        if found is None:
            raise AuthError("Invalid token")
        return found
