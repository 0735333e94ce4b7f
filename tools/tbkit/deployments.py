"""Deployments: the datafiles `tb deploy` and `tb build` upload, applied to a workspace.

The upload is parsed and validated with the same project loader as everything else; a broken datafile
comes back as an error naming its file, which `tb` prints. A valid upload is diffed against what the
workspace holds (new, changed and deleted resources, as `tb` lists them), then built into the workspace.
A datasource whose columns change is only recreated with `allow_destructive_operations` (deploy) or on
`tb build`, which always rebuilds like Tinybird Local does.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Any

from .errors import ParameterError, ProjectError, TbkitError
from .project import Project, load_project
from .tokens import TokenStore
from .workspaces import Registry, Tenant, database_name

CHANGE_KEYS = (
    "new_datasource_names",
    "changed_datasource_names",
    "deleted_datasource_names",
    "new_pipe_names",
    "changed_pipe_names",
    "deleted_pipe_names",
)


def _texts(resources: dict[str, Any]) -> dict[str, str]:
    return {name: resource.path.read_text(encoding="utf-8") for name, resource in resources.items()}


def diff(old: Project, new: Project) -> dict[str, list[str]]:
    """New, changed and deleted datasources and pipes between two projects, by datafile content."""
    changes: dict[str, list[str]] = {}
    for kind, old_texts, new_texts in (
        ("datasource", _texts(old.datasources), _texts(new.datasources)),
        ("pipe", _texts(old.pipes), _texts(new.pipes)),
    ):
        changes[f"new_{kind}_names"] = sorted(set(new_texts) - set(old_texts))
        changes[f"changed_{kind}_names"] = sorted(
            n for n in new_texts if n in old_texts and new_texts[n] != old_texts[n]
        )
        changes[f"deleted_{kind}_names"] = sorted(set(old_texts) - set(new_texts))
    return changes


def _write_upload(files: list[tuple[str, str]], folder: Path) -> None:
    for relative, text in files:
        path = (folder / relative).resolve()
        if folder.resolve() not in path.parents:
            raise ParameterError(f"refusing a datafile outside the project: {relative}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _error_entry(error: TbkitError, folder: Path) -> dict[str, str]:
    """A datafile error as `tb` prints it: the file's name, then the error."""
    path = getattr(error, "path", None)
    if not path:
        return {"error": str(error)}
    try:
        filename = Path(path).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        filename = Path(path).name
    message = str(error).split(f"{path}:", 1)[-1].strip()
    line = getattr(error, "line", None)
    if line and message.startswith(f"{line}:"):
        message = f"line {line}: " + message.split(":", 1)[1].strip()
    return {"filename": filename, "error": message}


def _record(tenant: Tenant, changes: dict[str, list[str]], live: bool, status: str = "data_ready") -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": str(len(tenant.deployments) + 1),
        "status": status,
        "live": live,
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "errors": [],
        "feedback": [],
        "new_data_connector_ids": [],
        **changes,
    }
    if live:
        promote(tenant, record)
    tenant.deployments.append(record)
    tenant.save()
    return record


def promote(tenant: Tenant, record: dict[str, Any]) -> None:
    """Make `record` the live deployment; the one it replaces is deleted, as in Tinybird."""
    for other in tenant.deployments:
        if other is not record and other["status"] != "deleted":
            other["live"] = False
            other["status"] = "deleted"
    record["live"] = True


def apply(
    registry: Registry,
    tenant: Tenant,
    files: list[tuple[str, str]],
    check: bool = False,
    allow_destructive: bool = False,
    live: bool = True,
) -> tuple[str, dict[str, Any], list[dict[str, str]]]:
    """Validate and apply uploaded datafiles: (result, deployment record or changes, errors)."""
    if tenant.folder is None:
        raise ParameterError("Deploy to a workspace created through the Local API, not to the served project")
    staging = tenant.folder / f"staging-{uuid.uuid4().hex[:8]}"
    try:
        _write_upload(files, staging)
        try:
            project = load_project(staging)
        except ProjectError as e:
            return "failed", {}, [_error_entry(e, staging)]
        changes = diff(tenant.project, project)
        if not any(changes.values()):
            return "no_changes", {}, []
        if check:
            errors = _check_build(registry, tenant, project, allow_destructive, staging)
            return ("failed" if errors else "success"), changes, errors
        errors = _swap(registry, tenant, staging, allow_destructive)
        if errors:
            return "failed", changes, errors
        return "success", _record(tenant, changes, live), []
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_build(
    registry: Registry, tenant: Tenant, project: Project, allow_destructive: bool, staging: Path
) -> list[dict[str, str]]:
    """Build the project into a scratch copy to find SQL errors, without touching the workspace."""
    scratch = registry.engine.workspace(database_name(tenant.name) + "_check", project)
    try:
        scratch.drop()
        scratch.build()
        if not allow_destructive:
            registry.engine.workspace(tenant.workspace.name, project).check_compatible()
        return []
    except ProjectError as e:
        return [_error_entry(e, staging)]
    finally:
        scratch.drop()


def _swap(registry: Registry, tenant: Tenant, staging: Path, allow_destructive: bool) -> list[dict[str, str]]:
    """Make the staged files the workspace's project and build it; on failure, restore the previous one."""
    current = tenant.folder / "project"
    previous = tenant.folder / "previous"
    shutil.rmtree(previous, ignore_errors=True)
    current.rename(previous)
    staging.rename(current)
    project = load_project(current)
    workspace = registry.engine.workspace(tenant.workspace.name, project)
    try:
        workspace.build(replace_changed=allow_destructive)
    except ProjectError as e:
        errors = [_error_entry(e, current)]
        shutil.rmtree(current, ignore_errors=True)
        previous.rename(current)
        tenant.workspace.build()  # the previous project, as it was
        return errors
    shutil.rmtree(previous, ignore_errors=True)
    tenant.workspace = workspace
    tenant.tokens = TokenStore.load(tenant.folder, project, tenant.tokens.admin.value)
    return []
