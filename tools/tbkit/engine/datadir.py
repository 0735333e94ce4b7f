"""An engine's data directory: checked, locked for one process, and what chDB printed when it refused it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import TbkitError


@contextlib.contextmanager
def stderr_kept() -> Iterator[list[str]]:
    """Keep what the process writes to file descriptor 2 meanwhile (chDB prints there why it cannot start): on
    an error it is left in the list yielded for the caller to report; otherwise it is written to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    printed: list[str] = []
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        failed = True
        try:
            yield printed
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            kept.seek(0)
            text = kept.read()
            if failed:
                printed.append(text.decode("utf-8", "replace"))
            elif text:
                os.write(2, text)


# Held (flock) by the process whose engine has the data directory open, and released when it closes.
DATA_DIR_LOCK = ".tbkit.lock"


def claim_data_dir(path: Path) -> IO[str]:
    """Check that `path` can hold an engine's data, and lock it for this process (closing the handle unlocks).

    TbkitError naming the path when it is a file, cannot be created or written, holds a file where the engine
    keeps a folder, or another process has it open; nothing in it is changed or deleted then.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TbkitError(f"the data directory {path} is a file, not a directory: use another --data-dir") from None
    except OSError as e:
        raise TbkitError(f"cannot create the data directory {path}: {e.strerror}") from None
    for name in ("chdb", "tmp"):
        if (path / name).exists() and not (path / name).is_dir():
            raise TbkitError(
                f"{path / name} is a file where the engine keeps a folder: {path} is not a tbkit data directory, "
                "or it was damaged; move that file away or use another --data-dir (nothing was changed)"
            )
    if not os.access(path, os.W_OK | os.X_OK):
        raise TbkitError(f"the data directory {path} is not writable: fix its permissions or use another --data-dir")
    try:
        handle = (path / DATA_DIR_LOCK).open("a+", encoding="utf-8")
    except OSError as e:
        raise TbkitError(f"the data directory {path} is not writable ({e.strerror}): use another --data-dir") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise TbkitError(
            f"the data directory {path} is in use by {holder} (another tbkit serve or tbkit command): chDB "
            "opens a data directory from one process at a time; stop that one or use another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle
