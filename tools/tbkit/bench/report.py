"""A bench result as markdown tables, and two results compared figure by figure (`tbkit bench --compare`)."""

from __future__ import annotations

from .result import BenchResult, Series

SERIES = ("default", "varied")


def overhead_ms(result: BenchResult, endpoint: str, series: str) -> float | None:
    """What the server adds to a call: the median of each call's round trip minus the server's own time for it
    (`Server-Timing`); for results without it, HTTP p50 minus in-process p50 of the same run (None without HTTP)."""
    over_http = result.http.get(endpoint, {}).get(series)
    if over_http and over_http.overhead_p50_ms is not None:
        return over_http.overhead_p50_ms
    ours = result.embedded.get(endpoint, {}).get(series)
    return round(over_http.p50_ms - ours.p50_ms, 2) if over_http and ours else None


def _triple(figures: Series) -> str:
    return f"{figures.p50_ms} / {figures.p95_ms} / {figures.p99_ms}"


def _latency_rows(result: BenchResult) -> list[str]:
    peer = result.peer
    name = peer.label if peer else "Peer"
    lines = [
        f"| Endpoint | Series | In-process p50 / p95 / p99 (ms) | HTTP p50 / p95 / p99 (ms) | Rows read | "
        f"{name} p50 (ms) | {name} ÷ ours (in-process / HTTP) | Server overhead p50 (ms) |",
        "|---|---|---|---|---:|---:|---|---:|",
    ]
    for endpoint in result.endpoints:
        for series in SERIES:
            ours = result.embedded[endpoint][series]
            over_http = result.http.get(endpoint, {}).get(series)
            theirs = peer.latency.get(endpoint, {}).get(series) if peer else None
            ratio = peer.ratios.get(endpoint, {}).get(series, {}) if peer else {}
            overhead = overhead_ms(result, endpoint, series)
            lines.append(
                f"| {endpoint} | {series} | {_triple(ours)} | {_triple(over_http) if over_http else '-'} | "
                f"{ours.rows_read or 0:,} | {theirs.p50_ms if theirs else '-'} | "
                f"{ratio.get('in_process', '-')}× / {ratio.get('http', '-')}× | "
                f"{overhead if overhead is not None else '-'} |"
            )
    return lines


def _ingestion_rows(result: BenchResult) -> list[str]:
    ingestion = result.ingestion
    if ingestion is None:
        return []
    lines = ["", "| Ingestion | Rows | Seconds | Rows/s |", "|---|---:|---:|---:|"]
    for name, append in ingestion.bulk.items():
        lines.append(f"| bulk append: {name} | {append.rows:,} | {append.seconds} | {append.rows_per_second:,} |")
    for where, batches in (("in-process", ingestion.events_api_in_process), ("http", ingestion.events_api_http)):
        if batches:
            lines.append(
                f"| Events API, 10k-row batches ({where}) | {batches.rows:,} | {batches.seconds} | "
                f"{batches.rows_per_second:,} |"
            )
    return lines


def markdown(result: BenchResult) -> str:
    """The result as markdown tables."""
    lines = [f"### Scale {result.scale}: " + ", ".join(f"{n} {r:,}" for n, r in result.data.items()), ""]
    lines += _latency_rows(result) + _ingestion_rows(result)
    server = result.server
    if server:
        lines += [
            "",
            f"`tbkit serve` ready in {server.ready_seconds} s on the existing data directory; "
            f"peak resident memory {server.peak_rss_mb} MB.",
        ]
    floors = []
    if result.select_1_ms is not None:
        floors.append(f"`SELECT 1` in the embedded engine {result.select_1_ms} ms")
    if server and server.health_round_trip_ms is not None:
        floors.append(f"a `/v0/health` round trip {server.health_round_trip_ms} ms")
    if floors:
        lines.append("Floors of this machine during the run (p50): " + "; ".join(floors) + ".")
    if result.peer:
        peer = result.peer
        lines.append(
            f"{peer.label} {peer.version}: same rows loaded {peer.same_rows_loaded}, "
            f"same endpoint rows {peer.rows_match}."
        )
    return "\n".join(lines) + "\n"


def figures(result: BenchResult) -> dict[str, float]:
    """Every comparable figure of a result by label: latencies (ms, lower is better) and rates (higher is)."""
    found: dict[str, float] = {}
    for endpoint in result.endpoints:
        for series in SERIES:
            where = f"{endpoint} {series}"
            for side, latency in (("in-process", result.embedded), ("HTTP", result.http)):
                if figures_of := latency.get(endpoint, {}).get(series):
                    for q in ("p50", "p95", "p99"):
                        found[f"{where}: {side} {q} (ms)"] = getattr(figures_of, f"{q}_ms")
            overhead = overhead_ms(result, endpoint, series)
            if overhead is not None:
                found[f"{where}: server overhead p50 (ms)"] = overhead
            ratio = result.peer.ratios.get(endpoint, {}).get(series, {}) if result.peer else {}
            for side in ("in_process", "http"):
                if isinstance(ratio.get(side), int | float):
                    found[f"{where}: {result.peer.label} ÷ ours, {side.replace('_', '-')} (×)"] = ratio[side]
    ingestion = result.ingestion
    if ingestion:
        for name, append in ingestion.bulk.items():
            found[f"bulk append {name} (rows/s)"] = append.rows_per_second
        for key in ("events_api_in_process", "events_api_http"):
            if batches := getattr(ingestion, key):
                found[f"{key.replace('_', ' ')} (rows/s)"] = batches.rows_per_second
    server = result.server
    if server:
        for value, label in (
            (server.health_round_trip_ms, "HTTP floor: /v0/health round trip p50 (ms)"),
            (server.ready_seconds, "serve ready (s)"),
            (server.peak_rss_mb, "serve peak memory (MB)"),
        ):
            if isinstance(value, int | float):
                found[label] = value
    if result.select_1_ms is not None:
        found["engine floor: SELECT 1 p50 (ms)"] = result.select_1_ms
    return found


def compare(old: BenchResult, new: BenchResult) -> str:
    """A markdown table of every figure two results share: old, new, and new ÷ old.

    For times a ratio under 1 is an improvement; for rates (rows/s, peer ÷ ours) one over 1 is. A server overhead
    can come out negative in a noisy run (HTTP faster than in-process): it then has no ratio.
    """
    before, after = figures(old), figures(new)
    lines = [
        f"Old: {old.command or '?'} (scale {old.scale}); new: {new.command or '?'} (scale {new.scale})",
        "",
        "| Figure | Old | New | New ÷ old |",
        "|---|---:|---:|---:|",
    ]
    for label, value in before.items():
        if label not in after:
            continue
        ratio = f"{after[label] / value:.2f}×" if value > 0 and after[label] >= 0 else "-"  # no ratio of a negative
        lines.append(f"| {label} | {value:,} | {after[label]:,} | {ratio} |")
    missing = sorted(set(before) ^ set(after))
    if missing:
        lines += ["", "In one result only: " + ", ".join(missing)]
    return "\n".join(lines) + "\n"
