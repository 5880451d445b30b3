"""A guest whose QEMU dies under it (SIGKILL): monitor reports it, stop cleans up."""

from __future__ import annotations

import os
import signal

import libvirt

from tests.support.vm import TestVM

OK, GENERIC, NOT_RUNNING = 0, 1, 7


def _kill_qemu(vm: TestVM) -> None:
    pid = vm.qemu_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def test_transient_domain_killed(vm: TestVM) -> None:
    """libvirt drops a transient domain whose QEMU died: it is absent, so 7 (or 1 with a reason)."""
    assert vm.run("start").code == OK
    _kill_qemu(vm)
    vm.wait_until(lambda: vm.domain() is None, 15, "forgotten by libvirt")
    res = vm.run("monitor")
    assert res.code in (NOT_RUNNING, GENERIC), res.details()
    if res.code == GENERIC:
        assert res.exit_reason, res.details()
    res = vm.run("monitor", probe=True)
    assert res.code in (NOT_RUNNING, GENERIC), res.details()
    res = vm.run("stop")
    assert res.code == OK, res.details()
    assert vm.run("monitor").code == NOT_RUNNING


def test_persistent_domain_crashed(vm: TestVM) -> None:
    """A persistent domain is kept as 'shut off (crashed)': the issue asks for 1 with a reason."""
    dom = vm.daemon.connect().defineXML(vm.xml)
    dom.create()
    assert vm.run("monitor").code == OK
    _kill_qemu(vm)
    vm.wait_until(lambda: not dom.isActive(), 15, "seen dead by libvirt")
    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED]
    res = vm.run("monitor")
    assert res.code in (GENERIC, NOT_RUNNING), res.details()
    if res.code == GENERIC:
        assert "crash" in res.exit_reason.lower(), res.details()
    res = vm.run("stop")
    assert res.code == OK, res.details()
