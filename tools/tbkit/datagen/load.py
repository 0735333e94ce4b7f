"""Generated files appended into a workspace, checked against the generator's report, and merged.

The engine must store exactly the rows the generator says are valid and quarantine the others: a difference is an
error naming the datasource and both counts, since every figure measured on that data would be off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..engine import Workspace
from ..errors import TbkitError
from .hooks import GeneratedData


@dataclass(frozen=True)
class FileLoad:
    """One file appended: its rows (lines), those stored and quarantined, and how long it took."""

    rows: int
    successful_rows: int
    quarantined_rows: int
    seconds: float

    @property
    def rows_per_second(self) -> int:
        """Rows appended per second."""
        return round(self.rows / self.seconds) if self.seconds > 0 else 0


def load(ws: Workspace, folder: Path, data: GeneratedData) -> dict[str, FileLoad]:
    """Append each file of `data` from `folder` in load order, timed, its counts checked against the report."""
    loaded: dict[str, FileLoad] = {}
    for name, expected in data.files.items():
        started = time.perf_counter()
        result = ws.append(name, folder / f"{name}.ndjson")
        seconds = time.perf_counter() - started
        if (result.successful_rows, result.quarantined_rows) != (expected.valid, expected.malformed):
            raise TbkitError(
                f"{name}: the engine stored {result.successful_rows} and quarantined {result.quarantined_rows}, "
                f"the generator wrote {expected.valid} valid and {expected.malformed} malformed rows"
            )
        rows = result.successful_rows + result.quarantined_rows
        loaded[name] = FileLoad(rows, result.successful_rows, result.quarantined_rows, seconds)
    return loaded


def settle(ws: Workspace) -> None:
    """Merge every table's parts, as background merges eventually do, so reads see the steady state."""
    for name in ws.project.datasources:
        ws.engine.execute(f"OPTIMIZE TABLE {ws.name}.{name} FINAL")
