"""Load and crashes against a real `tbkit serve`: nothing acknowledged is ever lost.

Figures are written to reports/reliability/*.json for docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import threading
import time

import pytest
import requests

from . import ROOT
from .serving import ServerProcess

pytestmark = pytest.mark.slow
REPORTS = ROOT / "reports" / "reliability"
ENDPOINT_CALLS = [
    ("customer_segment_lookup", {"customer_id": "cust_7", "as_of": "2025-07-01 12:00:00"}),
    ("customer_engagement_analysis", {"limit": "20"}),
    ("customer_engagement_analysis", {"start_date": "2025-01-01 00:00:00", "event_type": "purchase"}),
    ("customer_segments_summary", {}),
    ("cltv_summary", {}),
    ("customer_cltv", {"customer_id": "cust_7"}),
    ("cltv_by_location", {}),
]


def report(name: str, figures: dict) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))


def events(prefix: str, count: int, rng: random.Random) -> bytes:
    """`count` valid events with ids `<prefix>_<n>`, for a few hundred customers."""
    lines = []
    for n in range(count):
        kind = rng.choice(["purchase", "login", "page_view"])
        value = f', "event_value": {rng.randint(1, 500)}' if kind == "purchase" else ""
        day = rng.randint(1, 28)
        lines.append(
            f'{{"event_id": "{prefix}_{n}", "customer_id": "CUST_{rng.randint(1, 300)}", "event_type": "{kind}"'
            f'{value}, "timestamp": "2025-06-{day:02d} 10:00:00"}}'
        )
    return ("\n".join(lines) + "\n").encode()


def scalar(server, q: str) -> int:
    response = requests.get(f"{server.url}/v0/sql", params={"q": q, "token": server.token}, timeout=120)
    assert response.status_code == 200, response.text
    return int(next(iter(response.json()["data"][0].values())))


def materializations_agree(server) -> dict[str, int]:
    """Row counts of the raw events and of the targets fed from them: they must all be equal."""
    return {
        "customer_events": scalar(server, "SELECT count() FROM customer_events"),
        "customer_events_by_customer_mv": scalar(server, "SELECT count() FROM customer_events_by_customer_mv"),
        "customer_engagement_mv": scalar(server, "SELECT sum(events) FROM customer_engagement_mv"),
    }


def test_eight_writers_and_four_readers(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    deadline = time.monotonic() + 300
    acked, failures, latencies = [0] * 8, [], []
    done = threading.Event()

    def write(number: int) -> None:
        rng = random.Random(number)
        session = requests.Session()
        sent = 0
        while sent < 50_000 and time.monotonic() < deadline:
            size = min(rng.randint(1, 5_000), 50_000 - sent)
            response = session.post(
                f"{server.url}/v0/events?name=customer_events&wait=true",
                data=events(f"w{number}_{sent}", size, rng),
                headers=server.headers(),
                timeout=120,
            )
            if response.status_code != 200:
                failures.append(("write", response.status_code, response.text[:200]))
                return
            acked[number] += response.json()["successful_rows"]
            sent += size

    def read(number: int) -> None:
        session = requests.Session()
        calls = ENDPOINT_CALLS[number:] + ENDPOINT_CALLS[:number]
        while not done.is_set() and time.monotonic() < deadline:
            for name, params in calls:
                started = time.perf_counter()
                response = session.get(
                    f"{server.url}/v0/pipes/{name}.json", params={**params, "token": server.token}, timeout=120
                )
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures.append(("read", name, response.status_code, response.text[:200]))

    started = time.perf_counter()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    readers = [threading.Thread(target=read, args=(n,)) for n in range(4)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    elapsed = time.perf_counter() - started
    done.set()
    for thread in readers:
        thread.join()
    try:
        assert failures == []
        assert time.monotonic() < deadline, "the load run did not finish in its time"
        assert sum(acked) == 400_000
        counts = materializations_agree(server)
        assert set(counts.values()) == {sum(acked)}, counts
    finally:
        server.stop()
    latencies.sort()
    report(
        "load",
        {
            "writers": 8,
            "readers": 4,
            "rows_sent": 400_000,
            "rows_acknowledged": sum(acked),
            "rows_found": counts["customer_events"],
            "failed_requests": len(failures),
            "seconds": round(elapsed, 2),
            "ingest_rows_per_second": round(sum(acked) / elapsed),
            "reads": len(latencies),
            "read_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "read_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        },
    )


def test_kill_9_never_loses_an_acknowledged_row(tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(9)
    survived, sent_total, acked_batches, found_acked = [], 0, {}, 0
    # Kill after this many acknowledged batches; None: kill while a large append is in flight.
    for round_number, kill_after in enumerate([1, 5, 20, None]):
        server = ServerProcess(data_dir).start()
        acked_here: list[str] = []
        stop = threading.Event()

        def write(round_number=round_number, acked_here=acked_here, stop=stop, server=server, kill_after=kill_after):
            nonlocal sent_total
            batch = 0
            session = requests.Session()
            while not stop.is_set():
                prefix = f"k{round_number}b{batch}"
                size = 20_000 if kill_after is None else rng.randint(100, 3_000)
                sent_total += size
                try:
                    response = session.post(
                        f"{server.url}/v0/events?name=customer_events&wait=true",
                        data=events(prefix, size, rng),
                        headers=server.headers(),
                        timeout=120,
                    )
                except requests.ConnectionError:
                    return
                if response.status_code == 200:
                    acked_here.append(prefix)
                    acked_batches[prefix] = response.json()["successful_rows"]
                batch += 1

        writer = threading.Thread(target=write)
        writer.start()
        limit = time.monotonic() + 120
        if kill_after is None:
            while requests.get(f"{server.url}/v0/health").json()["requests_in_flight"] < 1:
                assert time.monotonic() < limit
        else:
            while len(acked_here) < kill_after:
                assert time.monotonic() < limit, "appends stopped being acknowledged"
                time.sleep(0.005)
        stop.set()
        server.stop(signal.SIGKILL)
        writer.join(timeout=60)

        restarted = ServerProcess(data_dir).start()
        try:
            found = {
                row["batch"]: int(row["n"])
                for row in requests.get(
                    f"{restarted.url}/v0/sql",
                    params={
                        "q": "SELECT splitByChar('_', event_id)[1] AS batch, count() AS n FROM customer_events "
                        "GROUP BY batch",
                        "token": restarted.token,
                    },
                ).json()["data"]
            }
            for prefix, rows in acked_batches.items():
                assert found.get(prefix) == rows, f"acknowledged batch {prefix} lost rows"
            found_acked = sum(found[prefix] for prefix in acked_batches)
            counts = materializations_agree(restarted)
            assert len(set(counts.values())) == 1, counts
            lookup = requests.get(
                f"{restarted.url}/v0/pipes/customer_cltv.json",
                params={"customer_id": "nobody", "token": restarted.token},
            )
            assert lookup.status_code == 200
            survived.append({"kill_after_acks": kill_after, "acknowledged_batches": len(acked_here), "rows": counts})
        finally:
            restarted.stop()
    report(
        "crash",
        {
            "kill_points": survived,
            "rows_sent": sent_total,
            "rows_acknowledged": sum(acked_batches.values()),
            "acknowledged_rows_found": found_acked,
        },
    )
