"""A server on a background thread of this process: for tests and for embedding beside other work.

The thread runs its own asyncio loop; requests reach it over loopback like any client's, while the
service (and the engine it was given) stays in this process.
"""

from __future__ import annotations

import asyncio
import threading

import tornado.httpserver

from .app import listen
from .service import Service


class BackgroundServer:
    """Serve a `Service` on a thread; `start()` returns once it listens, `stop()` closes it."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0):
        self.service = service
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tbkit-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, deadline: float = 30.0) -> BackgroundServer:
        """Start listening (on a free port when port is 0); raise what kept it from starting."""
        self._thread.start()
        if not self._ready.wait(deadline):
            raise TimeoutError(f"the server did not start within {deadline} s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._server, self.port = listen(self.service, self.host, self.port)
        except BaseException as e:  # handed to the starting thread, which raises it
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._server.close_all_connections())
        self._loop.close()

    def stop(self, deadline: float = 30.0) -> None:
        """Stop listening, close connections and end the thread (the service stays open)."""
        if self._loop is None or self._server is None or not self._thread.is_alive():
            return  # never started, or already stopped
        self._loop.call_soon_threadsafe(self._server.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(deadline)
