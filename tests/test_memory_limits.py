"""Memory limits: one read cannot take the server's memory, and appends go on beside it.

The process test runs a real `tbkit serve` (its memory is the point) and writes its figures to
reports/reliability/memory.json.
"""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
import requests

from tbkit.engine import Engine, MemoryLimits
from tbkit.errors import MemoryLimitError, ParameterError, QueryError, ServerMemoryError, StorageFullError
from tbkit.server import ServerConfig
from tbkit.sizes import format_size, parse_size, physical_memory

from . import ROOT
from .repo_copy import invoke
from .serving import ADMIN_TOKEN, ServerProcess

REPORTS = ROOT / "reports" / "reliability"
# Reads that would take gigabytes without a limit: a 3-billion-element array, billion-key hash tables.
BOMBS = [
    "SELECT groupArray(number) FROM numbers(3000000000)",
    "SELECT number AS k, count() FROM numbers(1000000000) GROUP BY k",
    "SELECT uniqExact(number) FROM numbers(1000000000)",
    "SELECT groupUniqArray(toString(number)) FROM numbers(1000000000)",
]


@pytest.mark.parametrize(
    ("text", "size"),
    [("300000000", 300_000_000), ("500MB", 500_000_000), ("2GiB", 2 * 1024**3), ("1.5G", 1_500_000_000)]
    + [("64 kib", 65_536), ("10b", 10), ("1TB", 10**12)],
)
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "2XB", "-1GB", "0", "1.2.3GB", "2 GiBs"])
def test_bad_sizes_name_what_is_expected(text):
    with pytest.raises(ParameterError, match=f"invalid size '{text}'.*(expected|more than 0)"):
        parse_size(text)


def test_sizes_print_for_people():
    assert format_size(300_000_000) == "286.1 MiB"
    assert format_size(512) == "512 B"
    assert format_size(5 * 1024**3) == "5.0 GiB"


def test_serve_refuses_a_bad_size_with_a_usage_error():
    result = invoke(["serve", "--max-query-memory", "2XB"])
    assert result.exit_code == 2
    assert "Invalid value for '--max-query-memory': invalid size '2XB'" in result.output
    assert "2GiB" in result.output


