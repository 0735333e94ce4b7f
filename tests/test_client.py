"""The HTTP client: batching, retries that honour Retry-After, and errors that say what went wrong."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tbkit.errors import AuthError, TbkitError
from tbkit.remote import client as client_module
from tbkit.remote.client import TinybirdClient

from .serving import free_port


class FakeTinybird:
    """A scripted HTTP server: answers from a queue of (status, headers, body) and records requests."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[tuple[str, str, bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                fake.requests.append((self.command, self.path, self.rfile.read(length)))
                status, headers, body = fake.answers.pop(0) if fake.answers else (200, {}, {})
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sleeps(monkeypatch):
    """Record the client's pauses instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", recorded.append)
    return recorded


def test_appends_in_batches_with_wait_true():
    fake = FakeTinybird([(200, {}, {"successful_rows": 10_000, "quarantined_rows": 0})] * 2 + [(200, {}, {})])
    fake.answers[-1] = (200, {}, {"successful_rows": 4_999, "quarantined_rows": 1})
    try:
        rows = [{"n": i} for i in range(25_000)]
        totals = TinybirdClient(fake.url, "t").append_ndjson("customer_events", rows)
    finally:
        fake.close()
    assert (totals.successful_rows, totals.quarantined_rows, totals.requests) == (24_999, 1, 3)
    assert [path for _, path, _ in fake.requests] == ["/v0/events?name=customer_events&wait=true"] * 3
    assert [body.count(b"\n") for _, _, body in fake.requests] == [10_000, 10_000, 5_000]


@pytest.mark.parametrize("status", [429, 503])
def test_retries_honour_retry_after(sleeps, status):
    fake = FakeTinybird([(status, {"Retry-After": "2"}, {"error": "busy"}), (200, {}, {"status": "ok"})])
    try:
        assert TinybirdClient(fake.url, "t").health() == {"status": "ok"}
    finally:
        fake.close()
    assert sleeps == [2.0]
    assert len(fake.requests) == 2


def test_retries_stop_at_the_deadline(sleeps):
    fake = FakeTinybird([(429, {"Retry-After": "100"}, {"error": "Too many requests"})])
    try:
        with pytest.raises(TbkitError, match="429: Too many requests"):
            TinybirdClient(fake.url, "t", retry_deadline=5).health()
    finally:
        fake.close()
    assert sleeps == []


def test_errors_keep_the_servers_message():
    fake = FakeTinybird([(403, {}, {"error": "Invalid token"})])
    try:
        with pytest.raises(AuthError, match="403: Invalid token"):
            TinybirdClient(fake.url, "t").sql("SELECT 1")
    finally:
        fake.close()


def test_a_server_that_is_not_there(sleeps):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TbkitError, match=f"cannot connect to {url}"):
        TinybirdClient(url, "t").health()
    with pytest.raises(TbkitError, match="was not ready after 0.5 s"):
        TinybirdClient(url, "t").wait_until_ready(deadline_seconds=0.5, interval=0)


def test_query_pipe_returns_status_and_body():
    fake = FakeTinybird([(200, {}, {"data": [{"x": 1}]}), (400, {}, {"error": "limit"})])
    try:
        api = TinybirdClient(fake.url, "t")
        assert api.query_pipe("cltv_summary", {"a": "1"}) == (200, {"data": [{"x": 1}]})
        assert api.query_pipe("cltv_summary") == (400, {"error": "limit"})
    finally:
        fake.close()
    assert fake.requests[0][1] == "/v0/pipes/cltv_summary.json?a=1"
