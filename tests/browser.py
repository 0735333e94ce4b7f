"""A real browser for the web UI's tests and screenshots: the system's Chromium, driven by playwright.

Browsers are never downloaded (`playwright install` is not used): playwright drives the Chromium the system
package installs (Debian's `chromium`; `.ci/run` installs it when missing), found on PATH or named by
`$TBKIT_CHROMIUM`. Without one, `chromium_path()` is None and the browser tests skip, saying so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_BROWSER = (
    "no Chromium found (looked for $TBKIT_CHROMIUM, then chromium, chromium-browser, google-chrome on PATH): "
    "install Debian's `chromium` package (`.ci/run` does) to run the web UI's browser tests"
)


def chromium_path() -> str | None:
    """The Chromium executable to drive: `$TBKIT_CHROMIUM`, else the first of NAMES on PATH; None without one."""
    named = os.environ.get("TBKIT_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    return next((path for name in NAMES if (path := shutil.which(name))), None)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a playwright `Browser`), closed on exit."""
    from playwright.sync_api import sync_playwright  # imported here: only browser tests need it

    path = chromium_path()
    if path is None:
        raise RuntimeError(NO_BROWSER)
    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()
