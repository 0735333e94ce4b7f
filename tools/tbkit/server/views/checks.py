"""`GET /v0/tbkit/checks`: the golden cases' latest outcomes while `tbkit dev` reruns them on every save.

The state belongs to the dev loop (`Service.checks`, set by `tbkit dev`, None under `tbkit serve`); this view
only reads its `snapshot()`, a dict safe to serialize while the loop updates the state on its own thread.
"""

from __future__ import annotations

from ...errors import NotFoundError
from ..base import BaseHandler
from ..workspaces.tokens import ADMIN_SCOPE


class ChecksHandler(BaseHandler):
    """`GET /v0/tbkit/checks` (admin token): generation, running, counts, build error and every case's result."""

    def get(self) -> None:
        self.require(ADMIN_SCOPE)
        checks = self.service.checks
        if checks is None:
            raise NotFoundError("checks run under `tbkit dev` only")
        self.send_json(checks.snapshot())
