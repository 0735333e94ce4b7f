"""Generated data kept between runs: `<work_dir>/data-<label>-seed<seed>`, reused while it is whole.

`tbkit bench` and `tbkit check --budgets` share the folder (`.tbkit/bench` by default), so either reuses what the
other generated. A folder is reused when its `report.json` is the report of that size and seed, naming the
workload's datasources, and every file is there; otherwise it is generated again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .hooks import GeneratedData, LoadedWorkload

REPORT = "report.json"
# Worker processes a generator may use; it may use fewer where starting them costs more than a small size takes.
WORKERS = 2


def folder_of(work_dir: Path, label: str, seed: int) -> Path:
    """Where the data of a scale label (`S`, `custom-5000`) and seed is kept."""
    return work_dir / f"data-{label}-seed{seed}"


def cached(workload: LoadedWorkload, folder: Path, rows: int, seed: int) -> GeneratedData | None:
    """The report of the data in `folder` when it is that of `rows` and `seed` and every file is there."""
    try:
        data = GeneratedData.from_dict(json.loads((folder / REPORT).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # none yet, or the report of another generator or version: generated again
    if (data.size, data.seed, list(data.files)) != (rows, seed, list(workload.datasources)):
        return None
    return data if all((folder / f"{name}.ndjson").is_file() for name in data.files) else None


def prepare(
    workload: LoadedWorkload,
    work_dir: Path,
    label: str,
    rows: int,
    seed: int = 0,
    log: Callable[[str], object] = lambda message: None,
) -> tuple[Path, GeneratedData]:
    """The data of `rows` rows under `work_dir`, generated unless it is there already; its folder and report."""
    folder = folder_of(work_dir, label, seed)
    data = cached(workload, folder, rows, seed)
    if data is None:
        log(f"generating {label} data into {folder}")
        data = workload.generate(folder, rows, seed, workers=WORKERS)
        (folder / REPORT).write_text(json.dumps(data.to_dict()), encoding="utf-8")
    return folder, data
