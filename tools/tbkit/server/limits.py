"""Request size limits answered over HTTP: never a connection closed without an answer.

Tornado closes the connection without a response when a request line and headers pass `max_header_size`, and
answers a bare 400 to a body over `max_body_size`. This server answers as Tinybird does, with its `{"error": ...}`
body and `Connection: close`: 414 when the request line alone is over the head limit (long parameters belong in a
POST body), 431 when the request line and headers together are, 413 when the body is over the body limit (by its
Content-Length before it is read, or as a chunked body arrives).

The request head is checked before tornado reads it: a zero-width read (`_HEAD_FITS`) waits until the buffered
bytes hold the end of the head within the limit, or more bytes than the limit. After a refusal the server stops
sending and reads what the client still sends (for up to `LINGER_SECONDS`, or until it is idle for
`LINGER_IDLE_SECONDS`) before closing, so that closing over unread bytes does not reset the connection and
lose the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import Awaitable
from typing import Any

import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.iostream

HEAD_LIMIT = 64 * 1024  # request line and headers together, bytes (tornado's default max_header_size)
LINGER_SECONDS = 30.0  # after a refusal, read and discard what the client still sends for at most this long
LINGER_IDLE_SECONDS = 5.0  # ... or until it sends nothing for this long
_HEAD_END = b"\r?\n\r?\n"  # how tornado finds the end of a request head (the same bytes, not a raw string)
_UNLIMITED_BODY = 1 << 62
POST_HINT = "send the parameters in a POST body (JSON or form) to /v0/pipes/<name>.json or /v0/sql"

log = logging.getLogger("tbkit.server")


def _head_fits(limit: int) -> re.Pattern[bytes]:
    """Matches empty when the head ends within `limit` bytes, and the first `limit` + 1 bytes when it does not."""
    return re.compile(rb"\A(?:(?=[\s\S]{0,%d}?%s)|[\s\S]{%d})" % (limit - 4, _HEAD_END, limit + 1))


class LimitedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer answering 414, 431 and 413 with a JSON error instead of closing the connection."""

    def initialize(  # type: ignore[override]
        self, request_callback: Any, *, max_header_size: int = HEAD_LIMIT, max_body_size: int, **kwargs: Any
    ) -> None:
        super().initialize(request_callback, max_header_size=max_header_size, max_body_size=max_body_size, **kwargs)
        self.head_limit = max_header_size
        self.body_limit = max_body_size
        self._head_fits = _head_fits(max_header_size)

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple) -> None:
        # The same socket, read by a stream that checks each request head before tornado reads it.
        stream = _HeadCheckingStream(
            stream.socket,
            self.head_limit,
            self._head_fits,
            max_buffer_size=stream.max_buffer_size,
            read_chunk_size=stream.read_chunk_size,
        )
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        return _BodyLimit(delegate, request_conn, self.body_limit)  # type: ignore[arg-type]


class _HeadCheckingStream(tornado.iostream.IOStream):
    """An IOStream whose request-head reads answer 414 or 431 when the head is over the limit."""

    def __init__(self, sock: socket.socket, limit: int, head_fits: re.Pattern[bytes], **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self._limit = limit
        self._head_fits = head_fits

    def read_until_regex(self, regex: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        if max_bytes is None or regex != _HEAD_END:
            return super().read_until_regex(regex, max_bytes)
        return self._read_head(regex, max_bytes)

    async def _read_head(self, regex: bytes, max_bytes: int) -> bytes:
        start = await super().read_until_regex(self._head_fits)  # consumes nothing when the head fits
        if not start:
            return await super().read_until_regex(regex, max_bytes)
        if b"\n" not in start:
            status = 414
            message = f"The request line is longer than the limit of {self._limit} bytes: {POST_HINT}"
        else:
            status = 431
            message = (
                f"The request line and headers are larger than the limit of {self._limit} bytes together: send "
                f"fewer or shorter headers, and {POST_HINT}"
            )
        log.warning("%d a request head over %d bytes", status, self._limit)
        await refuse(self, status, message)
        raise tornado.iostream.StreamClosedError()


class _BodyLimit(tornado.httputil.HTTPMessageDelegate):
    """Passes a request on to `delegate` unless its body is over `limit` bytes, which is answered 413."""

    def __init__(
        self,
        delegate: tornado.httputil.HTTPMessageDelegate,
        connection: tornado.http1connection.HTTP1Connection,
        limit: int,
    ) -> None:
        self.delegate = delegate
        self.connection = connection
        self.limit = limit
        self.received = 0

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        length = headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > self.limit:
            log.warning("413 %s: a body of %s bytes", getattr(start_line, "method", ""), length)
            message = f"The request body is {length} bytes, over the limit of {self.limit} bytes"
            return refuse(self.connection.detach(), 413, f"{message}: send it in several smaller requests")
        if "Content-Length" not in headers:  # a chunked body is counted as it arrives (data_received)
            self.connection.set_max_body_size(_UNLIMITED_BODY)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        self.received += len(chunk)
        if self.received > self.limit:
            log.warning("413 a chunked body over %d bytes", self.limit)
            message = f"The request body is over the limit of {self.limit} bytes: send it in several smaller requests"
            return refuse(self.connection.stream, 413, message)
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


async def refuse(stream: tornado.iostream.IOStream, status: int, message: str) -> None:
    """Answer `status` with Tinybird's `{"error": message}`, then read what the client still sends and close."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {tornado.httputil.responses.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    loop = asyncio.get_running_loop()
    try:
        await stream.write(head.encode("latin1") + body)
        stream.socket.shutdown(socket.SHUT_WR)  # the answer is complete; the client sees it end
        deadline = loop.time() + LINGER_SECONDS
        while loop.time() < deadline:
            await asyncio.wait_for(stream.read_bytes(64 * 1024, partial=True), LINGER_IDLE_SECONDS)
    except (tornado.iostream.StreamClosedError, TimeoutError, OSError):
        pass
    finally:
        stream.close()
