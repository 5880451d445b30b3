"""One lab per machine: an exclusive flock every lab user (tests, demo, benchmarks) takes first."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict

from tests.lab.core import LabError

LAB_LOCK = Path("/run/lock/livemig-lab.lock")

_LOCK_HELD: Dict[str, int] = {}  # this process's lock fd and how many holders share it


def acquire_lab_lock(timeout: float = 1800.0) -> int:
    """Hold the machine's one lab: an exclusive flock, waited for (bounded) rather than failed.

    Two test sessions (or a session and `make demo`) on one machine take turns. Re-entrant
    within a process (tests/lab and tests/e2e each register the session fixture): a second
    flock on a new fd of the same process would wait for itself. Returns the fd; release it
    with :func:`release_lab_lock` (exiting releases it too).
    """
    import fcntl

    if _LOCK_HELD.get("count"):
        _LOCK_HELD["count"] += 1
        return _LOCK_HELD["fd"]
    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(LAB_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _LOCK_HELD.update(fd=fd, count=1)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise LabError(f"another lab holds {LAB_LOCK} for more than {timeout:.0f}s") from None
            time.sleep(1.0)


def release_lab_lock(fd: int) -> None:
    if _LOCK_HELD.get("fd") == fd and _LOCK_HELD.get("count", 0) > 1:
        _LOCK_HELD["count"] -= 1
        return
    _LOCK_HELD.clear()
    os.close(fd)
