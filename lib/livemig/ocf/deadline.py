"""Operation deadlines derived from Pacemaker's timeout.

Every wait in livemig is bounded by a :class:`Deadline`. The agent keeps a
safety margin before Pacemaker's own timeout, so that it can still report a
reason (and clean up) before the executor kills it.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

Clock = Callable[[], float]


class DeadlineExceeded(Exception):
    """Raised by :meth:`Deadline.check` once the deadline has passed."""


class Deadline:
    """A point in monotonic time; ``remaining()`` never goes below zero."""

    def __init__(self, seconds: float, clock: Optional[Clock] = None) -> None:
        self._clock: Clock = clock or time.monotonic
        self._start = self._clock()
        self._end = self._start + max(0.0, seconds)

    @property
    def total(self) -> float:
        return self._end - self._start

    def elapsed(self) -> float:
        return self._clock() - self._start

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def bound(self, seconds: float) -> float:
        """``seconds`` capped to what is left: the timeout for one sub-step."""
        return max(0.0, min(seconds, self.remaining()))

    def sub(self, fraction: float = 1.0, reserve: float = 0.0) -> Deadline:
        """A nested deadline: ``fraction`` of what remains, minus ``reserve`` seconds."""
        left = self.remaining()
        return Deadline(max(0.0, min(left * fraction, left - reserve)), clock=self._clock)

    def check(self, what: str) -> None:
        if self.expired():
            raise DeadlineExceeded(f"{what}: operation deadline of {self.total:.0f}s reached")

    def sleep(self, seconds: float) -> None:
        """Sleep at most ``seconds``, never past the deadline."""
        time.sleep(self.bound(seconds))


def operation_deadline(timeout_ms: Optional[int], default_s: float) -> Deadline:
    """The agent's own deadline for an operation with Pacemaker timeout ``timeout_ms``.

    Keeps a margin (10% of the timeout, at least 2 s, at most 10 s) so the
    agent reports a reason before Pacemaker kills it. Without a timeout
    (command-line use), ``default_s`` applies.
    """
    total = timeout_ms / 1000.0 if timeout_ms and timeout_ms > 0 else default_s
    margin = min(10.0, max(2.0, total * 0.1))
    if margin >= total:
        margin = total / 2
    return Deadline(total - margin)
