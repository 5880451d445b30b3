"""Install the working tree's agent where Pacemaker looks (/usr/lib/ocf/resource.d/livemig/), for a while.

The installed file is a small shell wrapper that runs agents/VirtualDomain with
the working tree's lib/ first on PYTHONPATH, so crm_resource, pcs and Pacemaker
run exactly the code under test. Whatever was there before is put
back afterwards; a directory we created is removed.

The packaging tests install into the same directory: both hold an exclusive
flock on :data:`LOCK` for as long as their files are there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from tests.support.agent import AGENT, REPO, SYSTEM_PYTHON

PROVIDER_DIR = Path("/usr/lib/ocf/resource.d/livemig")
LOCK = Path("/run/lock/livemig-ocf-provider.lock")

WRAPPER = """#!/bin/sh
# Installed by livemig's integration tests (tests/support/ocf_provider.py); removed after them.
PYTHONPATH={lib}${{PYTHONPATH:+:$PYTHONPATH}} exec {python} {agent} "$@"
"""


class ProviderLockTimeout(RuntimeError):
    pass


@contextlib.contextmanager
def provider_lock(timeout: float = 600.0) -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ProviderLockTimeout(f"{LOCK} still held by someone else after {timeout:.0f}s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def installed_agent(name: str = "VirtualDomain") -> Iterator[Path]:
    """Yield the installed path of ``ocf:livemig:<name>``; restore the directory afterwards."""
    with provider_lock():
        created_dir = not PROVIDER_DIR.exists()
        PROVIDER_DIR.mkdir(parents=True, exist_ok=True)
        target = PROVIDER_DIR / name
        backup = None
        if target.exists() or target.is_symlink():
            backup = Path(tempfile.mkdtemp(prefix="livemig-provider-backup-")) / name
            shutil.move(str(target), str(backup))
        try:
            text = WRAPPER.format(python=shlex.quote(SYSTEM_PYTHON), lib=shlex.quote(str(REPO / "lib")),
                                  agent=shlex.quote(str(AGENT)))
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
            yield target
        finally:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            if backup is not None:
                shutil.move(str(backup), str(target))
                shutil.rmtree(backup.parent, ignore_errors=True)
            if created_dir:
                with contextlib.suppress(OSError):
                    PROVIDER_DIR.rmdir()
