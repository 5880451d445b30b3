"""Operation deadlines derived from Pacemaker's timeout.

Every wait in livemig is bounded by a :class:`Deadline`. The agent keeps a
safety margin before Pacemaker's own timeout, so that it can still report a
reason (and clean up) before the executor kills it.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

Clock = Callable[[], float]

#: The longest single wait, in seconds, that every waiting primitive livemig uses accepts:
#: poll(2) and epoll_wait(2) (what subprocess and selectors wait with) take an int of
#: milliseconds, at most 2**31 - 1 (24.8 days); threading's timeouts (threading.TIMEOUT_MAX:
#: about 292 years on Linux, 49.7 days on Windows), select(2) and time.sleep take more. A
#: Pacemaker timeout may be longer (30 days is accepted): the operation's deadline keeps it,
#: and each wait is cut to this, so a loop waiting for the deadline simply waits again.
MAX_WAIT = 2_147_483.0

#: Operation timeouts above this (in ms) are read as this: a year, far beyond what Pacemaker
#: can pass (an int of milliseconds), and small enough for float arithmetic on any value.
MAX_OPERATION_TIMEOUT_MS = 366 * 24 * 3600 * 1000


def clamp_wait(seconds: float) -> float:
    """``seconds`` as one wait: never negative (NaN is 0), never above :data:`MAX_WAIT`."""
    if not seconds > 0.0:
        return 0.0
    return min(seconds, MAX_WAIT)


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
        """``seconds`` capped to what is left and to :data:`MAX_WAIT`: the timeout for one wait."""
        return clamp_wait(min(seconds, self.remaining()))

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
    (command-line use), ``default_s`` applies. The deadline may be longer than
    one wait can be (:data:`MAX_WAIT`): :meth:`Deadline.bound` cuts each wait.
    """
    if timeout_ms and timeout_ms > 0:
        total = min(timeout_ms, MAX_OPERATION_TIMEOUT_MS) / 1000.0
    else:
        total = default_s
    margin = min(10.0, max(2.0, total * 0.1))
    if margin >= total:
        margin = total / 2
    return Deadline(total - margin)
