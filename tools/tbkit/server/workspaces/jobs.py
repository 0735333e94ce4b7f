"""The Jobs API's memory: appends run to completion before they answer, so every job is recorded done.

Jobs have Tinybird's shape (`id`, `job_id`, `kind`, `status`, `created_at`, `updated_at`, `started_at`,
`is_cancellable`, `datasource`, `statistics`, ...). They are kept in memory: the last MAX_JOBS of the
server, listed for 48 hours as Tinybird lists them.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from ...engine import AppendResult
from ...errors import ParameterError
from .registry import Tenant

MAX_JOBS = 1000
MAX_LISTED = 100  # GET /v0/jobs answers at most the last 100 jobs, as Tinybird does
LISTED_FOR = timedelta(hours=48)
STATUSES = ("waiting", "working", "done", "error", "cancelling", "cancelled")
# What a job listing shows of each job (GET /v0/jobs); the details show every field.
LISTED_FIELDS = ("id", "kind", "status", "created_at", "updated_at", "job_url", "datasource")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _time_text(moment: datetime) -> str:
    """A UTC time as Tinybird writes job times: `2024-07-22 11:47:58.207606`."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str, parameter: str) -> datetime:
    """An ISO 8601 time of a filter parameter (UTC when it names no zone); ParameterError otherwise."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ParameterError(
            f"Invalid {parameter} '{text}': expected an ISO 8601 date, e.g. 2024-06-15T18:13:25.855Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class JobLog:
    """The last MAX_JOBS finished jobs, by id, oldest dropped first."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self._workspaces: dict[str, str] = {}  # job id -> workspace id
        self._lock = threading.Lock()

    def record(
        self,
        tenant: Tenant,
        kind: str,
        datasource: str,
        result: AppendResult,
        *,
        started: datetime | None = None,
        bytes_read: int | None = None,
        mode: str = "append",
    ) -> dict[str, Any]:
        """Remember a finished append as a job, in Tinybird's job shape (without `job_url`: see `view`).

        `started` is when the append began (else now); `bytes_read` the size of what it read, when known.
        """
        finished = datetime.now(UTC)
        statistics: dict[str, Any] = {"row_count": result.successful_rows}
        if bytes_read is not None:
            statistics["bytes"] = bytes_read
        # One block per import, as Tinybird reports it: `tb datasource append` counts rows from here.
        block = {"lines": result.successful_rows, "quarantine": result.quarantined_rows, "bytes": bytes_read or 0}
        elapsed = (finished - (started or finished)).total_seconds()
        job = {
            "kind": kind,
            "id": result.import_id,
            "job_id": result.import_id,
            "import_id": result.import_id,
            "status": "done",
            "created_at": _time_text(started or finished),
            "started_at": _time_text(started or finished),
            "updated_at": _time_text(finished),
            "is_cancellable": False,
            "mode": mode,
            "datasource": {"id": datasource, "name": datasource},
            "statistics": statistics,
            "quarantine_rows": result.quarantined_rows,
            "invalid_lines": 0,
            "blocks": [{"process_return": [block], "processing_time": elapsed}],
            **result.to_dict(),
        }
        with self._lock:
            self.jobs[job["id"]] = job
            self._workspaces[job["id"]] = tenant.id
            while len(self.jobs) > MAX_JOBS:
                oldest = next(iter(self.jobs))
                del self.jobs[oldest]
                self._workspaces.pop(oldest, None)
        return job

    @staticmethod
    def view(job: dict[str, Any], base_url: str) -> dict[str, Any]:
        """A job as the API answers it: with its `job_url` on the server that answers."""
        return {**job, "job_url": f"{base_url.rstrip('/')}/v0/jobs/{job['id']}"}

    def of(self, tenant: Tenant) -> list[dict[str, Any]]:
        """Every remembered job of a workspace, oldest first."""
        with self._lock:
            return [job for job_id, job in self.jobs.items() if self._workspaces.get(job_id) == tenant.id]

    def listing(self, tenant: Tenant, filters: dict[str, str], base_url: str) -> list[dict[str, Any]]:
        """GET /v0/jobs: the workspace's jobs of the last 48 hours, newest first, at most 100, filtered.

        Filters as Tinybird's: `kind`, `status` (one of STATUSES), `created_after`, `created_before` (ISO
        8601), `pipe_id`, `pipe_name` (appends belong to no pipe, so these match nothing). ParameterError
        for a status or a date that is not one.
        """
        status = filters.get("status")
        if status and status not in STATUSES:
            raise ParameterError(f"Invalid status '{status}': expected one of {', '.join(STATUSES)}")
        after = _parse_time(filters["created_after"], "created_after") if filters.get("created_after") else None
        before = _parse_time(filters["created_before"], "created_before") if filters.get("created_before") else None
        oldest = datetime.now(UTC) - LISTED_FOR
        jobs = []
        for job in reversed(self.of(tenant)):
            created = datetime.strptime(job["created_at"], _TIME_FORMAT).replace(tzinfo=UTC)
            if created < oldest or (after and created <= after) or (before and created >= before):
                continue
            if filters.get("kind") and job["kind"] != filters["kind"]:
                continue
            if status and job["status"] != status:
                continue
            if filters.get("pipe_id") or filters.get("pipe_name"):
                continue
            jobs.append(job)
        listed = [self.view(job, base_url) for job in jobs[:MAX_LISTED]]
        return [{name: job[name] for name in LISTED_FIELDS} for job in listed]

    def find(self, job_id: str) -> tuple[str, dict[str, Any]] | None:
        """A job of any workspace and the id of its workspace, or None."""
        with self._lock:
            job = self.jobs.get(job_id)
            return None if job is None else (self._workspaces[job_id], job)

    def get(self, tenant: Tenant, job_id: str) -> dict[str, Any] | None:
        """One job of a workspace, or None."""
        found = self.find(job_id)
        return found[1] if found is not None and found[0] == tenant.id else None
