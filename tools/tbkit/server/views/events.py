"""`POST /v0/events?name=<datasource>[&wait=true]`: the Events API (NDJSON, gzip accepted)."""

from __future__ import annotations

from ...errors import ParameterError, PayloadTooLargeError
from ..base import BaseHandler
from ..bodies import check_event_type, decompress
from ..workspaces.tokens import APPEND


class EventsHandler(BaseHandler):
    """Append NDJSON to a datasource: 202, or 200 with `wait=true`; misfits go to quarantine."""

    async def post(self) -> None:
        name = self.get_query_argument("name", None)
        if not name:
            raise ParameterError("The 'name' parameter is required: /v0/events?name=<datasource>")
        tenant = self.require(APPEND, name)
        tenant.project.datasource(name)
        check_event_type(self.request.headers.get("Content-Type", ""))
        limit = self.service.config.max_events_bytes
        if len(self.request.body) > limit:
            raise PayloadTooLargeError(f"The body is larger than the Events API limit of {limit} bytes")
        body = decompress(self.request.body, self.request.headers.get("Content-Encoding"), limit)
        result = await self.service.run(tenant.workspace.append, name, body)
        self.set_header("X-Tbkit-Import-Id", result.import_id)
        self.send_json(result.to_dict(), 200 if self.flag("wait") else 202)
