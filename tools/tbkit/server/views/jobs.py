"""The Jobs API: `GET /v0/jobs`, `GET /v0/jobs/<id>`, `POST /v0/jobs/<id>/cancel|retry` (admin token).

Appends finish before they answer, so every job here is `done`: cancelling one answers Tinybird's 400 for a
job that is not in a cancellable status, and so does retrying one (only jobs in error can be retried).
"""

from __future__ import annotations

from typing import Any

from ...errors import AuthError, NotFoundError, ParameterError
from ..base import BaseHandler
from ..workspaces.registry import Tenant
from ..workspaces.tokens import ADMIN_SCOPE


def with_datasource_id(job: dict[str, Any], tenant: Tenant) -> dict[str, Any]:
    """A job naming its datasource by the id the Data Sources API gives it."""
    name = job["datasource"]["name"]
    return {**job, "datasource": {"id": tenant.resource_id(name), "name": name}}


class JobsBase(BaseHandler):
    """What the Jobs API handlers share: the base URL of job URLs, and finding a job of the workspace."""

    def base_url(self) -> str:
        return f"{self.request.protocol}://{self.request.host}"

    def job(self, job_id: str) -> dict[str, Any]:
        """The job `job_id` of the request's workspace: 404 when there is none, 403 when another's."""
        tenant = self.require(ADMIN_SCOPE)
        found = self.service.jobs.find(job_id)
        if found is None:
            raise NotFoundError(f"Job with id '{job_id}' not found (jobs are kept for 48 hours)")
        if found[0] != tenant.id:
            raise AuthError(f"Forbidden: the token does not have access to job '{job_id}' (another workspace's)")
        return found[1]


class JobsHandler(JobsBase):
    """`GET /v0/jobs[?kind=&status=&created_after=&created_before=]` lists; `GET /v0/jobs/<id>` details."""

    def get(self, job_id: str | None = None) -> None:
        tenant = self.require(ADMIN_SCOPE)
        if job_id is None:
            jobs = self.service.jobs.listing(tenant, self.query_params(), self.base_url())
            self.send_json({"jobs": [with_datasource_id(job, tenant) for job in jobs]})
            return
        job = self.service.jobs.view(self.job(job_id), self.base_url())
        self.send_json(with_datasource_id(job, tenant))


class JobCancelHandler(JobsBase):
    """`POST /v0/jobs/<id>/cancel`: a job in `waiting` could be cancelled; every job here is already done."""

    def post(self, job_id: str) -> None:
        job = self.job(job_id)
        if job["status"] in ("cancelling", "cancelled"):
            raise ParameterError("Job is already being cancelled")
        raise ParameterError(f"Job is not in cancellable status: job '{job_id}' is {job['status']}")


class JobRetryHandler(JobsBase):
    """`POST /v0/jobs/<id>/retry`: only a job in `error` can be retried; every job here is done."""

    def post(self, job_id: str) -> None:
        job = self.job(job_id)
        raise ParameterError(
            f"Job is not in retryable status: job '{job_id}' is {job['status']}; only jobs in error can be retried"
        )
