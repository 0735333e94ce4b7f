"""Generated data at a named scale, loaded into a workspace, and request parameters for it.

What `tbkit bench` (latency) and `tbkit check --budgets` (rows and bytes read) share: the data is generated
once by `datagen` into `<work_dir>/data-<label>-seed<seed>` and reused while its files are there, appended
into a fresh embedded workspace with the generator's counts checked, and merged to the steady state; each
endpoint gets deterministic default and varied parameters drawn from the generated customers.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine import Workspace
from ..errors import TbkitError
from . import datagen

ENDPOINTS = (
    "customer_segment_lookup",
    "customer_cltv",
    "customer_engagement_analysis",
    "customer_segments_summary",
    "cltv_summary",
    "cltv_by_location",
)
PER_CUSTOMER = ("customer_segment_lookup", "customer_cltv")
LOCATIONS = ["New York", "Chicago", "Austin", "Seattle", "Miami", "Boston", "Denver"]
EVENT_TYPES = ["purchase", "login", "page_view", "add_to_cart"]
SMALL = 50_000  # customers: below this, data is generated in this process


def prepare_data(
    work_dir: Path,
    label: str,
    scale: str | None = None,
    customers: int | None = None,
    seed: int = 0,
    log: Callable[[str], object] = lambda message: None,
) -> tuple[Path, dict[str, Any]]:
    """Generate the data of a named `scale` (or of `customers` customers) under `work_dir`, or reuse it when
    its files and report are there; its folder and the generator's report."""
    folder = work_dir / f"data-{label}-seed{seed}"
    report_path = folder / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        if all((folder / f"{name}.ndjson").is_file() for name in datagen.DATASOURCES):
            return folder, report
    log(f"generating {label} data into {folder}")
    size = datagen.SCALES[scale].customers if scale in datagen.SCALES else customers or 0
    workers = 2 if size >= SMALL else 1  # starting worker processes costs more than a small scale takes
    if scale:
        report = datagen.generate_scale(folder, scale, seed, workers=workers).to_dict()
    elif customers:
        report = datagen.generate(folder, customers, seed=seed, workers=workers).to_dict()
    else:
        raise TbkitError(f"scale {label}: give a named scale or a number of customers")
    report_path.write_text(json.dumps(report))
    return folder, report


def load(ws: Workspace, folder: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Append each file, time it, and check successful/quarantined rows against the generator's counts."""
    figures: dict[str, Any] = {}
    total_rows = total_seconds = 0.0
    for name in datagen.DATASOURCES:
        started = time.perf_counter()
        result = ws.append(name, folder / f"{name}.ndjson")
        seconds = time.perf_counter() - started
        expected = report["files"][name]
        rows = result.successful_rows + result.quarantined_rows
        if (result.successful_rows, result.quarantined_rows) != (expected["valid"], expected["malformed"]):
            raise TbkitError(
                f"{name}: the engine stored {result.successful_rows} and quarantined {result.quarantined_rows}, "
                f"the generator wrote {expected['valid']} valid and {expected['malformed']} malformed rows"
            )
        figures[name] = {
            "rows": rows,
            "successful_rows": result.successful_rows,
            "quarantined_rows": result.quarantined_rows,
            "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds),
        }
        total_rows, total_seconds = total_rows + rows, total_seconds + seconds
    figures["all"] = {
        "rows": int(total_rows),
        "seconds": round(total_seconds, 3),
        "rows_per_second": round(total_rows / total_seconds),
    }
    return figures


def settle(ws: Workspace) -> None:
    """Merge every table's parts, as background merges eventually do, so reads see the steady state."""
    for name in ws.project.datasources:
        ws.engine.execute(f"OPTIMIZE TABLE {ws.name}.{name} FINAL")


class Parameters:
    """Deterministic request parameters for each endpoint: defaults, and varied ones."""

    def __init__(self, customers: int, seed: int):
        self.customers = customers
        self.rng = random.Random(seed)

    def customer(self, spell: bool = False) -> str:
        """A generated customer's ID, in another spelling when `spell`."""
        cid = datagen.customer_id(self.rng.randint(1, self.customers), self.customers)
        if spell:
            cid = self.rng.choice([cid, cid.upper(), f"  {cid} ", cid.capitalize()])
        return cid

    def moment(self, days_back: int) -> str:
        """A time up to `days_back` days before the data's `as_of`."""
        moment = datagen.AS_OF.timestamp() - self.rng.randint(0, days_back * 86400)
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))

    def default(self, endpoint: str) -> dict[str, str]:
        """Default parameters; a random existing customer for the per-customer endpoints."""
        return {"customer_id": self.customer()} if endpoint in PER_CUSTOMER else {}

    def varied(self, endpoint: str) -> dict[str, str]:
        """Random filters, windows, limits, customers in other spellings and `as_of` values."""
        rng = self.rng
        if endpoint == "customer_segment_lookup":
            return {"customer_id": self.customer(spell=True), "as_of": self.moment(730)}
        if endpoint == "customer_cltv":
            return {"customer_id": self.customer(spell=True)}
        if endpoint == "customer_engagement_analysis":
            start = self.moment(1000)
            end = time.strftime(
                "%Y-%m-%d %H:%M:%S",
                time.gmtime(time.mktime(time.strptime(start, "%Y-%m-%d %H:%M:%S")) + rng.randint(1, 90) * 86400),
            )
            params = {
                "start_date": start,
                "end_date": end,
                "limit": str(rng.randint(1, 500)),
                "as_of": datagen.AS_OF_TEXT,
            }
            if rng.random() < 0.5:
                params["event_type"] = ",".join(rng.sample(EVENT_TYPES, rng.randint(1, 2)))
            return params
        if endpoint == "customer_segments_summary":
            low = rng.randint(18, 60)
            params = {"min_age": str(low), "max_age": str(rng.randint(low, 80)), "as_of": self.moment(365)}
            if rng.random() < 0.7:
                params["location"] = rng.choice(LOCATIONS)
            return params
        return {}
