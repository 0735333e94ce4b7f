"""`tb --local deploy` while writers append: no acknowledged row is lost, reads never fail, views agree.

A deploy rebuilds the workspace's materialized views. Four writers append events through the Events API
(`wait=true`) and a reader calls endpoints while the real `tb` deploys, several times, a changed
materialization (`customer_engagement`) and a changed endpoint. Afterwards the landing datasource holds
exactly the acknowledged rows, and every materialized target fed by it agrees with it. Figures go to
reports/reliability/deploy_under_load.json.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tbkit.query import Reader
from tbkit.remote import tb as tbcli

from . import ROOT
from .repo_copy import copy_project
from .serving import ServerProcess
from .test_load_and_crash import REPORTS, events, scalar
from .test_tb_local import tb_env

pytestmark = pytest.mark.slow
WRITERS = 4
BATCH = 500
DEPLOYS = 4
REBUILDS = 60
MATERIALIZATION = Path("materializations") / "customer_engagement.pipe"
ENDPOINT = Path("endpoints") / "cltv_summary.pipe"
READS = [
    ("customer_engagement_analysis", {"limit": "20"}),
    ("cltv_summary", {}),
    ("customer_segment_lookup", {"customer_id": "cust_7"}),
]


def change(project: Path, round_number: int) -> None:
    """A deployable change of the materialization (its description, and on odd rounds an equivalent column
    expression: the target's schema stays the same) and of an endpoint (its description)."""
    pipe = project / MATERIALIZATION
    text = (ROOT / "tinybird" / MATERIALIZATION).read_text()
    text = text.replace("Rolls customer events up", f"Rolls customer events (revision {round_number}) up", 1)
    if round_number % 2:
        text = text.replace("count() AS events", "toUInt64(count()) AS events", 1)
    pipe.write_text(text)
    text = (ROOT / "tinybird" / ENDPOINT).read_text()
    (project / ENDPOINT).write_text(text.replace("(CLTV)", f"(CLTV, revision {round_number})", 1))


class Load:
    """Writers appending events and a reader calling endpoints, until stopped."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.stop = threading.Event()
        self.acked = 0
        self.failed: list[str] = []
        self.reads: dict[int, int] = {}
        self.lock = threading.Lock()

    def write(self, name: str) -> None:
        rng = random.Random(name)
        session = requests.Session()
        number = 0
        while not self.stop.is_set():
            body = events(f"{name}-{number}", BATCH, rng)
            number += 1
            response = session.post(
                f"{self.server.url}/v0/events",
                params={"name": "customer_events", "wait": "true"},
                data=body,
                headers=self.server.headers(),
                timeout=120,
            )
            with self.lock:
                if response.status_code == 200:
                    self.acked += response.json()["successful_rows"]
                else:
                    self.failed.append(f"{response.status_code} {response.text[:200]}")

    def read(self) -> None:
        session = requests.Session()
        n = 0
        while not self.stop.is_set():
            name, params = READS[n % len(READS)]
            n += 1
            response = session.get(
                f"{self.server.url}/v0/pipes/{name}.json", params=params, headers=self.server.headers(), timeout=120
            )
            with self.lock:
                self.reads[response.status_code] = self.reads.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    self.failed.append(f"{name}: {response.status_code} {response.text[:200]}")


def test_deploying_during_ingestion_loses_no_acknowledged_row(tmp_path):
    project = copy_project(tmp_path) / "tinybird"
    (project / ".tinyb").write_text(json.dumps({"name": "main"}))  # tb --local deploys to the served workspace
    server = ServerProcess(tmp_path / "data", "admin-token-for-tests", "--local-api").start()
    load = Load(server)
    threads = [threading.Thread(target=load.write, args=(f"w{n}",), daemon=True) for n in range(WRITERS)]
    threads.append(threading.Thread(target=load.read, daemon=True))
    deploys = []
    try:
        for thread in threads:
            thread.start()
        limit = time.monotonic() + 60
        while load.acked < 2 * WRITERS * BATCH:  # the writers are under way before the first deploy
            assert time.monotonic() < limit and not load.failed, load.failed[:3]
            time.sleep(0.02)
        for round_number in range(1, DEPLOYS + 1):
            change(project, round_number)
            started = time.monotonic()
            result = subprocess.run(
                [tbcli.tb_executable(), "--local", "deploy"],
                cwd=project,
                env=tb_env(server),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert "customer_engagement" in result.stdout and "is live" in result.stdout, result.stdout
            deploys.append(round(time.monotonic() - started, 2))
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=180)
    try:
        assert not load.failed, load.failed[:5]
        assert all(status < 500 for status in load.reads), load.reads
        raw = scalar(server, "SELECT count() FROM customer_events")
        engagement = scalar(server, "SELECT sum(events) FROM customer_engagement_mv")
        by_customer = scalar(server, "SELECT count() FROM customer_events_by_customer_mv")
        live = requests.get(f"{server.url}/v1/deployments", headers=server.headers(), timeout=30).json()
    finally:
        server.stop()
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "deploy_under_load.json").write_text(
        json.dumps(
            {
                "writers": WRITERS,
                "batch_rows": BATCH,
                "deploys": DEPLOYS,
                "deploy_seconds": deploys,
                "rows_acknowledged": load.acked,
                "customer_events_rows": raw,
                "customer_engagement_mv_events": engagement,
                "customer_events_by_customer_mv_rows": by_customer,
                "endpoint_reads_by_status": {str(k): v for k, v in sorted(load.reads.items())},
                "append_failures": len(load.failed),
            },
            indent=2,
            sort_keys=True,
        )
    )
    assert raw == load.acked, f"{load.acked} rows acknowledged, {raw} in customer_events"
    assert engagement == raw, f"customer_engagement_mv counts {engagement} events, customer_events holds {raw}"
    assert by_customer == raw, f"customer_events_by_customer_mv holds {by_customer} rows, customer_events {raw}"
    assert sum(1 for d in live.get("deployments", []) if d.get("live")) == 1, live


def test_rebuilding_the_views_while_appending_feeds_every_row_to_them(workspace):
    """The view swap itself, in-process and many times: a rebuild of the materialized views never lets an
    append that runs meanwhile pass them by (dropping and recreating a view would), and never drops the
    staging table of an append in flight."""
    stop = threading.Event()
    acked: list[int] = []
    errors: list[str] = []

    def append() -> None:
        rng = random.Random("rebuild")
        number = 0
        while not stop.is_set():
            try:
                acked.append(workspace.append("customer_events", events(f"r{number}", 20, rng)).successful_rows)
            except Exception as e:  # recorded: the test fails on any
                errors.append(repr(e))
            number += 1

    threads = [threading.Thread(target=append, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(REBUILDS):
            workspace.build(drop_stages=False)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors[:3]
    raw = workspace.row_count("customer_events")
    assert raw == sum(acked)
    engagement = json.loads(Reader(workspace).sql("SELECT sum(events) AS n FROM customer_engagement_mv"))["data"][0][
        "n"
    ]
    by_customer = workspace.row_count("customer_events_by_customer_mv")
    assert (int(engagement), by_customer) == (raw, raw), (
        f"{len(acked)} appends of {raw} rows during {REBUILDS} rebuilds"
    )
