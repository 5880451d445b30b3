"""Bounded calls into libvirt.

libvirt-python calls block in C (the GIL released) for as long as libvirtd
takes to answer; a frozen libvirtd (SIGSTOP, a stuck QEMU monitor) never
answers. Each call here runs in a daemon thread and is abandoned when its
bound passes: the caller gets :class:`CallTimeout` and the agent process
exits promptly (see :func:`livemig.ocf.agent.run`), leaving the stuck thread
behind.
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
    worker = threading.Thread(target=target, name=f"libvirt:{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise CallTimeout(what, seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
