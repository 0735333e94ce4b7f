"""The served state: configuration, the engine (injected or opened), the workspace registry, the thread pool.

One `Service` backs one tornado application. Tests build it over the session's engine, with a database
prefix of their own, and drive the application in-process; `tbkit serve` opens the engine on its data
directory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Engine, MemoryLimits
from ..errors import ParameterError
from ..project.datafiles import load_project
from ..query.skeletons import Skeletons
from ..sizes import format_size, share_of_memory
from .requests import RequestLog
from .workspaces.jobs import JobLog
from .workspaces.registry import Registry, Tenant
from .workspaces.tokens import user_tokens

# The stack of the server's pool threads. Tinybird's SQL parser (C++) recurses once per nesting level of a
# query: on a thread whose stack it knows it refuses a query too deep for it with an error, while on the main
# thread a 50 KB query of 25,000 `+` crashed the process. 64 MiB parses any query under MAX_QUERY_BYTES whose
# depth ClickHouse accepts (it is address space; only what a parse touches is ever committed).
PARSER_STACK_BYTES = 64 * 1024 * 1024
# Default memory limits, in % of the machine's physical memory (or its container's limit): one read, and the
# whole server (chDB's own default would be 90 %).
QUERY_MEMORY_PERCENT = 20
SERVER_MEMORY_PERCENT = 60


def option(
    help: str, default: Any = None, *, kind: str = "", minimum: float | None = None, share: float | None = None
) -> Any:
    """A ServerConfig field that is also an option of `tbkit serve` and `tbkit dev`: the command line makes the
    option from it (`--<field-name>`, this default, this help), so each default is written once, here.

    `kind` says what the option takes when its type does not: `size` (bytes, as `2GiB` or `500MB`), `switch`
    (`--x/--no-x`, None when not given), `flag`; `minimum` bounds a number; `share` is the percent of the machine's
    memory a size defaults to (the help then says how much that is on the machine it runs on).
    """
    spec = {"help": help, "kind": kind, "minimum": minimum, "share": share}
    return field(default=default, metadata={"option": spec})


@dataclass
class ServerConfig:
    """Everything `tbkit serve` needs to know; the fields made with `option()` are its command-line options."""

    project_dir: Path = Path("tinybird")
    data_dir: Path = Path(".tbkit")
    host: str = option("Address to listen on.", "127.0.0.1")
    port: int = option("Port to listen on (Tinybird Local's).", 7181)
    admin_token: str | None = option(
        "Admin token of the served workspace (default: generated once and saved in the data directory)."
    )
    max_events_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_concurrency: int = option("Requests served at once; more are answered 429 Too Many Requests.", 32, minimum=1)
    query_timeout: float | None = option("Cancel queries running longer (seconds).", minimum=0.1)
    # Memory limits in bytes of one read and of the whole server; None: QUERY_MEMORY_PERCENT and
    # SERVER_MEMORY_PERCENT of physical memory. They bind the engine a Service opens, not an injected one.
    max_query_memory: int | None = option(
        "Memory one read (Query API or endpoint) may use, e.g. 2GiB or 500MB; a query needing more is cancelled "
        f"with a 400. Default: {QUERY_MEMORY_PERCENT} % of the machine's physical memory (or its container's limit).",
        kind="size",
        share=QUERY_MEMORY_PERCENT,
    )
    max_server_memory: int | None = option(
        "Memory the whole server may use (ClickHouse's max_server_memory_usage), e.g. 8GiB; appends are held only "
        f"to this. Default: {SERVER_MEMORY_PERCENT} % of the machine's physical memory (or its container's limit).",
        kind="size",
        share=SERVER_MEMORY_PERCENT,
    )
    threads: int = 16
    # Tinybird Local's API: None serves it only on a loopback address (its /tokens is unauthenticated).
    local_api: bool | None = option(
        "Answer Tinybird Local's API (/tokens, workspaces, deploys), so `tb --local` works. Default: on when bound "
        "to a loopback address, off otherwise, because its /tokens is unauthenticated as in Tinybird Local.",
        kind="switch",
    )
    # Prefix of the engine databases of this server's workspaces, so servers can share one engine.
    database_prefix: str = ""
    reset_deployment: bool = option(
        "Serve the --project folder again, discarding a deployment that `tb deploy` made and the data directory "
        "kept (the data itself is kept).",
        False,
        kind="flag",
    )
    shutdown_timeout: float = option(
        "On Ctrl+C or SIGTERM, stop accepting connections and let requests in flight finish for up to this many "
        "seconds before cutting them (a second signal cuts them at once).",
        30.0,
        minimum=0,
    )

    def memory_limits(self) -> MemoryLimits:
        """The engine's memory limits: reads to max_query_memory, the server to max_server_memory, and each write
        to the server's limit (a write is never held to a read's limit, so appends go on beside large reads)."""
        query = self.max_query_memory or share_of_memory(QUERY_MEMORY_PERCENT)
        server = self.max_server_memory or share_of_memory(SERVER_MEMORY_PERCENT)
        if query > server:
            raise ParameterError(
                f"--max-query-memory ({format_size(query)}) is more than --max-server-memory ({format_size(server)}): "
                "one query cannot use more memory than the whole server; lower the first or raise the second"
            )
        return MemoryLimits(query=query, write=server, server=server)

    @property
    def serves_local_api(self) -> bool:
        """True when Tinybird Local's API is served: asked for, or by default on a loopback address."""
        if self.local_api is not None:
            return self.local_api
        try:
            return all(ipaddress.ip_address(address).is_loopback for address in _addresses(self.host))
        except ValueError:
            return False


