"""Connectors (`tb connection`): this embedded server has none, and says so.

`GET /v0/connectors` answers Tinybird's shape with an empty list, so `tb connection ls` works. Everything
that needs a real Kafka, S3, GCS or DynamoDB connector (creating one, previewing it, the integrations'
settings and policies, `tb datasource sample` and `tb datasource sync`) answers 501 with a message saying
where connectors are available; a connector id is never found (404).
"""

from __future__ import annotations

from ...errors import NotFoundError, TbkitError
from ..base import BaseHandler
from ..workspaces.tokens import ADMIN_SCOPE
from .datasources import resolve

WHERE_TO_USE_CONNECTORS = (
    "Use Tinybird Cloud (`tb --cloud ...`) or the Tinybird Local container (`tb local start`) for connectors."
)


class NoConnectorsError(TbkitError):
    """A request that needs a connector, on a server that has none (HTTP 501 Not Implemented)."""

    status = 501


def no_connectors(what: str) -> NoConnectorsError:
    return NoConnectorsError(
        f"{what}: this embedded server (tbkit serve) has no Kafka, S3, GCS or DynamoDB connectors. "
        + WHERE_TO_USE_CONNECTORS
    )


class ConnectorsHandler(BaseHandler):
    """`GET /v0/connectors[?service=]`: no connectors; `POST /v0/connectors` (create or validate): 501."""

    def get(self) -> None:
        self.require(ADMIN_SCOPE)
        self.send_json({"connectors": []})

    def post(self) -> None:
        self.require(ADMIN_SCOPE)
        service = self.get_query_argument("service", None)
        raise no_connectors(f"Cannot create a {service} connection" if service else "Cannot create a connection")


class ConnectorHandler(BaseHandler):
    """`/v0/connectors/<id>[/...]`: there is no connector with any id here."""

    def _missing(self, connector: str) -> None:
        self.require(ADMIN_SCOPE)
        raise NotFoundError(
            f"Connector '{connector}' not found: this embedded server (tbkit serve) has no connectors. "
            + WHERE_TO_USE_CONNECTORS
        )

    def get(self, connector: str, rest: str | None = None) -> None:
        self._missing(connector)

    def put(self, connector: str, rest: str | None = None) -> None:
        self._missing(connector)

    def post(self, connector: str, rest: str | None = None) -> None:
        self._missing(connector)

    def delete(self, connector: str, rest: str | None = None) -> None:
        self._missing(connector)


class IntegrationsHandler(BaseHandler):
    """`/v0/integrations/...` and `/v1/integrations/...` (S3, GCS, Kafka, DynamoDB settings and policies): 501."""

    def _refuse(self, path: str) -> None:
        self.require(ADMIN_SCOPE)
        service = path.split("/", 1)[0]
        raise no_connectors(f"The {service} integration is not available")

    def get(self, path: str) -> None:
        self._refuse(path)

    def post(self, path: str) -> None:
        self._refuse(path)


class ConnectedDatasourceHandler(BaseHandler):
    """`POST /v0/datasources/<name>/sample`, `/v0/datasources/<name>/scheduling/...` (`tb datasource sample|sync`).

    Only datasources fed by a connector have these; no datasource here has one. A datasource is named by its
    name or id (`tb datasource sync` sends the id); an unknown one is a 404.
    """

    def _refuse(self, name: str, operation: str) -> None:
        tenant = self.require(ADMIN_SCOPE)
        name = resolve(tenant, name)
        action = "sample" if operation == "sample" else "sync or schedule"
        raise no_connectors(f"Cannot {action} the Data Source '{name}', which no connector feeds")

    def get(self, name: str, operation: str) -> None:
        self._refuse(name, operation)

    def post(self, name: str, operation: str) -> None:
        self._refuse(name, operation)

    def put(self, name: str, operation: str) -> None:
        self._refuse(name, operation)
