"""libvirtd frozen, killed or restarted around an action; guests that ignore ACPI, hang, or crash.

One host, the session's private libvirtd (tests/support/libvirtd.py) and a real
TCG guest. Each case asserts the OCF code, the exit reason, the time taken
(below the operation timeout) and where the VM runs afterwards (its QEMU in
/proc, which holds whether libvirtd answers or not).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import List

from tests.support.agent import AgentResult
from tests.support.vm import MakeVM, TestVM

OK, GENERIC, NOT_RUNNING = 0, 1, 7
TIMEOUT_MS = 8000
TIMEOUT_S = TIMEOUT_MS / 1000


def _report(case: str, res: AgentResult) -> None:
    print(f"FAULT {case}: {res.describe()}")
    assert not res.timed_out, res.details()
    assert res.elapsed < TIMEOUT_S, f"{case}: overran the {TIMEOUT_S:.0f}s timeout: {res.details()}"


def _gone(vm: TestVM) -> bool:
    """The domain is no longer active (a transient one vanishes between lookup and isActive)."""
    import libvirt

    try:
        dom = vm.domain()
        return dom is None or not dom.isActive()
    except libvirt.libvirtError:
        return True


def _started(vm: TestVM) -> None:
    res = vm.run("start")
    assert res.code == OK, res.details()
    vm.wait_ready()


def test_libvirtd_killed_then_stop(vm: TestVM) -> None:
    """libvirtd gone: stop finds QEMU in /proc, kills it, and only then reports success."""
    _started(vm)
    vm.daemon.stop()
    res = vm.run("stop", timeout_ms=TIMEOUT_MS)
    _report("libvirtd killed, stop", res)
    assert res.code == OK, res.details()
    assert res.exit_reason, res.details()
    assert vm.qemu_pid() is None, "stop reported success while QEMU runs"


def test_libvirtd_killed_during_start(vm: TestVM) -> None:
    """libvirtd dies while start runs: whatever start reports must match where the VM runs."""
    results: List[AgentResult] = []
    runner = threading.Thread(target=lambda: results.append(vm.run("start", timeout_ms=TIMEOUT_MS)))
    runner.start()
    time.sleep(0.4)
    vm.daemon.stop()
    runner.join()
    res = results[0]
    _report("libvirtd killed during start", res)
    running = vm.qemu_pid() is not None
    if res.code == OK:
        assert running, f"start said OK but no QEMU runs: {res.details()}"
    else:
        assert res.code == GENERIC and res.exit_reason, res.details()
    # the monitor (libvirtd still down: /proc) agrees with reality
    mon = vm.run("monitor", timeout_ms=TIMEOUT_MS)
    _report("libvirtd killed during start, monitor", mon)
    assert mon.code == (OK if running else NOT_RUNNING), mon.details()
    vm.daemon.start()


def test_libvirtd_frozen_during_stop_then_thawed(vm: TestVM) -> None:
    _started(vm)
    vm.daemon.freeze()
    try:
        res = vm.run("stop", timeout_ms=TIMEOUT_MS)
        running = vm.qemu_pid() is not None
    finally:
        vm.daemon.thaw()
    _report("libvirtd frozen, stop", res)
    assert res.exit_reason, res.details()
    assert not (res.code == OK and running), f"stop said OK while QEMU runs: {res.details()}"
    if res.code != OK:
        assert vm.run("stop").code == OK


def test_libvirtd_restarted_during_monitors(vm: TestVM) -> None:
    """A libvirtd restart is not a failure while the domain keeps running."""
    _started(vm)
    stop_flag = threading.Event()

    def restart() -> None:
        vm.daemon.stop()
        vm.daemon.start()
        stop_flag.set()

    restarter = threading.Thread(target=restart)
    restarter.start()
    codes: List[AgentResult] = []
    while not stop_flag.is_set():
        codes.append(vm.run("monitor", timeout_ms=TIMEOUT_MS))
    restarter.join()
    codes.append(vm.run("monitor", timeout_ms=TIMEOUT_MS))
    for res in codes:
        _report("libvirtd restarted, monitor", res)
        assert res.code == OK, res.details()
    assert len(codes) >= 2
    assert vm.qemu_pid() is not None


def test_guest_ignoring_acpi(make_vm: MakeVM) -> None:
    vm = make_vm(acpi_behaviour="ignore")
    _started(vm)
    assert vm.run("monitor").code == OK
    res = vm.run("stop", timeout_ms=TIMEOUT_MS)
    _report("guest ignores ACPI, stop", res)
    assert res.code == OK and vm.qemu_pid() is None, res.details()
    assert vm.last_stop_reason() == "destroyed"


def test_guest_hanging_in_shutdown(make_vm: MakeVM) -> None:
    vm = make_vm(acpi_behaviour="hang")
    _started(vm)
    res = vm.run("stop", timeout_ms=TIMEOUT_MS)
    _report("guest hangs in shutdown, stop", res)
    assert res.code == OK and vm.qemu_pid() is None, res.details()


def test_guest_crashed(vm: TestVM) -> None:
    """QEMU killed: a recurring monitor reports 1 with a reason; stop cleans up."""
    _started(vm)
    pid = vm.qemu_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    vm.wait_until(lambda: _gone(vm), 15, "seen dead by libvirt")
    res = vm.run("monitor", timeout_ms=TIMEOUT_MS)
    _report("QEMU killed, monitor", res)
    assert res.code == GENERIC and res.exit_reason, res.details()
    res = vm.run("stop", timeout_ms=TIMEOUT_MS)
    _report("QEMU killed, stop", res)
    assert res.code == OK, res.details()
    assert vm.domain() is None and vm.qemu_pid() is None
    probe = vm.run("monitor", probe=True)
    assert probe.code == NOT_RUNNING, probe.details()
