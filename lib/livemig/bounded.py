"""A blocking call abandoned at its bound.

Some calls can block for as long as something outside livemig decides: a
libvirt call while libvirtd is frozen, a ``stat()`` or ``read()`` on an NFS,
GFS2, OCFS2 or FUSE mount that stopped answering. Each runs here in a daemon
thread; when its bound passes the caller gets :class:`CallTimeout` and goes
on, leaving the thread behind. The agent exits with ``os._exit`` (see
:func:`livemig.ocf.agent.run`), which ends such a thread too: the kernel's
waits for libvirt's socket, NFS and FUSE are killable.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, TypeVar

T = TypeVar("T")


class CallTimeout(Exception):
    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not answer within {seconds:.1f}s")
        self.what = what
        self.seconds = seconds


def bounded_call(what: str, seconds: float, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, or :class:`CallTimeout` after ``seconds``; exceptions propagate."""
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    if seconds <= 0:
        raise CallTimeout(what, 0.0)
    worker = threading.Thread(target=target, name=what, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise CallTimeout(what, seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
