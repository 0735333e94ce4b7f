"""Deployments: the datafiles `tb deploy` and `tb build` upload, checked, staged and promoted in a workspace.

As in Tinybird, for every workspace, the main (served) one included:

- an upload is parsed and validated with the same project loader as everything else; a broken datafile
  comes back as an error naming its file, which `tb` prints;
- a valid upload is diffed against the live deployment's datafiles (new, changed and deleted resources,
  as `tb` lists them) and built into a scratch database first, so SQL errors are found before anything
  changes; `check` stops there (`tb deploy --check`);
- a datasource whose columns change is refused unless `allow_destructive_operations` (then it is recreated
  empty); `tb build` always allows it, like Tinybird Local;
- with `auto_promote` (`tb deploy`) the deployment goes live at once; without it (`tb deployment create`)
  it is staged: its datafiles wait in the workspace folder, the live deployment keeps serving, and
  `set-live` (`tb deployment promote`) or `DELETE` (`tb deployment discard`) decides. One staged
  deployment at a time;
- going live builds the new project into the workspace's database: tables of unchanged datasources and
  their data are kept; the deployment it replaces is marked deleted.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ...engine import Workspace
from ...errors import NotFoundError, ParameterError, ProjectError, TbkitError
from ...project.datafiles import Project, load_project
from .deployment import DATA_READY, DELETED, FAILED, Deployment
from .registry import Registry, Tenant, database_name, datafile_texts


@dataclass
class Outcome:
    """What an upload came to: Tinybird's `result` (`success`, `failed` or `no_changes`), the changes it makes, the
    errors that failed it, and the deployment it created (none for a check, a failure or no change)."""

    result: str
    changes: dict[str, list[str]] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    deployment: Deployment | None = None


def diff(old: dict[str, dict[str, str]], new: Project) -> dict[str, list[str]]:
    """New, changed and deleted datasources and pipes between deployed datafile texts and a project."""
    texts = datafile_texts(new)
    changes: dict[str, list[str]] = {}
    for kind in ("datasource", "pipe"):
        before, after = old.get(kind, {}), texts[kind]
        changes[f"new_{kind}_names"] = sorted(set(after) - set(before))
        changes[f"changed_{kind}_names"] = sorted(n for n in after if n in before and after[n] != before[n])
        changes[f"deleted_{kind}_names"] = sorted(set(before) - set(after))
    return changes


def find(tenant: Tenant, deployment_id: str) -> Deployment:
    """A deployment of the workspace, by id; NotFoundError naming the ids it has otherwise."""
    for deployment in tenant.all_deployments():
        if deployment.id == deployment_id:
            return deployment
    known = ", ".join(d.id for d in tenant.all_deployments())
    raise NotFoundError(f"Deployment '{deployment_id}' not found in workspace '{tenant.name}' (deployments: {known})")


def pending(tenant: Tenant) -> Deployment | None:
    """The staged deployment waiting to be promoted or discarded, if any."""
    return next((d for d in tenant.staged if d.status == DATA_READY and not d.live), None)


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


def apply(
    registry: Registry,
    tenant: Tenant,
    files: list[tuple[str, str]],
    check: bool = False,
    allow_destructive: bool = False,
    live: bool = True,
) -> Outcome:
    """Validate uploaded datafiles, then check, stage or deploy them."""
    with tenant.lock:
        waiting = pending(tenant)
        if waiting is not None and not check:
            raise ParameterError(
                f"Deployment #{waiting.id} is staged in workspace '{tenant.name}': promote it "
                "(tb deployment promote) or discard it (tb deployment discard) before creating another one"
            )
        upload = tenant.deploy_dir / f"upload-{uuid.uuid4().hex[:8]}"
        try:
            _write_upload(files, upload)
            try:
                project = load_project(upload)
            except ProjectError as e:
                return Outcome("failed", errors=[_error_entry(e, upload)])
            changes = diff(tenant.texts, project)
            if not any(changes.values()):
                return Outcome("no_changes")
            errors = _check_build(registry, tenant, project, allow_destructive, upload)
            if errors or check:
                return Outcome("failed" if errors else "success", changes, errors)
            deployment = Deployment(tenant.next_deployment_id(), changes=changes, allow_destructive=allow_destructive)
            if live:
                errors = _swap(registry, tenant, upload, deployment)
                if errors:
                    return Outcome("failed", changes, errors)
            else:
                staging = tenant.staging_dir(deployment.id)
                staging.parent.mkdir(parents=True, exist_ok=True)
                upload.rename(staging)
                tenant.staged.append(deployment)
            tenant.save()
            return Outcome("success", changes, deployment=deployment)
        finally:
            shutil.rmtree(upload, ignore_errors=True)


def promote(registry: Registry, tenant: Tenant, deployment_id: str) -> Deployment:
    """Make a staged deployment live (`set-live`); the deployment it replaces is marked deleted.

    ProjectError when its datafiles no longer build into the workspace (it is then marked failed, and the
    live deployment keeps serving).
    """
    with tenant.lock:
        deployment = find(tenant, deployment_id)
        if deployment.live:
            return deployment
        if deployment.status != DATA_READY:
            raise ParameterError(
                f"Deployment #{deployment_id} is {deployment.status}: only a staged deployment can be promoted"
            )
        errors = _swap(registry, tenant, tenant.staging_dir(deployment_id), deployment)
        if errors:
            deployment.status, deployment.errors = FAILED, errors
            tenant.save()
            raise ProjectError(
                f"Deployment #{deployment_id} cannot be promoted: "
                + "; ".join(f"{e.get('filename', '')} {e['error']}".strip() for e in errors)
            )
        tenant.save()
        return deployment


def discard(tenant: Tenant, deployment_id: str) -> Deployment:
    """Delete a deployment that is not live (`tb deployment discard`); deleting a deleted one is a no-op."""
    with tenant.lock:
        deployment = find(tenant, deployment_id)
        if deployment.live:
            raise ParameterError(
                f"Deployment #{deployment_id} is live: promote another deployment before discarding it"
            )
        if deployment.status != DELETED:
            deployment.status, deployment.live = DELETED, False
            shutil.rmtree(tenant.staging_dir(deployment_id), ignore_errors=True)
            tenant.save()
        return deployment


def _check_build(
    registry: Registry, tenant: Tenant, project: Project, allow_destructive: bool, upload: Path
) -> list[dict[str, str]]:
    """Build the project into a scratch database to find SQL errors, and check it against the live tables."""
    scratch_name = database_name(tenant.name, registry.prefix) + "_check_" + uuid.uuid4().hex[:8]
    scratch = Workspace(registry.engine, scratch_name, project)
    try:
        scratch.build()
        if not allow_destructive:
            Workspace(registry.engine, tenant.workspace.name, project).check_compatible()
        return []
    except ProjectError as e:
        return [_error_entry(e, upload)]
    finally:
        scratch.drop()


def _swap(registry: Registry, tenant: Tenant, source: Path, deployment: Deployment) -> list[dict[str, str]]:
    """Make the datafiles in `source` the workspace's live project, build it and make `deployment` live; on failure,
    keep the old one and return the errors."""
    current = tenant.project_dir
    previous = tenant.deploy_dir / "previous"
    shutil.rmtree(previous, ignore_errors=True)
    had_current = current.exists()
    if had_current:
        current.rename(previous)
    source.rename(current)
    try:
        project = load_project(current)
        workspace = Workspace(registry.engine, tenant.workspace.name, project, tenant.workspace.query_timeout)
        workspace.build(replace_changed=deployment.allow_destructive, drop_stages=False)  # appends in flight
    except ProjectError as e:
        errors = [_error_entry(e, current)]
        shutil.rmtree(current, ignore_errors=True)
        if had_current:
            previous.rename(current)
        tenant.workspace.build(drop_stages=False)  # the previous project, as it was
        return errors
    shutil.rmtree(previous, ignore_errors=True)
    tenant.make_live(workspace, deployment)
    return []
