"""`make screenshots`: docs/ui-endpoints.png, docs/ui-datasources.png and docs/ui-checks.png.

The web UI's three pages in one session of the system Chromium, over a real `tbkit dev` on a copy of the
project seeded with the fixtures: `customer_segment_lookup` called for a fixture customer, `customers` after
bad rows were appended (so its quarantine shows their errors), and the checks after an edit of
`cltv_summary.pipe` that breaks its golden case.

    .venv/bin/python -m tests.screenshots docs
"""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import requests

from .browser import chromium
from .polling import wait_until
from .repo_copy import copy_project, edit
from .serving import DevProcess

ROOT = Path(__file__).resolve().parent.parent
LOOKUP = "#customer_segment_lookup?customer_id=cust_001&as_of=2025-07-01+12%3A00%3A00"
CLTV_PIPE = "tinybird/endpoints/cltv_summary.pipe"
REVENUE = "round(sum(customer_cltv), 2) AS total_revenue"
DOUBLED = "round(sum(customer_cltv) * 2, 2) AS total_revenue"
VIEWPORT = {"width": 1280, "height": 860}
WAIT_MS = 60_000
PORT = 7181  # the port the README's examples use, when it is free


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def checks(process: DevProcess) -> dict:
    """The dev loop's state (GET /v0/tbkit/checks)."""
    return requests.get(f"{process.url}/v0/tbkit/checks", headers=process.headers(), timeout=30).json()


def shoot(page, path: Path) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    print(f"wrote {path}")


def main(out: Path) -> None:
    """Start `tbkit dev` on a copy of the project, then write the three screenshots into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tbkit-screenshots-") as folder:
        root = copy_project(Path(folder) / "project")
        process = DevProcess(root, Path(folder) / "data")
        if port_is_free(PORT):  # so the curl in the picture reads as the README's
            process.port = PORT
        process.start(deadline=120)
        try:
            wait_until(lambda: checks(process)["generation"] >= 1, 120, "the first run of the golden cases")
            bad_rows = (ROOT / "fixtures/malformed/customers.ndjson").read_bytes()
            requests.post(
                f"{process.url}/v0/events?name=customers&wait=true",
                data=bad_rows,
                headers=process.headers(),
                timeout=60,
            ).raise_for_status()
            with chromium() as browser:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"{process.url}/?token={quote(process.token, safe='')}{LOOKUP}")
                page.locator(".sql-text").wait_for(timeout=WAIT_MS)
                for _ in range(3):  # again, warm: the time a user sees once it has run
                    page.click("#detail button[type=submit]")
                    page.locator(".sql-text").wait_for(timeout=WAIT_MS)
                shoot(page, out / "ui-endpoints.png")

                page.goto(f"{process.url}/datasources#customers")
                page.get_by_text("the line is not a valid JSON object").first.wait_for(timeout=WAIT_MS)
                page.locator(".panel").nth(1).locator("tbody tr").first.wait_for(timeout=WAIT_MS)
                shoot(page, out / "ui-datasources.png")

                page.goto(f"{process.url}/checks")
                page.get_by_text("All passed").wait_for(timeout=WAIT_MS)
                edit(root / CLTV_PIPE, REVENUE, DOUBLED)
                page.locator("article.case.failed").first.wait_for(timeout=WAIT_MS)
                shoot(page, out / "ui-checks.png")
        finally:
            process.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
