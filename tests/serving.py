"""Start `tbkit serve` as a real process on a free loopback port, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A `tbkit serve` process over a data directory, with its admin token."""

    def __init__(self, data_dir: Path, token: str | None = "admin-token-for-tests", *extra: str):
        self.data_dir = data_dir
        self.token = token
        self.extra = list(extra)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline: float = 60.0) -> ServerProcess:
        """Start the server and poll /v0/health until it answers (never a fixed sleep)."""
        env = dict(os.environ, TB_CLI_TELEMETRY_OPTOUT="1")
        env.pop("TB_TOKEN", None)
        command = [
            sys.executable,
            "-m",
            "tbkit.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        command += ["--project", str(ROOT / "tinybird"), "-v", *self.extra]
        if self.token:
            command += ["--token", self.token]
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        limit = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tbkit serve exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/v0/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > limit:
                self.stop()
                raise RuntimeError(f"tbkit serve was not ready after {deadline} s: {self.log_path.read_text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, deadline: float = 30.0) -> int | None:
        """Stop the server with `sig` and wait for it to exit; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        code, self.process = self.process.returncode, None
        return code

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}
