"""Shutdown that drains: a tornado HTTP server that knows which connections are busy with a request.

After `stop()`, `drain()` lets busy connections finish their request, closes idle keep-alive connections at
once (so they do not hold the shutdown) and, past a deadline, closes what is left. Answers given while
draining carry `Connection: close` (`Service.draining`, set by the serving loop), so clients do not send
another request on a connection about to close.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.httputil

from .limits import LimitedHTTPServer

# How long after an answer a connection still counts as busy: a pipelined request already read into
# tornado's buffer starts within this time.
PIPELINE_GRACE = 0.05


@dataclass
class Drained:
    """What a drain did: requests answered while draining, idle connections closed, connections cut."""

    answered: int = 0
    idle_closed: int = 0
    cut: int = 0
    seconds: float = 0.0


class DrainingHTTPServer(LimitedHTTPServer):
    """Tornado's HTTP server, knowing which connections are busy with a request, so a shutdown can wait for them.

    A connection is busy from the moment a request's headers arrive (its body may still be uploading) until
    its response is written. `drain()` (after `stop()`) lets busy connections finish, answers a request that
    arrives on an open connection but closes the connection after it, and closes idle keep-alive connections
    at once, so they do not hold the shutdown.
    """

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self._current: dict[Any, Any] = {}  # connection -> its request's HTTP1Connection while busy, else None
        self._waiting_since: dict[Any, float] = {}  # connection -> when it began waiting for its next request
        self._draining = False
        self._answered_while_draining = 0

    def start_request(self, server_conn: object, request_conn: tornado.httputil.HTTPConnection) -> Any:
        self._current[server_conn] = None  # the previous request on this connection, if any, is answered
        self._waiting_since[server_conn] = time.monotonic()
        return _TrackedRequest(self, server_conn, request_conn, super().start_request(server_conn, request_conn))

    def on_close(self, server_conn: object) -> None:
        self._current.pop(server_conn, None)
        self._waiting_since.pop(server_conn, None)
        super().on_close(server_conn)

    def _request_started(self, server_conn: object, request_conn: Any) -> None:
        self._current[server_conn] = request_conn
        if self._draining:
            self._answered_while_draining += 1

    def _busy(self, server_conn: Any) -> bool:
        """True while a request is being read or answered, or bytes of the next one have arrived."""
        if self._current.get(server_conn) is not None:
            return True
        # A request already in tornado's read buffer (pipelined) starts within moments of the previous answer.
        if time.monotonic() - self._waiting_since.get(server_conn, 0.0) < PIPELINE_GRACE:
            return True
        stream = server_conn.stream
        try:
            return bool(stream.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, AttributeError):  # closed meanwhile
            return False

    async def drain(
        self, timeout: float, idle: Callable[[], bool] = lambda: True, hurry: asyncio.Event | None = None
    ) -> Drained:
        """Wait, up to `timeout` s, until every connection is closed; call after `stop()`.

        Busy connections finish their request and are closed after their response; idle ones are closed at
        once. `idle()` must also be true before the drain ends (the service's own in-flight count). Past the
        deadline, or once `hurry` is set, what is left is closed, cutting requests still in flight.
        """
        started = time.monotonic()
        drained = Drained()
        self._draining = True
        self._answered_while_draining += sum(1 for request_conn in self._current.values() if request_conn is not None)
        while time.monotonic() - started < timeout and not (hurry and hurry.is_set()):
            for server_conn in [c for c in self._current if not self._busy(c)]:
                drained.idle_closed += 1
                await server_conn.close()
            if not self._current and idle():
                break
            await asyncio.sleep(0.01)
        drained.cut = sum(1 for c in self._current if self._busy(c))
        await self.close_all_connections()
        drained.answered = self._answered_while_draining - drained.cut
        drained.seconds = time.monotonic() - started
        return drained


class _TrackedRequest(tornado.httputil.HTTPMessageDelegate):
    """Tells the server when a request's headers arrive, then hands everything to tornado's own delegate."""

    def __init__(self, server: DrainingHTTPServer, server_conn: object, request_conn: Any, delegate: Any):
        self._server = server
        self._server_conn = server_conn
        self._request_conn = request_conn
        self._delegate = delegate

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self._server._request_started(self._server_conn, self._request_conn)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
