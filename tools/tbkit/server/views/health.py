"""`GET /v0/health`: is the server up, and what does it serve (the web UI at `/` is views/ui.py)."""

from __future__ import annotations

from ..base import BaseHandler


class HealthHandler(BaseHandler):
    """`GET /v0/health`: never refused by the concurrency limit, and needs no token."""

    limited = False

    def get(self) -> None:
        project = self.service.main.project
        self.send_json(
            {
                "status": "ok",
                "workspace": self.service.main.name,
                "datasources": len(project.datasources),
                "endpoints": len(project.endpoints),
                "requests_in_flight": self.service.in_flight,
            }
        )
