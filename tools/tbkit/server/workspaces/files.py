"""Files the server keeps beside its engine (tokens, secrets, workspace records): each written whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(path: Path, content: Any) -> None:
    """Replace `path` with `content` as JSON: a temporary file beside it (created with mode 0600, readable by its
    owner only), flushed to disk, then renamed over it, so a crash leaves the previous file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
