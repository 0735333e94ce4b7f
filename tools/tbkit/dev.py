"""`tbkit dev`: the local loop. Rebuild what a save changed, rerun the golden cases it affects, report.

`DevLoop` holds the last good build of the project (the served workspace) and its golden cases. `reload(paths)`
takes a batch of changed paths (from `watch.py`, or a test): it parses the whole project again; on an error it
reports `path:line: message` and keeps the last good build; else it rebuilds the workspace in place, keeping the
data of datasources whose schema did not change, reloading the fixture rows of those whose schema or fixture
file changed (and the materialized targets downstream), then reruns the cases of the endpoints affected.
`ChecksState` is the record of those runs that `GET /v0/tbkit/checks` serves.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from typing import Any


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class ChecksState:
    """The latest outcome of every golden case, the current build error and the last change; thread-safe.

    The dev loop writes it from its own thread; the server's handlers read `snapshot()`. `generation` grows by
    one at each completed run (a rerun of cases, or a reload that stopped at a build error), so a reader can
    tell a new state from the one it has.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._running = False
        self._started_at: str | None = None
        self._finished_at: str | None = None
        self._build_error: dict[str, Any] | None = None
        self._changed: list[str] = []
        self._results: dict[str, dict[str, Any]] = {}  # by `endpoint/case`, in the order of the cases

    def begin(self, changed: Iterable[str]) -> None:
        """A run starts, for these changed paths (relative to the project root)."""
        with self._lock:
            self._running = True
            self._started_at = _now()
            self._changed = sorted(changed)

    def finish(
        self,
        case_ids: list[str],
        results: Iterable[dict[str, Any]],
        build_error: dict[str, Any] | None = None,
    ) -> None:
        """A run ended: `results` (each `CaseResult.to_dict()`) replace those of their cases; cases no longer in
        `case_ids` (every case of the project, in order) are dropped; `build_error` is the reload's, or None."""
        with self._lock:
            merged = {**self._results, **{f"{r['endpoint']}/{r['case']}": r for r in results}}
            self._results = {case_id: merged[case_id] for case_id in case_ids if case_id in merged}
            self._build_error = build_error
            self._running = False
            self._finished_at = _now()
            self._generation += 1

    def snapshot(self) -> dict[str, Any]:
        """The state as `GET /v0/tbkit/checks` answers it (a copy: safe to serialize while runs go on)."""
        with self._lock:
            results = [dict(r, differences=list(r["differences"])) for r in self._results.values()]
            return {
                "generation": self._generation,
                "running": self._running,
                "started_at": self._started_at,
                "finished_at": self._finished_at,
                "passed": sum(r["outcome"] != "failed" for r in results),
                "failed": sum(r["outcome"] == "failed" for r in results),
                "build_error": dict(self._build_error) if self._build_error else None,
                "changed": list(self._changed),
                "results": results,
            }
