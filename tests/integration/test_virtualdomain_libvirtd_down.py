"""Every action is bounded: libvirtd frozen (SIGSTOP: its socket accepts, nothing answers) or stopped.

While libvirtd does not answer, monitor falls back to /proc: a domain whose QEMU
still runs is reported running, never 7 (Pacemaker would start it elsewhere: a
split brain on the disk).
"""

from __future__ import annotations

from tests.support.agent import AgentResult
from tests.support.vm import MakeVM, TestVM

OK, GENERIC, NOT_RUNNING = 0, 1, 7
TIMEOUT_MS = 6000
TIMEOUT_S = TIMEOUT_MS / 1000


def _within_timeout(res: AgentResult) -> None:
    assert not res.timed_out, res.details()
    assert res.elapsed < TIMEOUT_S, f"{res.action} overran its {TIMEOUT_S:.0f}s timeout: {res.details()}"


def test_frozen_libvirtd_monitor_reports_running_from_proc(vm: TestVM) -> None:
    assert vm.run("start").code == OK
    with vm.daemon.frozen():
        res = vm.run("monitor", timeout_ms=TIMEOUT_MS)
        _within_timeout(res)
        assert res.code == OK, f"QEMU runs, monitor must say so: {res.details()}"
        assert res.exit_reason, f"no ocf-exit-reason telling libvirtd did not answer: {res.details()}"
        probe = vm.run("monitor", probe=True, timeout_ms=TIMEOUT_MS)
        _within_timeout(probe)
        assert probe.code == OK, f"a probe must never call a running domain stopped: {probe.details()}"


def test_frozen_libvirtd_monitor_of_absent_domain(vm: TestVM) -> None:
    with vm.daemon.frozen():
        res = vm.run("monitor", timeout_ms=TIMEOUT_MS)
    _within_timeout(res)
    assert res.code in (NOT_RUNNING, GENERIC), res.details()
    assert res.exit_reason, res.details()


def test_frozen_libvirtd_stop_is_bounded_and_never_lies(vm: TestVM) -> None:
    assert vm.run("start").code == OK
    vm.wait_ready()
    with vm.daemon.frozen():
        res = vm.run("stop", timeout_ms=TIMEOUT_MS)
        running = vm.qemu_pid() is not None
    _within_timeout(res)
    assert res.exit_reason, f"no ocf-exit-reason: {res.details()}"
    assert not (res.code == OK and running), f"stop said OK while QEMU still runs: {res.details()}"


def test_frozen_libvirtd_start_fails_within_timeout(vm: TestVM) -> None:
    with vm.daemon.frozen():
        res = vm.run("start", timeout_ms=TIMEOUT_MS)
    _within_timeout(res)
    assert res.code != OK, res.details()
    assert res.exit_reason, res.details()


def test_stopped_libvirtd(make_vm: MakeVM) -> None:
    """libvirtd absent (socket gone): monitor answers from /proc, start fails fast."""
    running, absent = make_vm(), make_vm()
    assert running.run("start").code == OK
    running.daemon.stop()
    try:
        res = running.run("monitor", timeout_ms=TIMEOUT_MS)
        _within_timeout(res)
        assert res.code == OK, f"QEMU runs, monitor must say so: {res.details()}"
        res = running.run("monitor", probe=True, timeout_ms=TIMEOUT_MS)
        _within_timeout(res)
        assert res.code == OK, res.details()

        res = absent.run("monitor", probe=True, timeout_ms=TIMEOUT_MS)
        _within_timeout(res)
        assert res.code in (NOT_RUNNING, GENERIC), res.details()

        res = absent.run("start", timeout_ms=TIMEOUT_MS)
        _within_timeout(res)
        assert res.code != OK, res.details()
        assert res.exit_reason, res.details()
    finally:
        running.daemon.start()
    # libvirtd reconnects to the QEMU it left running: the agent sees it through libvirt again.
    res = running.run("monitor")
    assert res.code == OK, res.details()
