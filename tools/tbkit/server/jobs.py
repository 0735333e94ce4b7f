"""The Jobs API's memory: appends run to completion before they answer, so every job is recorded done."""

from __future__ import annotations

from typing import Any

from ..engine import AppendResult
from ..workspaces import Tenant

MAX_JOBS = 1000


class JobLog:
    """The last MAX_JOBS finished jobs, by id, oldest dropped first."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    def record(self, tenant: Tenant, kind: str, datasource: str, result: AppendResult) -> dict[str, Any]:
        """Remember a finished append as a job, in Tinybird's job shape."""
        statistics = result.to_dict()
        job = {
            "id": result.import_id,
            "kind": kind,
            "status": "done",
            "workspace": tenant.id,
            "datasource": {"id": datasource, "name": datasource},
            "statistics": statistics,
            **statistics,
        }
        self.jobs[job["id"]] = job
        while len(self.jobs) > MAX_JOBS:
            self.jobs.pop(next(iter(self.jobs)))
        return job

    def of(self, tenant: Tenant) -> list[dict[str, Any]]:
        """Every remembered job of a workspace."""
        return [job for job in self.jobs.values() if job["workspace"] == tenant.id]

    def get(self, tenant: Tenant, job_id: str) -> dict[str, Any] | None:
        """One job of a workspace, or None."""
        job = self.jobs.get(job_id)
        return job if job is not None and job["workspace"] == tenant.id else None
