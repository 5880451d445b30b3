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


class BackgroundCall:
    """A long libvirt call (a migration) running in a daemon thread while the caller polls.

    The caller decides when to give up (``wait`` returns False); the thread is
    then abandoned like any timed-out call.
    """

    def __init__(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        self.what = what
        self._box: Dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(fn, args), name=f"libvirt:{what}", daemon=True)

    def _run(self, fn: Callable[..., Any], args: Any) -> None:
        try:
            self._box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._box["error"] = exc

    def start(self) -> BackgroundCall:
        self._thread.start()
        return self

    def wait(self, seconds: float) -> bool:
        """True once the call has finished (within ``seconds``)."""
        self._thread.join(max(0.0, seconds))
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> Any:
        """The call's value, or its exception raised here; only once ``done``."""
        if not self.done:
            raise CallTimeout(self.what, 0.0)
        if "error" in self._box:
            raise self._box["error"]
        return self._box.get("value")
