"""The workspaces a server holds: the one built from the project folder, and those `tb` creates.

Each workspace is a database of the engine with its own project, tokens and deployments. Its deployments
are kept in the data directory, `<data-dir>/main/` for the served (main) workspace and
`<data-dir>/workspaces/<id>/` for those made through the Tinybird Local API: `workspace.json` (identity and
deployments), `project/` (the datafiles of the live deployment) and `deployments/<id>/` (staged ones).

The main workspace at start: while nothing was deployed to it, it is built from the project folder
(`--project`), which is its deployment 0. Once a deployment made through the API is live
(`tb --cloud deploy`, `tb deployment promote`, `tb build`), its datafiles are kept in
`<data-dir>/main/project/` and they, not the folder, are served after a restart, with a warning naming
what differs from the folder. To serve the folder again, deploy it, or remove `<data-dir>/main/`
(the data stays; tokens stay in `<data-dir>/tokens.json`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...engine import Engine, Workspace
from ...errors import AuthError, NotFoundError, ParameterError, TbkitError
from ...project.datafiles import Project, load_project
from ...query import Reader
from ...query.skeletons import Skeletons
from .deployment import DATA_READY, DELETED, Deployment
from .files import write_json
from .secrets import SecretStore
from .tokens import Token, TokenStore, jwt_workspace_id, looks_like_jwt

MAIN = "main"
log = logging.getLogger("tbkit.server")


def empty_project(root: Path) -> Project:
    """A project with no resources yet, for a workspace nothing was deployed to."""
    return Project(root=root, datasources={}, pipes={})


def database_name(name: str, prefix: str = "") -> str:
    """The engine database for a workspace name: short, safe and stable (`prefix` keeps registries apart)."""
    return prefix + (MAIN if name == MAIN else "ws_" + hashlib.sha1(name.encode()).hexdigest()[:16])


def datafile_texts(project: Project) -> dict[str, dict[str, str]]:
    """The text of every datafile of a project, by kind (`datasource`, `pipe`) and name."""
    return {
        "datasource": {name: ds.path.read_text(encoding="utf-8") for name, ds in project.datasources.items()},
        "pipe": {name: pipe.path.read_text(encoding="utf-8") for name, pipe in project.pipes.items()},
    }


def has_datafiles(folder: Path) -> bool:
    """True when `folder` holds at least one .datasource or .pipe file."""
    return folder.is_dir() and (any(folder.rglob("*.datasource")) or any(folder.rglob("*.pipe")))


@dataclass
class Tenant:
    """A served workspace: its database, project, tokens, folder and deployments.

    `folder` keeps the workspace's state (tokens, secrets): `<data-dir>` for the main workspace,
    `<data-dir>/workspaces/<id>` for the others; `deploy_dir` keeps its deployments (`workspace.json`,
    `project/`, `deployments/<id>/`): `<data-dir>/main` for the main workspace, else `folder`.
    `deployments` holds the deployments that went live, in the order they did (so its length changes
    exactly when the live project does); `staged` holds those created without promotion, pending,
    discarded or failed. `texts` are the live datafiles as deployed, which new uploads are diffed against.
    """

    id: str
    name: str
    workspace: Workspace
    tokens: TokenStore
    folder: Path
    deploy_dir: Path
    deployments: list[Deployment] = field(default_factory=lambda: [Deployment.first()])
    staged: list[Deployment] = field(default_factory=list)
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    # Table rewrites by query shape, shared by the workspaces of a server; and whether the engine holds the
    # tables of the service datasources (a server makes them before it answers).
    skeletons: Skeletons = field(default_factory=Skeletons, repr=False, compare=False)
    service_tables: bool = False
    secrets: SecretStore = field(init=False, repr=False, compare=False)  # in `folder`, for tb secret and tb_secret()
    reader: Reader = field(init=False, repr=False, compare=False)  # endpoint calls and queries on `workspace`

    def __post_init__(self) -> None:
        if not self.texts:
            self.texts = datafile_texts(self.workspace.project)
        self.secrets = SecretStore(self.folder)
        self.reader = self._reader(self.workspace)

    def _reader(self, workspace: Workspace) -> Reader:
        return Reader(workspace, self.skeletons, self.secrets.values, self.service_tables)

    @property
    def project(self) -> Project:
        """The project currently deployed in this workspace."""
        return self.workspace.project

    @property
    def project_dir(self) -> Path:
        """Where the datafiles of the live deployment are kept."""
        return self.deploy_dir / "project"

    def staging_dir(self, deployment_id: str) -> Path:
        """Where the datafiles of a staged deployment are kept until it is promoted or discarded."""
        return self.deploy_dir / "deployments" / deployment_id

    def make_live(self, workspace: Workspace, deployment: Deployment) -> None:
        """Serve `workspace` (a new project built into this workspace's database), with its tokens, as `deployment`:
        the one way a deployment goes live. The live deployment it replaces is marked deleted (as Tinybird does);
        a staged one leaves the staged list. The caller saves the workspace when its records are to be kept."""
        with self.lock:
            self.reader = self._reader(workspace)
            self.workspace = workspace
            self.texts = datafile_texts(workspace.project)
            self.tokens = TokenStore.load(self.folder, workspace.project, self.tokens.admin.value)
            for other in self.all_deployments():
                if other.live:
                    other.live, other.status = False, DELETED
            deployment.live, deployment.status = True, DATA_READY
            if deployment in self.staged:
                self.staged.remove(deployment)
            self.deployments.append(deployment)

    def all_deployments(self) -> list[Deployment]:
        """Every deployment, oldest first (the order of Tinybird's `GET /v1/deployments`)."""
        return sorted(self.deployments + self.staged, key=lambda deployment: int(deployment.id))

    def next_deployment_id(self) -> str:
        """The id of the next deployment: one more than any so far."""
        return str(max(int(deployment.id) for deployment in self.all_deployments()) + 1)

    def resource_id(self, name: str) -> str:
        """A resource's stable id in Tinybird's form (`t_` and 32 hex digits), from the workspace and its name."""
        return "t_" + hashlib.sha1(f"{self.id}/{name}".encode()).hexdigest()[:32]

    def describe(self, with_token: bool = False) -> dict[str, Any]:
        """The workspace as Tinybird describes it; the admin token only for the Local API's listings."""
        described = {"id": self.id, "name": self.name, "role": "admin"}
        return {**described, "token": self.tokens.admin.value} if with_token else described

    def save(self) -> None:
        """Persist the workspace's identity and deployments."""
        self.deploy_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "id": self.id,
            "name": self.name,
            "deployments": [deployment.to_record() for deployment in self.deployments],
            "staged": [deployment.to_record() for deployment in self.staged],
        }
        write_json(self.deploy_dir / "workspace.json", meta)  # a crash leaves the previous record, never half of one


def _deployments(meta: dict[str, Any]) -> tuple[list[Deployment], list[Deployment]]:
    """The live-over-time and staged deployments of a workspace.json."""
    live = [Deployment.from_record(record) for record in meta.get("deployments") or []] or [Deployment.first()]
    return live, [Deployment.from_record(record) for record in meta.get("staged", [])]


def _read_meta(folder: Path) -> dict[str, Any]:
    """A workspace's `workspace.json` (empty without one); TbkitError naming the file when it cannot be read."""
    path = folder / "workspace.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"line {e.lineno}, column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise TbkitError(
            f"{path} is not valid JSON ({where}); it holds the workspace's id and deployments: restore it from a "
            "backup, or move it away (then the main workspace serves the project folder, and another workspace is "
            "not loaded); nothing was changed"
        ) from None
    if not isinstance(meta, dict):
        raise TbkitError(
            f"{path} must hold a JSON object (the workspace's id and deployments), not {type(meta).__name__}"
        )
    return meta


class Registry:
    """Every workspace of a served data directory, found by name, id or token."""

    def __init__(self, engine: Engine, data_dir: Path, main: Tenant, prefix: str = ""):
        self.engine = engine
        self.data_dir = data_dir
        self.prefix = prefix
        self.query_timeout = main.workspace.query_timeout
        self.skeletons = main.skeletons
        self.service_tables = main.service_tables
        self.tenants: dict[str, Tenant] = {main.name: main}
        self.user_tokens: list[Token] = []
        # Tokens by the SHA-256 of their value, with what it was built from (see _token_index).
        self._token_index: tuple[tuple, dict[bytes, tuple[Tenant | None, Token]]] = ((), {})

    @classmethod
    def open(
        cls,
        engine: Engine,
        data_dir: Path,
        project: Project,
        admin_token: str | None,
        prefix: str = "",
        query_timeout: float | None = None,
        from_project: bool = False,
        skeletons: Skeletons | None = None,
        service_tables: bool = False,
    ) -> Registry:
        """The main workspace, plus every workspace saved in the data directory.

        The main workspace serves its last live deployment when one was made through the API (kept in
        `<data-dir>/main/`), else `project` (the project folder); `from_project` discards the kept
        deployment and serves the folder. Each workspace is a database named by `prefix` and the
        workspace's name, so several registries can share one engine (chDB holds one data directory per
        process); reads stop after `query_timeout` s. The workspaces' readers share `skeletons`, and read the
        service datasources' tables when `service_tables` says the engine holds them.
        """
        folder = data_dir / MAIN
        if from_project and folder.exists():
            log.warning("main workspace: discarding the deployments kept in %s, serving %s", folder, project.root)
            shutil.rmtree(folder)
        meta = _read_meta(folder)
        deployed = has_datafiles(folder / "project")
        served = load_project(folder / "project") if deployed else project
        workspace = Workspace(engine, database_name(MAIN, prefix), served, query_timeout)
        workspace.build()
        tokens = TokenStore.load(data_dir, served, admin_token)
        reading = {"skeletons": skeletons or Skeletons(), "service_tables": service_tables}
        main = Tenant(MAIN, MAIN, workspace, tokens, data_dir, folder, **reading)
        if deployed:
            main.deployments, main.staged = _deployments(meta)
            _warn_deployed(main, project)
        elif meta.get("staged"):
            main.staged = _deployments(meta)[1]
        registry = cls(engine, data_dir, main, prefix)
        for meta_path in sorted((data_dir / "workspaces").glob("*/workspace.json")):
            registry._load(meta_path.parent)
        return registry

    def _reading(self) -> dict[str, Any]:
        """How a new workspace's reader reads: the registry's skeletons and service tables."""
        return {"skeletons": self.skeletons, "service_tables": self.service_tables}

    @property
    def main(self) -> Tenant:
        """The served workspace: the project folder, or its last live deployment."""
        return self.tenants[MAIN]

    def _load(self, folder: Path) -> Tenant:
        meta = _read_meta(folder)
        project_dir = folder / "project"
        project = load_project(project_dir) if has_datafiles(project_dir) else empty_project(project_dir)
        workspace = Workspace(self.engine, database_name(meta["name"], self.prefix), project, self.query_timeout)
        workspace.build()
        tokens = TokenStore.load(folder, project)
        tenant = Tenant(meta["id"], meta["name"], workspace, tokens, folder, folder, **self._reading())
        tenant.deployments, tenant.staged = _deployments(meta)
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
        workspace = Workspace(self.engine, database_name(name, self.prefix), project, self.query_timeout)
        workspace.drop()
        workspace.build()
        tokens = TokenStore.load(folder, project)
        tenant = Tenant(workspace_id, name, workspace, tokens, folder, folder, **self._reading())
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
        shutil.rmtree(tenant.deploy_dir, ignore_errors=True)
        shutil.rmtree(tenant.folder, ignore_errors=True)
        del self.tenants[tenant.name]
        return tenant

    def authenticate(self, value: str | None) -> tuple[Tenant | None, Token]:
        """The workspace and token for a token value (no workspace for a user token).

        The value is looked up by its SHA-256 digest, then compared in constant time with the token found: the
        time taken depends on the digest, which tells nothing useful about any token's value. AuthError when the
        value is missing or unknown.
        """
        if not value:
            raise AuthError("Invalid token: a token is required, as `Authorization: Bearer <token>` or `?token=`")
        if looks_like_jwt(value):  # a JWT names its workspace and is verified with that workspace's admin token
            workspace_id = jwt_workspace_id(value)
            tenant = next((t for t in self.tenants.values() if t.id == workspace_id), None)
            if tenant is None:
                raise AuthError("Invalid token: the JWT names no workspace of this server")
            return tenant, tenant.tokens.verify_jwt(value)
        presented = value.encode()
        found = self._token_index_now().get(hashlib.sha256(presented).digest())
        if found is None or not hmac.compare_digest(found[1].value.encode(), presented):
            raise AuthError("Invalid token")
        return found

    def _token_index_now(self) -> dict[bytes, tuple[Tenant | None, Token]]:
        """Every token by the SHA-256 of its value, rebuilt when a workspace, a token list or a value changed.

        Token stores replace their list on every change; the index keeps the objects it was built from and is
        reused while each one is still in place (compared by identity, as the values are checked too).
        """
        sources = tuple(
            (tenant, tenant.tokens, tenant.tokens.tokens, tuple(t.value for t in tenant.tokens.tokens))
            for tenant in self.tenants.values()
        ) + ((None, None, self.user_tokens, tuple(t.value for t in self.user_tokens)),)
        built_from, index = self._token_index
        if len(built_from) == len(sources) and all(
            old[0] is new[0] and old[1] is new[1] and old[2] is new[2] and old[3] == new[3]
            for old, new in zip(built_from, sources, strict=True)
        ):
            return index
        index = {}
        for tenant, _, tokens, _ in sources:
            for token in tokens:
                index[hashlib.sha256(token.value.encode()).digest()] = (tenant, token)
        self._token_index = (sources, index)
        return index


def _warn_deployed(main: Tenant, folder_project: Project) -> None:
    """Say that the main workspace serves its last deployment, not the project folder, and what differs."""
    live = next((d for d in reversed(main.deployments) if d.live), main.deployments[-1])
    theirs = datafile_texts(folder_project)
    differences = []
    for kind in ("datasource", "pipe"):
        mine = main.texts[kind]
        changed = sorted(n for n in mine.keys() & theirs[kind].keys() if mine[n] != theirs[kind][n])
        only_folder = sorted(theirs[kind].keys() - mine.keys())
        only_deployed = sorted(mine.keys() - theirs[kind].keys())
        for label, names in (
            ("changed", changed),
            ("only in the folder", only_folder),
            ("not in the folder", only_deployed),
        ):
            if names:
                differences.append(f"{kind}s {label}: {', '.join(names)}")
    summary = "; ".join(differences) if differences else "the folder holds the same datafiles"
    log.warning(
        "main workspace: serving deployment #%s (created %s) kept in %s, not the project folder %s (%s). "
        "Deploy the folder (tb --cloud deploy) to serve it, or remove %s to start from the folder again.",
        live.id,
        live.created_at,
        main.project_dir,
        folder_project.root,
        summary,
        main.deploy_dir,
    )
