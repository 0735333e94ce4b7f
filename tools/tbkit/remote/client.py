"""A client for Tinybird's HTTP API: `tbkit serve`, Tinybird Local and Tinybird Cloud alike.

Appends NDJSON through the Events API in batches (`wait=true`), retries 429 and 503 honouring
`Retry-After` within a deadline, calls endpoints, runs queries and checks health.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ..errors import AuthError, IngestError, NotFoundError, QueryError, TbkitError

RETRY_STATUSES = {429, 503}


@dataclass
class AppendTotals:
    """What a batched append did in all: successful and quarantined rows, and requests sent."""

    datasource: str
    successful_rows: int = 0
    quarantined_rows: int = 0
    requests: int = 0


def _batches(lines: Iterable[bytes], batch_rows: int) -> Iterator[bytes]:
    batch: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        batch.append(line if line.endswith(b"\n") else line + b"\n")
        if len(batch) >= batch_rows:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


def _lines(data: bytes | str | Path | Iterable[dict]) -> Iterable[bytes]:
    if isinstance(data, bytes):
        return data.splitlines(keepends=True)
    if isinstance(data, Path | str):
        return Path(data).open("rb")
    return (json.dumps(row).encode() + b"\n" for row in data)


class TinybirdClient:
    """HTTP calls to one Tinybird API host with one token."""

    def __init__(self, host: str, token: str | None, timeout: float = 60.0, retry_deadline: float = 30.0):
        self.host = host.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request, retried on 429/503 after `Retry-After` until the retry deadline."""
        deadline = time.monotonic() + self.retry_deadline
        while True:
            try:
                response = self.session.request(method, self.host + path, timeout=self.timeout, **kwargs)
            except requests.ConnectionError:
                raise TbkitError(f"cannot connect to {self.host}: is the server running?") from None
            except requests.Timeout:
                raise TbkitError(f"{self.host} did not answer {method} {path} within {self.timeout:g} s") from None
            if response.status_code not in RETRY_STATUSES:
                return response
            wait = _retry_after(response)
            if time.monotonic() + wait > deadline:
                return response
            time.sleep(wait)  # the server asked for this pause

    def health(self) -> dict[str, Any]:
        """The health document (`/v0/health`); raises when the server is down."""
        response = self.request("GET", "/v0/health")
        _raise_for(response)
        return response.json()

    def wait_until_ready(self, deadline_seconds: float = 30.0, interval: float = 0.1) -> None:
        """Poll health until it answers, or raise after the deadline."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                self.health()
                return
            except TbkitError:
                if time.monotonic() > deadline:
                    raise TbkitError(f"{self.host} was not ready after {deadline_seconds:g} s") from None
            time.sleep(interval)

    def append_ndjson(
        self,
        datasource: str,
        data: bytes | str | Path | Iterable[dict],
        batch_rows: int = 10_000,
        wait: bool = True,
    ) -> AppendTotals:
        """Append NDJSON (bytes, a file, or dicts) through the Events API in batches."""
        totals = AppendTotals(datasource)
        for body in _batches(_lines(data), batch_rows):
            response = self.request(
                "POST",
                "/v0/events",
                params={"name": datasource, "wait": "true" if wait else "false"},
                data=body,
                headers={"Content-Type": "application/x-ndjson"},
            )
            _raise_for(response)
            result = response.json()
            totals.successful_rows += int(result.get("successful_rows", 0))
            totals.quarantined_rows += int(result.get("quarantined_rows", 0))
            totals.requests += 1
        return totals

    def query_pipe(self, name: str, params: dict[str, str] | None = None, fmt: str = "json") -> tuple[int, Any]:
        """Call an endpoint: (status, parsed JSON body, or text for csv/ndjson)."""
        response = self.request("GET", f"/v0/pipes/{name}.{fmt}", params=params or {})
        if fmt == "json" or response.status_code >= 400:
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, {"error": response.text}
        return response.status_code, response.text

    def sql(self, q: str) -> dict[str, Any]:
        """Run a query through the Query API and return its JSON."""
        response = self.request("GET", "/v0/sql", params={"q": f"{q} FORMAT JSON"})
        _raise_for(response)
        return response.json()

    def row_count(self, datasource: str) -> int:
        """Rows in a datasource, through the Query API."""
        return int(self.sql(f"SELECT count() AS rows FROM {datasource}")["data"][0]["rows"])

    def truncate(self, datasource: str) -> None:
        """Empty a datasource (`POST /v0/datasources/<name>/truncate`)."""
        _raise_for(self.request("POST", f"/v0/datasources/{datasource}/truncate"))


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _raise_for(response: requests.Response) -> None:
    """Turn an error response into the matching tbkit error, with the server's message."""
    if response.status_code < 400:
        return
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text or response.reason
    errors = {403: AuthError, 401: AuthError, 404: NotFoundError, 400: QueryError, 413: IngestError}
    error = errors.get(response.status_code, TbkitError)(f"{response.status_code}: {message}")
    error.status = response.status_code
    raise error
