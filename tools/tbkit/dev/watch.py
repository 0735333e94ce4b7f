"""Changes to the files of a project, in bursts: what `tbkit dev` and `tbkit check --watch` react to.

Watching is watchdog's (inotify on Linux, FSEvents on macOS, ...), the library `tb dev` itself uses. A save is
rarely one event: editors write a temporary file and rename it, or truncate then write, so events are gathered
until none came for a short quiet period, and the burst is handed over as one batch of paths, with the time
of its first event (when the user saved). The wait is on the library's events, with no polling of the files.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_OPENED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

log = logging.getLogger("tbkit.watch")
# How long no event must arrive before a burst is over. Editors' write-rename sequences take a few ms.
QUIET_SECONDS = 0.1


class Batch:
    """The paths changed in one burst of events, and when its first event arrived (`time.monotonic()`)."""

    def __init__(self, paths: set[Path], first_event_at: float):
        self.paths = paths
        self.first_event_at = first_event_at


class Watcher:
    """Watch folders recursively; call `on_batch(batch)` on a thread of its own after each burst of changes.

    Batches are delivered one at a time, in order: changes made while `on_batch` runs make the next batch.
    `on_start`, when given, runs first on the same thread (the first full run), with the folders already
    watched, so nothing saved meanwhile is missed.
    """

    def __init__(
        self,
        folders: Iterable[Path],
        on_batch: Callable[[Batch], None],
        on_start: Callable[[], None] | None = None,
        quiet: float = QUIET_SECONDS,
    ):
        self.folders = [Path(folder) for folder in folders]
        self.on_batch = on_batch
        self.on_start = on_start
        self.quiet = quiet
        self._changed: set[Path] = set()
        self._first_event_at = 0.0
        self._last_event_at = 0.0
        self._stopped = False
        self._condition = threading.Condition()
        self._observer = Observer()
        self._thread = threading.Thread(target=self._deliver, name="tbkit-watch", daemon=True)

    def start(self) -> Watcher:
        """Start watching (every folder must exist) and delivering batches."""
        handler = _Collector(self._record)
        for folder in self.folders:
            self._observer.schedule(handler, str(folder), recursive=True)
        self._observer.start()
        self._thread.start()
        return self

    def stop(self, deadline: float = 30.0) -> None:
        """Stop watching; wait for the batch being handled to finish (up to `deadline` s)."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        self._observer.stop()
        self._observer.join(deadline)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(deadline)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, paths: list[str]) -> None:
        now = time.monotonic()
        with self._condition:
            if not self._changed:
                self._first_event_at = now
            self._changed.update(Path(path) for path in paths)
            self._last_event_at = now
            self._condition.notify_all()

    def _next_batch(self) -> Batch | None:
        """Wait for a burst to begin, then for it to go quiet; None once stopped."""
        with self._condition:
            while not self._stopped:
                if not self._changed:
                    self._condition.wait()
                    continue
                remaining = self._last_event_at + self.quiet - time.monotonic()
                if remaining > 0:
                    self._condition.wait(remaining)  # woken early by each new event, which moves the deadline
                    continue
                batch = Batch(self._changed, self._first_event_at)
                self._changed = set()
                return batch
            return None

    def _deliver(self) -> None:
        self._call(self.on_start)
        while (batch := self._next_batch()) is not None:
            self._call(self.on_batch, batch)

    @staticmethod
    def _call(function: Callable | None, *args: object) -> None:
        if function is None:
            return
        try:
            function(*args)
        except Exception:  # logged, and the watcher goes on: the next save gets its run
            log.exception("the run after a change failed")


class _Collector(FileSystemEventHandler):
    """Every file created, changed, moved (both ends) or deleted; directories are left out."""

    def __init__(self, record: Callable[[list[str]], None]):
        self.record = record

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in (EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE):
            return
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        self.record(paths)
