"""`GET /v0/jobs[/<id>]`: the Jobs API (appends finish before they answer, so every job is done)."""

from __future__ import annotations

from ...errors import NotFoundError
from ...tokens import ADMIN_SCOPE
from ..base import BaseHandler


class JobsHandler(BaseHandler):
    """The workspace's jobs, or one of them."""

    def get(self, job_id: str | None = None) -> None:
        tenant = self.require(ADMIN_SCOPE)
        if job_id is None:
            self.send_json({"jobs": self.service.jobs.of(tenant)})
            return
        job = self.service.jobs.get(tenant, job_id)
        if job is None:
            raise NotFoundError(f"Job {job_id} not found")
        self.send_json(job)