def test_serve_help_says_the_defaults_and_how_they_are_computed():
    result = invoke(["serve", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert "--max-query-memory SIZE" in text and "--max-server-memory SIZE" in text
    assert "Default: 20 % of the machine's physical memory" in text
    assert "Default: 60 % of the machine's physical memory" in text
    assert format_size(physical_memory() * 20 // 100) + " here" in text


def test_memory_limits_default_to_shares_of_physical_memory():
    limits = ServerConfig().memory_limits()
    assert limits.query == physical_memory() * 20 // 100
    assert limits.server == limits.write == physical_memory() * 60 // 100
    given = ServerConfig(max_query_memory=300_000_000, max_server_memory=1_000_000_000).memory_limits()
    assert (given.query, given.write, given.server) == (300_000_000, 1_000_000_000, 1_000_000_000)
    with pytest.raises(ParameterError, match=r"--max-query-memory \(2.0 GiB\) is more than --max-server-memory"):
        ServerConfig(max_query_memory=2 * 1024**3, max_server_memory=1024**3).memory_limits()


@pytest.mark.parametrize(
    ("message", "readonly", "error", "text"),
    [
        (
            "Code: 241. DB::Exception: Query memory limit exceeded: would use 384.06 MiB (attempt to allocate chunk "
            "of 256.00 MiB), maximum: 286.10 MiB: While executing AggregatingTransform. (MEMORY_LIMIT_EXCEEDED)",
            True,
            MemoryLimitError,
            "the query needed more than 286.1 MiB, the per-query memory limit (tbkit serve --max-query-memory)",
        ),
        (
            "Code: 241. DB::Exception: (total) memory limit exceeded: would use 724.88 MiB, current RSS: 4.88 MiB, "
            "maximum: 381.47 MiB. (MEMORY_LIMIT_EXCEEDED)",
            False,
            ServerMemoryError,
            "the server is at its memory limit of 953.7 MiB (tbkit serve --max-server-memory)",
        ),
        (
            "Code: 243. DB::Exception: Cannot reserve 1.44 MiB, not enough space. (NOT_ENOUGH_SPACE)",
            False,
            StorageFullError,
            "No space left on the device of the data directory",
        ),
        (
            "Code: 74. DB::Exception: Cannot write to file /d/store/x.bin, errno: 28, strerror: No space left on "
            "device. (CANNOT_WRITE_TO_FILE_DESCRIPTOR)",
            False,
            StorageFullError,
            "No space left on the device of the data directory",
        ),
        ("Code: 47. DB::Exception: Unknown identifier x. (UNKNOWN_IDENTIFIER)", True, QueryError, "Unknown identifier"),
    ],
)
def test_engine_errors_name_the_limit_or_the_disk(tmp_path, message, readonly, error, text):
    engine = Engine(tmp_path, owns_path=False, memory=MemoryLimits(300_000_000, 10**9, 10**9))
    mapped = engine._error(RuntimeError(message), readonly, None)
    assert type(mapped) is error
    assert text in mapped.message
    if error is StorageFullError:
        assert mapped.status == 507 and str(tmp_path) in mapped.message


def _events(prefix: str, count: int, rng: random.Random) -> bytes:
    lines = [
        f'{{"event_id": "{prefix}_{n}", "customer_id": "CUST_{rng.randint(1, 300)}", "event_type": "purchase", '
        f'"event_value": {rng.randint(1, 500)}, "timestamp": "2025-06-{rng.randint(1, 28):02d} 10:00:00"}}'
        for n in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(round(int(line.split()[1]) / 1024, 1) for line in status if line.startswith("VmHWM:"))


@pytest.mark.slow
def test_a_memory_bomb_gets_an_error_while_four_writers_append(tmp_path):
    server = ServerProcess(tmp_path / "data", ADMIN_TOKEN, "--max-query-memory", "300MB").start()
    writers, batches, rows_per_batch = 4, 25, 2_000
    acked = [0] * writers
    statuses: list[int] = []
    failures: list[str] = []
    bombs: list[dict] = []
    started = time.monotonic()
    deadline = started + 240

    def write(number: int) -> None:
        rng = random.Random(number)
        session = requests.Session()
        for batch in range(batches):
            if time.monotonic() > deadline:
                failures.append(f"writer {number} stopped at the deadline")
                return
            response = session.post(
                f"{server.url}/v0/events",
                params={"name": "customer_events", "wait": "true"},
                data=_events(f"w{number}_{batch}", rows_per_batch, rng),
                headers=server.headers(),
                timeout=120,
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                acked[number] += response.json()["successful_rows"]
            else:
                failures.append(f"writer {number}: {response.status_code} {response.text[:300]}")

    def read() -> None:  # ordinary reads go on beside the bombs
        session = requests.Session()
        while not done.is_set() and time.monotonic() < deadline:
            response = session.get(f"{server.url}/v0/pipes/cltv_summary.json", headers=server.headers(), timeout=120)
            statuses.append(response.status_code)
            if response.status_code != 200:
                failures.append(f"reader: {response.status_code} {response.text[:300]}")

    done = threading.Event()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)] + [threading.Thread(target=read)]
    try:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads[:writers]) or len(bombs) < 2 * len(BOMBS):
            q = BOMBS[len(bombs) % len(BOMBS)]
            sent = time.monotonic()
            response = requests.get(f"{server.url}/v0/sql", params={"q": q}, headers=server.headers(), timeout=120)
            statuses.append(response.status_code)
            bombs.append({"query": q, "status": response.status_code, "seconds": round(time.monotonic() - sent, 3)})
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert "the query needed more than 286.1 MiB, the per-query memory limit" in error
            assert "--max-query-memory" in error
            if time.monotonic() > deadline:
                break
        done.set()
        for thread in threads:
            thread.join(timeout=180)
        elapsed = time.monotonic() - started
        found = int(
            requests.get(
                f"{server.url}/v0/sql",
                params={"q": "SELECT count() AS n FROM customer_events"},
                headers=server.headers(),
                timeout=120,
            ).json()["data"][0]["n"]
        )
        peak = _peak_rss_mb(server.process.pid)
    finally:
        done.set()
        server.stop()
    REPORTS.mkdir(parents=True, exist_ok=True)
    figures = {
        "max_query_memory": "300MB",
        "writers": writers,
        "rows_sent": writers * batches * rows_per_batch,
        "rows_acknowledged": sum(acked),
        "rows_found": found,
        "bombs": len(bombs),
        "bomb_statuses": sorted({b["status"] for b in bombs}),
        "bomb_seconds_max": max(b["seconds"] for b in bombs),
        "bomb_seconds_median": sorted(b["seconds"] for b in bombs)[len(bombs) // 2],
        "requests": len(statuses),
        "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "server_peak_rss_mb": peak,
        "seconds": round(elapsed, 1),
    }
    (REPORTS / "memory.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
    assert not failures, failures[:5]
    assert not [s for s in statuses if s >= 500]
    assert sum(acked) == writers * batches * rows_per_batch
    assert found == sum(acked)
    # Without a limit the first bomb alone took the server to 10 GB; with 300 MB per read it stays far below.
    assert peak < 3 * 1024, figures
