"""Directory locks held with ``flock``: one live process per checkpoint or run directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class DirectoryLockedError(RuntimeError):
    """Another live process holds the lock of a directory (see :func:`lock_directory`)."""

    def __init__(self, holder: str):
        super().__init__(f"locked by pid {holder}")
        self.holder = holder


def lock_directory(lock_path: Path) -> IO[str]:
    """Take an exclusive ``flock`` on ``lock_path`` (created) and write this pid into it.

    The OS releases the lock when the returned file is closed or the process dies (even by
    SIGKILL), so a stale lock never blocks a later run.

    Raises
    ------
    DirectoryLockedError
        Another live process holds the lock; its pid (as it wrote it) is ``holder``.
    """
    handle = open(lock_path, "a+")  # noqa: SIM115 (held for the caller's run)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DirectoryLockedError(holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
