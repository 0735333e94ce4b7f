"""A deployment as Tinybird's Deployments API shows it (`GET /v1/deployments/<id>`), and as a workspace keeps it.

A deployment is live (serving), staged (created without promotion, waiting), deleted (replaced by a later one, or
discarded) or failed. Its record says what it changed (`new_datasource_names`, ... as `tb` lists them) and, for a
staged one, whether promoting it may recreate changed datasources. `Tenant.make_live` is the one way a deployment
goes live; the workspace keeps its records in `workspace.json` (`to_record`, `from_record`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Tinybird's statuses: a deployment whose data is ready is `data_ready`, staged or live alike.
DATA_READY, DELETED, FAILED = "data_ready", "deleted", "failed"
CHANGE_KEYS = (
    "new_datasource_names",
    "changed_datasource_names",
    "deleted_datasource_names",
    "new_pipe_names",
    "changed_pipe_names",
    "deleted_pipe_names",
)
# The record's key for `allow_destructive`: kept in workspace.json, never shown by the API.
_ALLOW_DESTRUCTIVE = "_allow_destructive"


def now() -> str:
    """The current UTC time as Tinybird's deployment records show it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Deployment:
    """One deployment of a workspace."""

    id: str
    status: str = DATA_READY
    live: bool = False
    created_at: str = field(default_factory=now)
    errors: list[dict[str, str]] = field(default_factory=list)
    feedback: list[Any] = field(default_factory=list)
    new_data_connector_ids: list[str] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)  # CHANGE_KEYS -> resource names
    allow_destructive: bool = False  # promoting it may recreate datasources whose columns changed

    @classmethod
    def first(cls) -> Deployment:
        """Deployment 0: what a workspace starts with (empty, or the main workspace's project folder), live."""
        return cls("0", live=True)

    def changed(self, key: str) -> list[str]:
        """The names under one of CHANGE_KEYS (none when the deployment does not say)."""
        return self.changes.get(key, [])

    def to_api(self) -> dict[str, Any]:
        """The deployment as the Deployments API answers it."""
        shown = {
            "id": self.id,
            "status": self.status,
            "live": self.live,
            "created_at": self.created_at,
            "errors": self.errors,
            "feedback": self.feedback,
            "new_data_connector_ids": self.new_data_connector_ids,
        }
        return {**shown, **{key: self.changes[key] for key in CHANGE_KEYS if key in self.changes}}

    def to_record(self) -> dict[str, Any]:
        """The deployment as workspace.json keeps it."""
        return {**self.to_api(), _ALLOW_DESTRUCTIVE: self.allow_destructive}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Deployment:
        """A deployment from workspace.json (records written before a key existed lack it)."""
        return cls(
            id=str(record["id"]),
            status=record.get("status", DATA_READY),
            live=bool(record.get("live", False)),
            created_at=record.get("created_at", now()),
            errors=list(record.get("errors", [])),
            feedback=list(record.get("feedback", [])),
            new_data_connector_ids=list(record.get("new_data_connector_ids", [])),
            changes={key: list(record[key]) for key in CHANGE_KEYS if key in record},
            allow_destructive=bool(record.get(_ALLOW_DESTRUCTIVE, False)),
        )
