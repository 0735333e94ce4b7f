"""`tbkit bench` produces every figure: ingestion, latencies, server, and our DuckDB peer with the same rows; results
of any version load and compare."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from customer_analytics.duckdb_peer import DuckDBPeer
from customer_analytics.parameters import ENDPOINTS
from tbkit.bench.harness import percentile, summary
from tbkit.bench.report import compare, overhead_ms
from tbkit.bench.result import BenchResult, load_result

from . import ROOT
from .repo_copy import invoke

# A result an earlier version wrote (`tbkit bench --scale S --target http --out ...`, before the data generator became
# the project's hook and the result a typed one): today's must load it and compare with it.
BEFORE_THE_HOOK = ROOT / "tests" / "data" / "bench-S-before-the-hook.json"


def run_bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        "-m",
        "tbkit.cli",
        "bench",
        *args,
        "--work-dir",
        str(tmp_path / "bench"),
        "--result",
        str(out),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| customer_segment_lookup | default |" in result.stdout  # the markdown table
    return json.loads(out.read_text())


def check_figures(result: dict, calls: int) -> None:
    bulk = result["ingestion"]["bulk"]
    for name in ("customers", "customer_events", "customer_transactions", "customer_demographics", "all"):
        assert bulk[name]["rows_per_second"] > 0 and bulk[name]["rows"] > 0
    for key in ("events_api_in_process", "events_api_http"):
        assert result["ingestion"][key]["rows_per_second"] > 0
    for endpoint in ENDPOINTS:
        for series in ("default", "varied"):
            figures = result["embedded"][endpoint][series]
            assert figures["calls"] == calls
            assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
            assert figures["rows_read"] > 0
            assert result["duckdb"]["latency"][endpoint][series]["p50_ms"] > 0
            assert result["duckdb"]["ratio_duckdb_p50_to_ours"][endpoint][series]["in_process"] > 0
        over_http = result["http"][endpoint]["default"]
        # each call's overhead is its round trip minus the server's own time for it: less than the round trip
        assert over_http["p50_ms"] > 0 and 0 < over_http["overhead_p50_ms"] < over_http["p99_ms"]
    assert result["floor"]["select_1_ms"] > 0 and result["server"]["health_round_trip_ms"] > 0
    assert result["server"]["ready_seconds"] > 0 and result["server"]["peak_rss_mb"] > 0
    duck = result["duckdb"]
    assert duck["same_rows_loaded"] is True, (duck["load"], duck["engine_rows"])
    assert duck["rows_match"] is True, duck["mismatches"]
    assert result["machine"]["cores"] >= 1 and result["machine"]["chdb"]


def test_percentiles_use_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50.0, 95.0, 99.0)
    assert summary([0.001, 0.002, 0.003], [10, 30, 20]).to_dict() == {
        "calls": 3,
        "p50_ms": 2.0,
        "p95_ms": 3.0,
        "p99_ms": 3.0,
        "rows_read": 20,
    }


def test_a_small_bench_has_every_figure(tmp_path):
    check_figures(run_bench(tmp_path, "--rows", "1500", "--calls", "10"), 10)


@pytest.mark.slow
def test_the_s_scale_bench_end_to_end(tmp_path):
    result = run_bench(tmp_path, "--scale", "S", "--calls", "30", "--http-series", "all")
    check_figures(result, 30)
    assert result["data"]["customer_events"] == 100_000
    assert all(result["http"][e]["varied"]["p50_ms"] > 0 for e in ENDPOINTS)


def test_the_duckdb_peer_keeps_every_valid_line_among_broken_ones(tmp_path):
    """A broken line among many valid ones (DuckDB reorders filters over large inputs) is skipped, not fatal."""
    path = tmp_path / "customer_transactions.ndjson"
    lines, valid = [], 0
    for i in range(300_000):
        row = {"customer_id": f"cust_{i}", "transaction_date": "2024-01-01 00:00:00", "transaction_amount": 1.5}
        line = json.dumps(row)
        if i % 997 == 0:
            line = line[:30]  # truncated: not JSON
        else:
            valid += 1
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    peer = DuckDBPeer(threads=2)
    try:
        loaded = peer.load({"customer_transactions": path})
    finally:
        peer.close()
    assert loaded["customer_transactions"] == valid == 300_000 - 301


def fake_result(p50: float, http_p50: float, rows_per_second: int) -> BenchResult:
    return BenchResult.from_dict(fake_result_json(p50, http_p50, rows_per_second))


def fake_result_json(p50: float, http_p50: float, rows_per_second: int) -> dict:
    figures = {"calls": 5, "p50_ms": p50, "p95_ms": p50 * 2, "p99_ms": p50 * 3, "rows_read": 10}
    http = {"calls": 5, "p50_ms": http_p50, "p95_ms": http_p50, "p99_ms": http_p50}
    return {
        "scale": "S",
        "command": "tbkit bench --scale S",
        "embedded": {e: {"default": figures, "varied": figures} for e in ENDPOINTS},
        "http": {e: {"default": http} for e in ENDPOINTS},
        "ingestion": {"bulk": {"all": {"rows": 100, "seconds": 1.0, "rows_per_second": rows_per_second}}},
    }


def test_server_timing_gives_the_engine_duration():
    from tbkit.bench.harness import server_time_ms

    assert server_time_ms("engine;dur=4.250") == 4.25
    assert server_time_ms('cache;desc="hit", engine;desc="query";dur=1.5') == 1.5
    assert server_time_ms("") == 0.0 and server_time_ms("db;dur=3") == 0.0


def test_the_per_call_overhead_wins_over_the_difference_of_two_series():
    data = fake_result_json(5.0, 8.0, 1000)
    assert overhead_ms(BenchResult.from_dict(data), "customer_cltv", "default") == 3.0
    data["http"]["customer_cltv"]["default"] = {**data["http"]["customer_cltv"]["default"], "overhead_p50_ms": 0.4}
    assert overhead_ms(BenchResult.from_dict(data), "customer_cltv", "default") == 0.4


def test_compare_prints_each_figure_with_its_ratio(tmp_path):
    old, new = fake_result(8.0, 11.0, 1000), fake_result(4.0, 4.5, 1500)
    assert (overhead_ms(old, "customer_cltv", "default"), overhead_ms(new, "customer_cltv", "varied")) == (3.0, None)
    table = compare(old, new)
    assert "| customer_cltv default: in-process p50 (ms) | 8.0 | 4.0 | 0.50× |" in table
    assert "| customer_cltv default: server overhead p50 (ms) | 3.0 | 0.5 | 0.17× |" in table
    assert "| bulk append all (rows/s) | 1,000 | 1,500 | 1.50× |" in table
    noisy = fake_result(8.0, 7.5, 1000)  # HTTP faster than in-process: a negative overhead has no ratio
    assert "| customer_cltv default: server overhead p50 (ms) | -0.5 | 0.5 | - |" in compare(noisy, new)
    (tmp_path / "old.json").write_text(json.dumps(old.to_dict()))
    (tmp_path / "new.json").write_text(json.dumps(new.to_dict()))
    (tmp_path / "bad.json").write_text("{not json")
    result = invoke(["bench", "--compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")])
    assert result.exit_code == 0, result.output
    assert result.output == table
    result = invoke(["bench", "--compare", str(tmp_path / "old.json"), str(tmp_path / "bad.json")])
    assert result.exit_code != 0
    assert "bad.json: not JSON" in result.output


def test_a_result_written_before_the_hook_loads_whole_and_compares(tmp_path):
    """Every key of an older result is read into the typed result and written back the same."""
    before = json.loads(BEFORE_THE_HOOK.read_text())
    result = load_result(BEFORE_THE_HOOK)
    assert result.to_dict() == before
    assert result.endpoints == list(ENDPOINTS) and result.peer is not None and result.peer.label == "DuckDB"
    table = compare(result, result)
    assert "| customer_cltv default: HTTP p50 (ms) | 3.6 | 3.6 | 1.00× |" in table
    assert "| customer_cltv varied: DuckDB ÷ ours, http (×) | 2.4 | 2.4 | 1.00× |" in table
    assert "In one result only" not in table


def test_compare_takes_no_measuring_option_and_measuring_takes_a_size(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(fake_result(8.0, 11.0, 1000).to_dict()))
    both = invoke(["bench", "--compare", str(tmp_path / "r.json"), str(tmp_path / "r.json"), "--scale", "S"])
    assert both.exit_code == 2 and "Error: --compare measures nothing: it takes no --scale" in both.output
    flags = invoke(["bench", "--no-peer", "--compare", str(tmp_path / "r.json"), str(tmp_path / "r.json")])
    assert flags.exit_code == 2 and "it takes no --no-peer" in flags.output
    neither = invoke(["bench", "--calls", "10"])
    assert neither.exit_code == 2 and neither.output.strip().endswith("Error: pass exactly one of --scale and --rows")
