"""A full disk while appending: the append is refused with a 507 naming the data directory, nothing acknowledged
is lost and nothing refused is half stored, reads go on, and appends work again once space is freed.

The test serves a data directory on a 64 MiB tmpfs, so it needs root (mount); it is skipped otherwise. Its figures
go to reports/reliability/disk_full.json.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tbkit.engine import append as appends
from tbkit.errors import StorageFullError

from . import ROOT
from .serving import ADMIN_TOKEN, ServerProcess

REPORTS = ROOT / "reports" / "reliability"
DISK_MB = 64
FILLER_MB = 20
BATCH_ROWS = 4_000


@pytest.fixture
def small_disk(tmp_path: Path):
    """A DISK_MB tmpfs mounted on a folder of tmp_path (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _batch(prefix: str, count: int = BATCH_ROWS) -> bytes:
    """Events with ids `<prefix>_<n>`; values vary so parts do not compress to nothing."""
    lines = [
        f'{{"event_id": "{prefix}_{n}_{(n * 7919) % 100_003}", "customer_id": "CUST_{(n * 31) % 30_000}", '
        f'"event_type": "purchase", "event_value": {(n * 13) % 997}.{n % 100:02d}, '
        f'"timestamp": "2025-06-{n % 28 + 1:02d} {n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}"}}'
        for n in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


class Client:
    def __init__(self, server: ServerProcess, statuses: list[int] | None = None):
        self.server = server
        self.session = requests.Session()
        self.statuses: list[int] = [] if statuses is None else statuses  # of every request, shared by writers

    def append(self, prefix: str) -> requests.Response:
        response = self.session.post(
            f"{self.server.url}/v0/events",
            params={"name": "customer_events", "wait": "true"},
            data=_batch(prefix),
            headers=self.server.headers(),
            timeout=120,
        )
        self.statuses.append(response.status_code)
        return response

    def count(self, where: str = "1") -> int:
        response = self.session.get(
            f"{self.server.url}/v0/sql",
            params={"q": f"SELECT count() AS n FROM customer_events WHERE {where}"},
            headers=self.server.headers(),
            timeout=120,
        )
        self.statuses.append(response.status_code)
        assert response.status_code == 200, response.text
        return int(response.json()["data"][0]["n"])

    def copies(self) -> tuple[int, int]:
        """Rows in the targets the events feed: the by-customer copy and the engagement events."""
        q = (
            "SELECT (SELECT count() FROM customer_events_by_customer_mv) AS a, "
            "(SELECT sum(events) FROM customer_engagement_mv) AS b"
        )
        response = self.session.get(
            f"{self.server.url}/v0/sql", params={"q": q}, headers=self.server.headers(), timeout=120
        )
        assert response.status_code == 200, response.text
        row = response.json()["data"][0]
        return int(row["a"]), int(row["b"])

    def fill(self, tag: str, limit: int = 400) -> tuple[int, int, requests.Response]:
        """Append batches until one is refused: (batches acknowledged, rows acknowledged, the refusal)."""
        rows = 0
        for number in range(limit):
            response = self.append(f"{tag}{number}")
            if response.status_code != 200:
                return number, rows, response
            rows += response.json()["successful_rows"]
        pytest.fail(f"{limit} batches of {BATCH_ROWS} rows fitted on a {DISK_MB} MiB disk")


def fill_together(client: Client, writers: int) -> list[tuple[int, int, requests.Response]]:
    """`writers` clients fill the disk at once (batches `w<n>_<batch>`): what each `Client.fill` returned."""
    clients = [Client(client.server, client.statuses) for _ in range(writers)]
    results: list = [None] * writers

    def run(number: int) -> None:
        results[number] = clients[number].fill(f"w{number}_")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(results), "a writer did not finish"
    return results


def _refused_as_full(response: requests.Response, data_dir: Path) -> str:
    assert response.status_code == 507, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert "No space left" in error
    assert str(data_dir.resolve()) in error
    assert "customer_events" in error and "nothing of it was stored" in error
    return error


def test_enospc_writing_a_chunk_says_what_was_stored(workspace, monkeypatch):
    """A large append goes in chunks through files in the engine's tmp folder: ENOSPC writing one is a
    StorageFullError that says how many rows of the earlier chunks were stored."""
    monkeypatch.setattr(appends, "CHUNK_BYTES", 4_000)  # chunks of about 20 lines
    body = _batch("chunked", 100)
    written = []
    real_write = Path.write_bytes

    def write_bytes(path: Path, data: bytes) -> int:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(data)
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(StorageFullError) as raised:
        workspace.append("customer_events", body)
    stored = written[0].count(b"\n")
    assert raised.value.status == 507
    message = raised.value.message
    assert message.startswith("[Error] Cannot append to 'customer_events': No space left on the device of the data")
    assert str(workspace.engine.path) in message and "No space left on device" in message
    assert f"the {stored} rows of its earlier chunks were stored" in message
    assert workspace.row_count("customer_events") == stored
    assert not list(workspace.engine.tmp_dir.glob("*.ndjson"))


@pytest.mark.slow
def test_a_full_disk_refuses_appends_cleanly_and_recovers(small_disk):
    filler = small_disk / "filler.bin"
    filler.write_bytes(os.urandom(FILLER_MB * 1024 * 1024))
    data_dir = small_disk  # the server's log goes beside it, off the small disk
    server = ServerProcess(data_dir, ADMIN_TOKEN).start()
    client = Client(server)
    figures: dict = {"disk_mb": DISK_MB, "filler_mb": FILLER_MB, "batch_rows": BATCH_ROWS}
    started = time.monotonic()
    try:
        # Four writers fill the disk: every acknowledged batch is stored, each refused one not at all.
        filled = fill_together(client, 4)
        acked = sum(rows for _, rows, _ in filled)
        figures["first_fill"] = {
            "writers": 4,
            "batches_acknowledged": sum(batches for batches, _, _ in filled),
            "rows_acknowledged": acked,
        }
        figures["error"] = _refused_as_full(filled[0][2], data_dir)
        for number, (batches, _, refusal) in enumerate(filled):
            _refused_as_full(refusal, data_dir)
            assert client.count(f"startsWith(event_id, 'w{number}_{batches}_')") == 0
        assert client.count() == acked
        assert client.copies() == (acked, acked)
        # Reads go on while the disk is full; another append is refused the same way.
        endpoint = client.session.get(f"{server.url}/v0/pipes/cltv_summary.json", headers=server.headers(), timeout=120)
        client.statuses.append(endpoint.status_code)
        assert endpoint.status_code == 200, endpoint.text
        _refused_as_full(client.append("again"), data_dir)

        # Freeing space (the filler file on the same disk) lets appends through again.
        filler.unlink()
        response = client.append("after_free")
        assert response.status_code == 200, response.text
        acked += response.json()["successful_rows"]
        assert client.count() == acked

        # Full again, then truncating the datasource frees its space.
        batches, more, refusal = client.fill("b")
        acked += more
        figures["second_fill"] = {"batches_acknowledged": batches, "rows_acknowledged": more}
        _refused_as_full(refusal, data_dir)
        assert client.count() == acked
        assert client.count(f"startsWith(event_id, 'b{batches}_')") == 0
        truncated = client.session.post(
            f"{server.url}/v0/datasources/customer_events/truncate", headers=server.headers(), timeout=120
        )
        client.statuses.append(truncated.status_code)
        assert truncated.status_code == 200, truncated.text
        response = client.append("after_truncate")
        assert response.status_code == 200, response.text
        assert client.count() == response.json()["successful_rows"] == BATCH_ROWS
    finally:
        server.stop()
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["status_counts"] = {str(s): client.statuses.count(s) for s in sorted(set(client.statuses))}
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "disk_full.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
    assert not [s for s in client.statuses if s >= 500 and s != 507], figures["status_counts"]
