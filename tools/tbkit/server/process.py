"""`tbkit serve` as a child process on a free loopback port: for the benchmark, and for tests whose point
is the process (signals, kill -9, restart, the real `tb`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import requests

from ..errors import TbkitError


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """A `tbkit serve` process over a data directory, with its admin token (None: generated)."""

    def __init__(
        self,
        data_dir: Path,
        project_dir: Path,
        token: str | None = None,
        extra: tuple[str, ...] = (),
        log: IO[bytes] | int = subprocess.DEVNULL,
        cwd: Path | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.project_dir = Path(project_dir)
        self.token = token
        self.extra = list(extra)
        self.log = log
        self.cwd = cwd
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [sys.executable, "-m", "tbkit.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir), "--project", str(self.project_dir), *self.extra]
        return command + (["--admin-token", self.token] if self.token else [])

    def start(self, deadline: float = 60.0) -> ServeProcess:
        """Start the server and poll /v0/health until it answers (never a fixed sleep)."""
        env = dict(os.environ, TB_CLI_TELEMETRY_OPTOUT="1")
        self.process = subprocess.Popen(
            self.command(), stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd
        )
        limit = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise TbkitError(f"tbkit serve exited with {self.process.returncode} before it was ready")
            try:
                if requests.get(f"{self.url}/v0/health", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or too busy starting to answer
                pass
            if time.monotonic() > limit:
                self.stop()
                raise TbkitError(f"tbkit serve was not ready after {deadline} s")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, deadline: float = 30.0) -> int | None:
        """Stop the server with `sig` and wait for it to exit (kill it past the deadline); its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code, self.process = self.process.returncode, None
        return code
