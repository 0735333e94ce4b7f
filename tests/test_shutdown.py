"""SIGTERM and SIGINT drain `tbkit serve`: requests in flight are answered, nothing answered is lost, exit 0.

Four writers append through the Events API (`wait=true`) on keep-alive connections, plus one append of
40,000 rows sent just before the signal, so a request is certainly in flight when it arrives. Every
request is classified by when its bytes were fully sent (before or after the signal) and how it ended.
Figures go to reports/reliability/shutdown.json.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import threading
import time

import pytest
import requests

from .repo_copy import invoke
from .serving import ServerProcess
from .test_load_and_crash import REPORTS, events, scalar

pytestmark = pytest.mark.slow
WRITERS = 4
BATCH = 1_500
BIG_BATCH = 40_000
ACKS_BEFORE_SIGNAL = 20
REFUSED = (ConnectionRefusedError,)
CUT = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.IncompleteRead)


class Writer:
    """Appends batches on one keep-alive connection (reopened when the server closes it) and records each."""

    def __init__(self, server: ServerProcess, name: str, signalled: list[float]):
        self.server = server
        self.name = name
        self.signalled = signalled  # [time of the signal], once sent
        self.outcomes: list[dict] = []
        self.done = threading.Event()
        self.rng = random.Random(name)

    def send(self, conn: http.client.HTTPConnection, batch: str, body: bytes) -> dict:
        """One append: `sent` is when its bytes were all handed to the socket (monotonic), None if never."""
        outcome: dict = {"batch": batch, "rows": body.count(b"\n"), "sent": None}
        headers = {"Authorization": f"Bearer {self.server.token}", "Content-Type": "application/x-ndjson"}
        try:
            conn.request("POST", "/v0/events?name=customer_events&wait=true", body=body, headers=headers)
            outcome["sent"] = time.monotonic()
            response = conn.getresponse()
            text = response.read()
            outcome["answered"] = time.monotonic()
            outcome["status"] = response.status
            if response.status == 200:
                outcome["successful_rows"] = json.loads(text)["successful_rows"]
            if response.will_close:
                conn.close()
        except REFUSED:
            outcome["error"] = "refused"
            conn.close()
        except CUT as e:
            outcome["error"] = "cut"
            outcome["detail"] = repr(e)
            conn.close()
        return outcome

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=120)
        number = 0
        try:
            while True:
                batch = f"{self.name}-{number}"
                outcome = self.send(conn, batch, events(batch, BATCH, self.rng))
                self.outcomes.append(outcome)
                number += 1
                if outcome.get("error") == "refused" or (self.signalled and number > 10_000):
                    return  # the listener is closed: the server is going away
        finally:
            conn.close()
            self.done.set()


def classify(outcomes: list[dict], signalled_at: float) -> dict:
    """Counts of requests by when they were sent and how they ended; `lost` are the ones that must not exist."""
    figures = {
        "acked_before_signal": 0,
        "acked_during_drain": 0,
        "refused_after_signal": 0,
        "cut_sent_after_signal": 0,
        "cut_sent_before_signal": 0,
        "not_2xx": 0,
    }
    for outcome in outcomes:
        if outcome.get("status") == 200:
            before = outcome["answered"] < signalled_at
            figures["acked_before_signal" if before else "acked_during_drain"] += 1
        elif outcome.get("error") == "refused":
            figures["refused_after_signal"] += 1
        elif outcome.get("error") == "cut":
            sent_before = outcome["sent"] is not None and outcome["sent"] < signalled_at
            figures["cut_sent_before_signal" if sent_before else "cut_sent_after_signal"] += 1
        else:
            figures["not_2xx"] += 1
    return figures


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_requests_in_flight_and_loses_nothing_answered(tmp_path, sig):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    signalled: list[float] = []
    writers = [Writer(server, f"{sig.name}w{n}", signalled) for n in range(WRITERS)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in writers]
    big = Writer(server, f"{sig.name}big", signalled)
    try:
        for thread in threads:
            thread.start()
        limit = time.monotonic() + 120
        while sum(o.get("status") == 200 for w in writers for o in w.outcomes) < ACKS_BEFORE_SIGNAL:
            assert time.monotonic() < limit, "the writers got no answers"
            assert not any(w.done.is_set() for w in writers), [w.outcomes[-1:] for w in writers]
            time.sleep(0.02)
        # A large append whose bytes are all sent before the signal: it is in flight when the signal arrives.
        big_conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        big_body = events(f"{sig.name}big-0", BIG_BATCH, big.rng)
        headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/x-ndjson"}
        big_conn.request("POST", "/v0/events?name=customer_events&wait=true", body=big_body, headers=headers)
        big_sent = time.monotonic()
        signalled.append(time.monotonic())
        server.process.send_signal(sig)
        try:
            response = big_conn.getresponse()
            big.outcomes.append(
                {
                    "batch": f"{sig.name}big-0",
                    "rows": BIG_BATCH,
                    "sent": big_sent,
                    "answered": time.monotonic(),
                    "status": response.status,
                    "successful_rows": json.loads(response.read())["successful_rows"],
                }
            )
        except CUT as e:
            big.outcomes.append({"batch": f"{sig.name}big-0", "sent": big_sent, "error": "cut", "detail": repr(e)})
        finally:
            big_conn.close()
        code = server.process.wait(timeout=120)
        exited = time.monotonic()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert code == 0, log[-3000:]

    outcomes = [o for w in [*writers, big] for o in w.outcomes]
    figures = classify(outcomes, signalled[0])
    cut_before = [o for o in outcomes if o.get("error") == "cut" and o["sent"] is not None and o["sent"] < signalled[0]]
    assert not cut_before, f"requests sent before the signal were cut: {cut_before[:3]}"
    assert figures["not_2xx"] == 0, [o for o in outcomes if o.get("status") not in (200, None)][:3]
    assert big.outcomes[0].get("status") == 200, big.outcomes  # the request in flight was answered

    # Every answered append is found, batch by batch, after a restart on the same data directory.
    acked = {o["batch"]: o["successful_rows"] for o in outcomes if o.get("status") == 200}
    restarted = ServerProcess(data_dir).start()
    try:
        found = requests.get(
            f"{restarted.url}/v0/sql",
            params={
                "q": "SELECT splitByChar('_', event_id)[1] AS batch, count() AS n FROM customer_events GROUP BY batch",
                "token": restarted.token,
            },
            timeout=120,
        ).json()["data"]
        stored = {row["batch"]: int(row["n"]) for row in found}
        engagement = scalar(restarted, "SELECT sum(events) FROM customer_engagement_mv")
        raw = scalar(restarted, "SELECT count() FROM customer_events")
    finally:
        restarted.stop()
    missing = {batch: (rows, stored.get(batch, 0)) for batch, rows in acked.items() if stored.get(batch) != rows}
    assert not missing, f"acknowledged batches not found whole after the restart: {list(missing.items())[:5]}"
    assert engagement == raw

    drain_line = next((line for line in log.splitlines() if "shutdown: " in line), "")
    figures.update(
        signal=sig.name,
        writers=WRITERS,
        batch_rows=BATCH,
        in_flight_append_rows=BIG_BATCH,
        rows_acknowledged=sum(acked.values()),
        acknowledged_rows_found=sum(min(stored.get(b, 0), n) for b, n in acked.items()),
        rows_after_restart=raw,
        engagement_events_after_restart=engagement,
        signal_to_exit_seconds=round(exited - signalled[0], 3),
        exit_code=code,
        server_drain_log=drain_line.split(" ", 2)[-1],
    )
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / "shutdown.json"
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing[sig.name] = figures
    path.write_text(json.dumps(existing, indent=2, sort_keys=True))


def test_idle_keep_alive_connections_do_not_hold_the_shutdown(tmp_path):
    """A client that keeps its connection open after its answer does not delay the exit: the drain closes it
    at once instead of waiting for the deadline (a minute here), and nothing is cut."""
    server = ServerProcess(tmp_path / "data", None, "--shutdown-timeout", "60").start()
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        idle.request("GET", "/v0/health")
        answer = idle.getresponse()
        answer.read()
        assert answer.status == 200 and not answer.will_close
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=50)  # before the deadline: the idle connection did not hold it
    finally:
        idle.close()
        server.stop()
    log = server.log_path.read_text()
    assert code == 0, log[-2000:]
    assert "1 connections closed idle, 0 cut at the deadline" in log, log[-2000:]


def test_the_shutdown_timeout_is_an_option_of_serve():

    result = invoke(["serve", "--help"])
    assert "--shutdown-timeout" in result.output and "in flight" in result.output
    refused = invoke(["serve", "--shutdown-timeout", "-1"])
    assert refused.exit_code == 2 and "--shutdown-timeout" in refused.output
