"""Waiting for something in a test: poll with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], deadline: float = 60.0, what: str = "the condition") -> Any:
    """Poll `condition` until it returns something truthy (returned), or fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline} s")
        time.sleep(0.05)
