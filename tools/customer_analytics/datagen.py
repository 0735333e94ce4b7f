"""Realistic NDJSON for the four landing datasources, at any scale, byte-identical for the same arguments.

Customers are generated in blocks of `BLOCK_SIZE`. Every (file, block) pair draws from its own
`random.Random` seeded with `"<seed>/<stream>/<block>"`, so a block never depends on another one: memory
stays flat in the number of customers, and the output does not depend on how (or in what order) the
blocks are computed. The few facts several files share (a customer's signup date, age and location) come
from their own per-block streams, which every file re-draws.

Dates are fixed relative to `AS_OF`, never the clock. Activity is skewed (Lomax-distributed weights:
many light customers, a few very heavy ones) and denser towards `AS_OF`; every event and transaction
happens after its customer's signup. A share of rows spell the customer ID in another case or with
spaces, a share of customers are re-sent later in the file with a newer `timestamp` and lifetime value,
and a share of rows are malformed in ways the engine must quarantine; the report counts them exactly.
"""

from __future__ import annotations

import heapq
import itertools
import math
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tbkit.errors import ParameterError

from .blocks import AS_OF, AS_OF_TEXT, BLOCK_SIZE, BLOCKS, EVENT_SHAPE, TRANSACTION_SHAPE, Plan, prefix

__all__ = [
    "AS_OF",
    "AS_OF_TEXT",
    "BLOCK_SIZE",
    "DATASOURCES",
    "SCALES",
    "FileReport",
    "GenerationReport",
    "Scale",
    "customer_id",
    "generate",
    "generate_scale",
]

DATASOURCES = ("customers", "customer_events", "customer_transactions", "customer_demographics")


@dataclass(frozen=True)
class Scale:
    """A named dataset size: customers and rows per customer in each datasource."""

    customers: int
    events_per_customer: float
    transactions_per_customer: float = 5.0
    demographics_per_customer: float = 1.0

    def rows(self) -> dict[str, int]:
        """Lines per file, malformed ones included; `customers` also gets the re-sent profiles."""
        return {
            "customers": self.customers,
            "customer_events": round(self.customers * self.events_per_customer),
            "customer_transactions": round(self.customers * self.transactions_per_customer),
            "customer_demographics": round(self.customers * self.demographics_per_customer),
        }


SCALES = {
    "S": Scale(10_000, 10.0),
    "M": Scale(100_000, 10.0),
    "L": Scale(1_000_000, 10.0),
}


@dataclass
class FileReport:
    """One generated NDJSON file: lines written, how many are malformed (by kind) and its size."""

    datasource: str
    path: str
    rows: int = 0
    malformed: int = 0
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def valid(self) -> int:
        """Lines the engine should accept."""
        return self.rows - self.malformed


