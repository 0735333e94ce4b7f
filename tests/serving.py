"""Servers for tests: in-process over the session's engine (the default), or `tbkit serve` as a process.

Most HTTP tests drive a `Service` built over the shared test engine and served on a background thread
of the test process, as datasette's tests drive its app in-process. A real process is started only where
the process is the point: signals, kill -9, restart, the real `tb`, load.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

from tbkit.engine import Engine
from tbkit.errors import TbkitError
from tbkit.server import ServerConfig, Service
from tbkit.server.process import ServeProcess, free_port
from tbkit.server.thread import BackgroundServer

from . import ROOT

ADMIN_TOKEN = "admin-token-for-tests"
_servers = itertools.count()

__all__ = ["ADMIN_TOKEN", "DevProcess", "InProcessServer", "ROOT", "ServerProcess", "free_port"]


class InProcessServer:
    """A server over `engine` on a thread of this process, with a data directory and a log file of its own."""

    def __init__(self, engine: Engine, data_dir: Path, token: str | None = ADMIN_TOKEN, **config):
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        prefix = f"srv{os.getpid()}_{next(_servers)}_"
        settings = ServerConfig(
            project_dir=ROOT / "tinybird", data_dir=data_dir, admin_token=token, database_prefix=prefix, **config
        )
        self.service = Service(settings, engine=engine)
        self.token = self.service.main.tokens.admin.value
        self._thread = BackgroundServer(self.service)
        self._log = logging.FileHandler(self.log_path)
        self._log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self._stopped = False

    @property
    def url(self) -> str:
        return self._thread.url

    def start(self) -> InProcessServer:
        for name in ("tornado.access", "tbkit"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.INFO)
            logger.addHandler(self._log)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop this server's workspaces and release its thread pool (once)."""
        if self._stopped:
            return
        self._stopped = True
        self._thread.stop()
        for name in ("tornado.access", "tbkit"):
            logging.getLogger(name).removeHandler(self._log)
        self._log.close()
        for tenant in list(self.service.registry.tenants.values()):
            tenant.workspace.drop()
        self.service.close()

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


class ServerProcess(ServeProcess):
    """`tbkit serve` as a child process of the tests, logging to a file beside its data directory."""

    def __init__(self, data_dir: Path, token: str | None = ADMIN_TOKEN, *extra: str):
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        super().__init__(data_dir, ROOT / "tinybird", token, (*extra, "-v"), self.log_path.open("ab"), cwd=ROOT)

    def start(self, deadline: float = 60.0) -> ServerProcess:
        try:
            super().start(deadline)
        except TbkitError as e:  # the test sees why the process did not start
            raise RuntimeError(f"{e}: {self.log_path.read_text()}") from None
        return self

    def stop(self, *args, **kwargs) -> int | None:
        code = super().stop(*args, **kwargs)
        self.log.close()
        return code

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


class DevProcess(ServerProcess):
    """`tbkit dev` as a child process over the project and fixtures of `root` (a copy to edit), seeding `data_dir`."""

    def __init__(self, root: Path, data_dir: Path, token: str | None = ADMIN_TOKEN):
        self.root = root
        super().__init__(data_dir, token)

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("serve")] = "dev"
        project = command.index("--project") + 1
        command[project] = str(self.root / "tinybird")
        return command + ["--fixtures", str(self.root / "fixtures")]
