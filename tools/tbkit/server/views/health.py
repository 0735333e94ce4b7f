"""`GET /v0/health` and `GET /`: is the server up, and what does it serve."""

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


class IndexHandler(BaseHandler):
    """`GET /`: a page listing the endpoints with example URLs (templates/index.html)."""

    limited = False

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        base = f"{self.request.protocol}://{self.request.host}"
        endpoints = []
        for name, pipe in sorted(self.service.main.project.endpoints.items()):
            example = "&".join(f"{p.name}={_example_value(p)}" for p in pipe.parameters.values() if p.required)
            url = f"{base}/v0/pipes/{name}.json?{example + '&' if example else ''}token=$TB_TOKEN"
            endpoints.append({"name": name, "description": pipe.description, "url": url})
        self.render("index.html", endpoints=endpoints)


def _example_value(parameter) -> str:
    return "cust123" if parameter.name == "customer_id" else str(parameter.default or "")
