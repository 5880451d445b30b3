"""Bounded calls into libvirt.

libvirt-python calls block in C (the GIL released) for as long as libvirtd
takes to answer; a frozen libvirtd (SIGSTOP, a stuck QEMU monitor) never
answers. Each short call runs through :func:`livemig.bounded.bounded_call`;
a migration, which runs for as long as the caller allows, is a
:class:`BackgroundCall` that the caller polls and may abandon.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict

from livemig.bounded import CallTimeout, bounded_call

__all__ = ["BackgroundCall", "CallTimeout", "bounded_call"]


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
