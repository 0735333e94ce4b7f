"""The hook tbkit calls (`[tool.tbkit] workload = "customer_analytics.workload:WORKLOAD"` in pyproject.toml).

A row, in tbkit's sizes (`--rows`, `scales`, budgets.yaml's `{rows: N}`), is a customer here: a size of N generates N
customers with their events (10 each on average), transactions (5) and demographics (1), and about 5 % of the
customers re-sent with a newer record.
"""

from __future__ import annotations

from pathlib import Path

from tbkit.datagen import GeneratedData, GeneratedFile

from . import datagen
from .parameters import ENDPOINTS, Parameters

# Below this many customers the data is generated in this process: starting worker processes costs more.
SMALL = 50_000


class CustomerAnalytics:
    """Our data generator, request parameters and peer, as tbkit's `Workload` protocol asks for them."""

    datasources = datagen.DATASOURCES
    scales = {name: scale.customers for name, scale in datagen.SCALES.items()}
    endpoints = ENDPOINTS

    def generate(self, out: Path, rows: int, seed: int, workers: int) -> GeneratedData:
        """`rows` customers and their activity, written into `out` (the same bytes for the same arguments)."""
        report = datagen.generate(out, rows, seed=seed, workers=workers if rows >= SMALL else 1)
        details = report.to_dict()
        kinds = {name: details["files"][name]["malformed_by_kind"] for name in report.files}
        for key in ("out_dir", "seed", "files", "seconds", "rows", "bytes"):
            details.pop(key)
        files = {name: GeneratedFile(f.rows, f.malformed, f.bytes) for name, f in report.files.items()}
        return GeneratedData(rows, seed, files, report.seconds, {**details, "malformed_by_kind": kinds})

    def parameters(self, rows: int, seed: int) -> Parameters:
        """Default and varied parameters for the endpoints, drawn from `rows` generated customers."""
        return Parameters(rows, seed)

    def peer(self):
        """The same endpoints in DuckDB, with two threads (DuckDB is the `bench` extra)."""
        from .duckdb_peer import DuckDBPeer

        return DuckDBPeer(threads=2)


WORKLOAD = CustomerAnalytics()
