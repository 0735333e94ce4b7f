"""Sizes in bytes: parsing `2GiB` / `500MB` / `300000000`, printing them, and the machine's memory."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ParameterError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
# cgroup files that hold a container's memory limit (v2, then v1); "max" or a huge number means none.
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def parse_size(text: str) -> int:
    """Bytes in a size such as `2GiB`, `500MB`, `1.5G` or `300000000` (KB/MB/GB are powers of 1000, KiB/MiB/GiB
    of 1024); ParameterError naming the text otherwise."""
    match = _SIZE.match(str(text))
    unit = (match.group(2) or "").lower() if match else None
    if not match or unit not in _UNITS:
        raise ParameterError(
            f"invalid size '{text}': expected a number of bytes with an optional unit, such as 500MB, 2GiB or "
            "300000000 (units: KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024)"
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ParameterError(f"invalid size '{text}': a size must be more than 0 bytes")
    return size


def format_size(size: int | float) -> str:
    """A size for people: `4.8 GiB`, `300.0 MiB`, `512 B`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def physical_memory() -> int:
    """The memory this process can use: the machine's physical memory, or its container's limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


def share_of_memory(percent: float) -> int:
    """`percent` % of `physical_memory()`, in bytes."""
    return int(physical_memory() * percent / 100)