def _addresses(host: str) -> list[str]:
    """The addresses a host name binds to (an empty host binds every interface)."""
    if not host:
        return ["0.0.0.0"]
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror:
        return [host]


# An endpoint whose last RECENT_CALLS calls (at least MIN_CALLS) each took less than INLINE_BELOW seconds in the
# engine is answered on the event loop itself when it is the only request in flight: that saves the hand-off to
# the thread pool and back (two thread wake-ups, about 0.4 ms). A request arriving meanwhile waits for that one
# short query at most; any other request, and any endpoint with a slower recent call, goes to the thread pool.
INLINE_BELOW = 0.05
RECENT_CALLS = 32
MIN_CALLS = 8


class EngineTimes:
    """Recent engine times of each endpoint of each workspace, kept by the event loop (one thread, no lock)."""

    def __init__(self) -> None:
        self._recent: dict[tuple[str, str], deque[float]] = {}

    def fast(self, workspace: str, endpoint: str) -> bool:
        """True when the endpoint's recent calls are known and were each shorter than INLINE_BELOW."""
        recent = self._recent.get((workspace, endpoint))
        return recent is not None and len(recent) >= MIN_CALLS and max(recent) < INLINE_BELOW

    def add(self, workspace: str, endpoint: str, seconds: float) -> None:
        recent = self._recent.setdefault((workspace, endpoint), deque(maxlen=RECENT_CALLS))
        recent.append(seconds)


class Service:
    """The served state: engine, workspaces, executor, jobs and the concurrency count."""

    def __init__(self, config: ServerConfig, engine: Engine | None = None):
        """Serve `config`; with `engine`, share that engine (which the caller closes) instead of opening one."""
        self.config = config
        project = load_project(config.project_dir)
        self._owns_engine = engine is None
        self.engine = engine or Engine.open(config.data_dir, memory=config.memory_limits())
        try:
            data_dir = Path(config.data_dir)
            self.requests = RequestLog(self.engine)  # endpoint calls, as tinybird.pipe_stats(_rt) shows them
            self.requests.ensure_tables()
            self.skeletons = Skeletons()  # table rewrites by query shape, for every workspace served
            self.registry = Registry.open(
                self.engine,
                data_dir,
                project,
                config.admin_token,
                config.database_prefix,
                config.query_timeout,
                from_project=config.reset_deployment,
                skeletons=self.skeletons,
                service_tables=True,
            )
            if config.serves_local_api:
                self.registry.user_tokens = user_tokens(data_dir)
        except BaseException:
            self._release_engine()
            raise
        threading.stack_size(PARSER_STACK_BYTES)  # for the pool's threads, made from here on
        self.executor = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="tbkit")
        self.in_flight = 0
        self.engine_times = EngineTimes()  # which endpoints answer fast enough for the event loop
        self.draining = False  # set when shutting down: answers then say `Connection: close`
        self.jobs = JobLog()
        # The golden cases' state under `tbkit dev` (an object with a thread-safe `snapshot()` dict, read by
        # GET /v0/tbkit/checks); None under `tbkit serve`.
        self.checks: Any = None
        self._columns: dict[tuple[str, int], dict[str, list[tuple[str, str]]]] = {}

    @property
    def main(self) -> Tenant:
        """The workspace built from the served project folder."""
        return self.registry.main

    async def run(self, function: Callable, *args: Any) -> Any:
        """Run a blocking engine call in the thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def endpoint_columns(self, tenant: Tenant) -> dict[str, list[tuple[str, str]]]:
        """Columns of every endpoint of a workspace, computed once per deployment."""
        key = (tenant.name, len(tenant.deployments))
        if key not in self._columns:
            self._columns[key] = {name: tenant.reader.endpoint_columns(name) for name in tenant.project.endpoints}
        return self._columns[key]

    def close(self) -> None:
        """Write the recorded requests, stop the thread pool and release the engine (when this service opened it)."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.requests.flush()
        self._release_engine()

    def _release_engine(self) -> None:
        if self._owns_engine:
            self.engine.close()
