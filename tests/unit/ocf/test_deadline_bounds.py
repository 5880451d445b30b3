"""Every single wait fits every waiting primitive, whatever the operation timeout.

Pacemaker passes the operation timeout in milliseconds (an int: at most
2**31 - 1 ms, 24.8 days, in current versions; a 30-day timeout is accepted in
the configuration). poll(2) and epoll_wait(2), which subprocess and selectors
wait with, take an int of milliseconds: a wait of 30 days overflows them. The
operation deadline may be that long; each wait handed out must not.
"""

from __future__ import annotations

import math
import os
import select
import selectors
import subprocess
import threading
import time
from types import SimpleNamespace
from typing import Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livemig.ocf import deadline as deadline_module
from livemig.ocf.deadline import MAX_WAIT, Deadline, clamp_wait, operation_deadline

POLL_MAX_MS = 2**31 - 1
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000
#: beyond both what Pacemaker passes (INT_MAX ms) and the 30 days it accepts in the CIB
TIMEOUTS_MS = st.integers(min_value=1, max_value=2**32)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def ready_pipe() -> Iterator[Tuple[int, int]]:
    """A pipe with a byte in it: waiting for it to be readable returns at once."""
    r, w = os.pipe()
    os.write(w, b"x")
    yield r, w
    os.close(r)
    os.close(w)


def exercise_primitives(seconds: float, fd: int) -> None:
    """Hand ``seconds`` to each waiting primitive livemig uses, without waiting.

    Each converts and checks its timeout before it waits, and each returns at
    once here (the fd is readable, the lock is free). time.sleep converts its
    argument as select.select does (a _PyTime from seconds).
    """
    assert threading.Lock().acquire(timeout=seconds)
    with selectors.PollSelector() as poll:
        poll.register(fd, selectors.EVENT_READ)
        assert poll.select(seconds)
    with selectors.DefaultSelector() as default:
        default.register(fd, selectors.EVENT_READ)
        assert default.select(seconds)
    assert select.select([fd], [], [], seconds)[0] == [fd]
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(math.ceil(seconds * 1e3))


def waits(deadline: Deadline, timeout_ms: int) -> List[float]:
    asked = [deadline.remaining(), deadline.total, timeout_ms / 1000.0, float("inf"), 1e300, 10.0, 0.0]
    return [deadline.bound(seconds) for seconds in asked]


def test_max_wait_fits_every_primitive(ready_pipe: Tuple[int, int]) -> None:
    assert MAX_WAIT <= threading.TIMEOUT_MAX
    assert math.ceil(MAX_WAIT * 1e3) <= POLL_MAX_MS
    exercise_primitives(MAX_WAIT, ready_pipe[0])


@SETTINGS
@given(timeout_ms=TIMEOUTS_MS)
@example(timeout_ms=POLL_MAX_MS)
@example(timeout_ms=THIRTY_DAYS_MS)
@example(timeout_ms=2592000000)
def test_no_wait_handed_out_overflows_a_primitive(timeout_ms: int, ready_pipe: Tuple[int, int]) -> None:
    deadline = operation_deadline(timeout_ms, 60.0)
    for seconds in waits(deadline, timeout_ms):
        assert 0.0 <= seconds <= MAX_WAIT
        exercise_primitives(seconds, ready_pipe[0])
    # the wait the reproducer overflowed: subprocess with the rest of the deadline (a
    # deadline of a millisecond may be over before /bin/true is: that is not an overflow)
    with subprocess.Popen(["/bin/true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            proc.communicate(timeout=deadline.bound(deadline.remaining()))
        except subprocess.TimeoutExpired:
            assert deadline.remaining() < 1.0
            proc.kill()
            proc.communicate()


@SETTINGS
@given(timeout_ms=TIMEOUTS_MS, asked=st.floats(allow_nan=True, allow_infinity=True))
@example(timeout_ms=THIRTY_DAYS_MS, asked=float("inf"))
def test_deadline_sleep_is_one_acceptable_wait(timeout_ms: int, asked: float, ready_pipe: Tuple[int, int]) -> None:
    slept: List[float] = []
    deadline = operation_deadline(timeout_ms, 60.0)
    real_time = deadline_module.time
    deadline_module.time = SimpleNamespace(sleep=slept.append, monotonic=time.monotonic)  # type: ignore[assignment]
    try:
        deadline.sleep(asked)
    finally:
        deadline_module.time = real_time
    assert len(slept) == 1 and 0.0 <= slept[0] <= MAX_WAIT
    exercise_primitives(slept[0], ready_pipe[0])


def test_the_deadline_itself_stays_as_long_as_pacemaker_says() -> None:
    deadline = operation_deadline(THIRTY_DAYS_MS, 60.0)
    assert deadline.total == pytest.approx(THIRTY_DAYS_MS / 1000.0 - 10.0)
    assert deadline.total > MAX_WAIT and deadline.remaining() > MAX_WAIT
    assert deadline.bound(deadline.remaining()) == MAX_WAIT
    assert deadline.bound(5.0) == 5.0


def test_absurd_timeouts_do_not_overflow_the_arithmetic() -> None:
    deadline = operation_deadline(10**400, 60.0)  # an environment may say anything
    assert deadline.remaining() > MAX_WAIT and deadline.bound(float("inf")) == MAX_WAIT


@pytest.mark.parametrize("asked,expected", [(-1.0, 0.0), (float("nan"), 0.0), (float("-inf"), 0.0),
                                            (0.5, 0.5), (float("inf"), MAX_WAIT), (1e12, MAX_WAIT)])
def test_clamp_wait(asked: float, expected: float) -> None:
    assert clamp_wait(asked) == expected
    assert Deadline(1e9).bound(asked) == expected


def test_monitor_with_a_30_day_timeout_is_healthy(agent, fake_libvirt) -> None:  # noqa: ANN001
    """The reproducer: a healthy monitor with a monitor script failed with OverflowError."""
    assert agent("start").code == 0
    result = agent("monitor", timeout_ms=2592000000, interval_ms=10000, monitor_scripts="/bin/true")
    assert (result.code, result.reason) == (0, None), result.stderr
    assert "OverflowError" not in result.stderr
    probe = agent("monitor", timeout_ms=2592000000, interval_ms=0, monitor_scripts="/bin/true")
    assert probe.code == 0, probe.stderr