@dataclass
class GenerationReport:
    """What `generate` wrote, so tests and benchmarks know the data without reading it."""

    out_dir: str
    seed: int
    customers: int
    as_of: str
    files: dict[str, FileReport]
    seconds: float
    customer_id_format: str
    first_customer_id: str
    last_customer_id: str
    sample_customer_ids: list[str]
    customers_with_profile: int
    customers_with_events: int
    customers_with_transactions: int
    heaviest_customers: list[tuple[str, int]]

    @property
    def rows(self) -> int:
        """Lines written across all files."""
        return sum(f.rows for f in self.files.values())

    @property
    def bytes(self) -> int:
        """Bytes written across all files."""
        return sum(f.bytes for f in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        data = asdict(self)
        data["rows"] = self.rows
        data["bytes"] = self.bytes
        data["heaviest_customers"] = [list(pair) for pair in self.heaviest_customers]
        for name, report in self.files.items():
            data["files"][name]["valid"] = report.valid
        return data


# -- public API ---------------------------------------------------------------------------------------


def customer_id(number: int, customers: int = 1) -> str:
    """The canonical ID of customer `number` (1-based) in a dataset of `customers`: `cust_0000001`."""
    return f"cust_{number:0{max(7, len(str(customers)))}d}"


def _check(scale: Scale, **shares: float) -> None:
    if not isinstance(scale.customers, int) or scale.customers < 1:
        raise ParameterError(f"customers must be a positive integer, got {scale.customers!r}")
    for name in ("events_per_customer", "transactions_per_customer", "demographics_per_customer"):
        value = getattr(scale, name)
        if not 0 <= value < math.inf:
            raise ParameterError(f"{name} must be zero or more, got {value!r}")
    for name, value in shares.items():
        if not 0 <= value <= 1:
            raise ParameterError(f"{name} must be between 0 and 1, got {value!r}")


def _plan(scale: Scale, seed: int, malformed_share: float, resent_share: float, variant_share: float) -> Plan:
    rows = scale.rows()
    return Plan(
        customers=scale.customers,
        seed=seed,
        width=max(7, len(str(scale.customers))),
        malformed_share=malformed_share,
        resent_share=resent_share,
        variant_share=variant_share,
        demographics_per_mille=round(scale.demographics_per_customer * 1000),
        events=rows["customer_events"],
        transactions=rows["customer_transactions"],
        event_prefix=prefix(seed, scale.customers, "customer_events-weights", EVENT_SHAPE),
        transaction_prefix=prefix(seed, scale.customers, "customer_transactions-weights", TRANSACTION_SHAPE),
    )


def _write(plan: Plan, datasource: str, path: Path) -> tuple[FileReport, int, list]:
    """Stream a file to disk block by block; its report, customers with valid rows and heaviest customers."""
    started = time.perf_counter()
    chunks = (BLOCKS[datasource](plan, block) for block in range(plan.blocks))
    report = FileReport(datasource, str(path))
    kinds: Counter = Counter()
    with_rows = 0
    heaviest: list[tuple[int, str]] = []
    with path.open("wb") as out:
        for chunk in chunks:
            data = chunk.text.encode()
            out.write(data)
            report.rows += chunk.rows
            report.bytes += len(data)
            kinds.update(chunk.malformed)
            with_rows += chunk.customers_with_rows
            heaviest = heapq.nlargest(5, heaviest + chunk.heaviest)
    report.malformed = sum(kinds.values())
    report.malformed_by_kind = dict(sorted(kinds.items()))
    report.seconds = round(time.perf_counter() - started, 3)
    return report, with_rows, heaviest


def generate(
    out_dir: str | Path,
    customers: int,
    events_per_customer: float = 10,
    seed: int = 0,
    malformed_share: float = 0.001,
    transactions_per_customer: float = 5,
    demographics_per_customer: float = 1,
    resent_share: float = 0.05,
    variant_share: float = 0.1,
    workers: int = 1,
) -> GenerationReport:
    """Write `<datasource>.ndjson` for the four landing datasources into `out_dir`; same arguments, same bytes."""
    scale = Scale(customers, events_per_customer, transactions_per_customer, demographics_per_customer)
    _check(scale, malformed_share=malformed_share, resent_share=resent_share, variant_share=variant_share)
    if not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers!r}")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(scale, seed, malformed_share, resent_share, variant_share)
    paths = [out / f"{datasource}.ndjson" for datasource in DATASOURCES]
    if workers > 1:
        # Files are independent given the plan, so they can be written in parallel with identical bytes.
        # "spawn", not "fork": the calling process may hold chDB's threads.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(DATASOURCES)), mp_context=context) as pool:
            results = list(pool.map(_write, itertools.repeat(plan), DATASOURCES, paths))
    else:
        results = [_write(plan, datasource, path) for datasource, path in zip(DATASOURCES, paths, strict=True)]
    return _report(plan, out, dict(zip(DATASOURCES, results, strict=True)), time.perf_counter() - started)


def _report(
    plan: Plan, out: Path, results: dict[str, tuple[FileReport, int, list]], seconds: float
) -> GenerationReport:
    files = {datasource: report for datasource, (report, _, _) in results.items()}
    with_rows = {datasource: count for datasource, (_, count, _) in results.items()}
    heaviest = results["customer_events"][2]
    sample = sorted({1 + (plan.customers - 1) * k // 19 for k in range(20)})
    return GenerationReport(
        out_dir=str(out),
        seed=plan.seed,
        customers=plan.customers,
        as_of=AS_OF_TEXT,
        files=files,
        seconds=round(seconds, 3),
        customer_id_format=f"cust_{{:0{plan.width}d}}",
        first_customer_id=customer_id(1, plan.customers),
        last_customer_id=customer_id(plan.customers, plan.customers),
        sample_customer_ids=[customer_id(n, plan.customers) for n in sample],
        customers_with_profile=with_rows["customers"],
        customers_with_events=with_rows["customer_events"],
        customers_with_transactions=with_rows["customer_transactions"],
        heaviest_customers=[(cid, count) for count, cid in heaviest],
    )


def generate_scale(out_dir: str | Path, scale: str, seed: int = 0, **options: Any) -> GenerationReport:
    """Generate one of the named `SCALES` (S, M or L); `options` are passed on to `generate`."""
    size = SCALES.get(scale.upper())
    if size is None:
        raise ParameterError(f"unknown scale '{scale}': use one of {', '.join(SCALES)}")
    return generate(
        out_dir,
        customers=size.customers,
        events_per_customer=size.events_per_customer,
        transactions_per_customer=size.transactions_per_customer,
        demographics_per_customer=size.demographics_per_customer,
        seed=seed,
        **options,
    )
