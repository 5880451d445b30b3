"""start / monitor / stop of a real guest through agents/VirtualDomain, and their idempotence."""

from __future__ import annotations

import os

import libvirt

from tests.support.vm import TestVM

OK, NOT_RUNNING = 0, 7


def test_start_monitor_stop(vm: TestVM) -> None:
    res = vm.run("monitor", probe=True)
    assert res.code == NOT_RUNNING, res.details()

    res = vm.run("start")
    assert res.code == OK, res.details()
    assert vm.qemu_pid() is not None, "start returned 0 but no QEMU process runs"
    state = vm.state()
    assert state is not None and state[0] == libvirt.VIR_DOMAIN_RUNNING, state
    # heartbeat starts the domain transient, from the file: so do we.
    assert not vm.domain().isPersistent()

    res = vm.run("monitor")
    assert res.code == OK, res.details()
    res = vm.run("monitor", probe=True)
    assert res.code == OK, res.details()

    vm.wait_ready()
    res = vm.run("stop")
    assert res.code == OK, res.details()
    assert vm.domain() is None
    assert vm.qemu_pid() is None

    res = vm.run("monitor")
    assert res.code == NOT_RUNNING, res.details()


def test_start_twice_stop_twice(vm: TestVM) -> None:
    assert vm.run("start").code == OK
    pid = vm.qemu_pid()
    res = vm.run("start")
    assert res.code == OK, res.details()
    assert vm.qemu_pid() == pid, "a second start must leave the running domain alone"

    vm.wait_ready()
    assert vm.run("stop").code == OK
    res = vm.run("stop")
    assert res.code == OK, res.details()
    res = vm.run("monitor")
    assert res.code == NOT_RUNNING, res.details()


def test_stop_of_never_started_domain(vm: TestVM) -> None:
    res = vm.run("stop")
    assert res.code == OK, res.details()
    res = vm.run("monitor")
    assert res.code == NOT_RUNNING, res.details()


def test_stale_persistent_definition_is_replaced_on_start(vm: TestVM) -> None:
    """A persistent, inactive definition of the same name (other UUID) is undefined; the file survives."""
    conn = vm.daemon.connect()
    stale = conn.defineXML(vm.xml.replace("<memory unit='MiB'>128", "<memory unit='MiB'>96"))
    assert stale.isPersistent() and not stale.isActive()
    before = vm.config.read_bytes()

    res = vm.run("start")
    assert res.code == OK, res.details()
    dom = vm.domain()
    assert dom is not None and dom.isActive()
    assert not dom.isPersistent(), "the stale persistent definition should be gone"
    assert dom.maxMemory() == 128 * 1024, "the domain must run from the config file, not the stale definition"
    assert vm.config.exists() and vm.config.read_bytes() == before, "the user's XML file must survive unchanged"

    vm.wait_ready()
    assert vm.run("stop").code == OK
    assert vm.domain() is None, "no definition may be left behind after stop"


def test_domain_started_outside_pacemaker_counts_as_running(vm: TestVM) -> None:
    vm.daemon.connect().createXML(vm.xml, 0)
    res = vm.run("monitor", probe=True)
    assert res.code == OK, res.details()
    res = vm.run("start")
    assert res.code == OK, res.details()


def test_paused_by_user_is_running(vm: TestVM) -> None:
    assert vm.run("start").code == OK
    vm.domain().suspend()
    assert vm.state() == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER]
    res = vm.run("monitor")
    assert res.code == OK, res.details()
    res = vm.run("monitor", probe=True)
    assert res.code == OK, res.details()
    # A paused guest cannot answer ACPI: stop must still get rid of it, within its timeout.
    res = vm.run("stop", timeout_ms=10000)
    assert res.code == OK, res.details()
    assert res.elapsed < 10, res.describe()
    assert vm.domain() is None


def test_stop_with_config_gone_never_lies(vm: TestVM) -> None:
    """Stop must not report success while the domain still runs, even without its config file."""
    assert vm.run("start").code == OK
    vm.wait_ready()
    os.rename(vm.config, vm.config.with_suffix(".moved"))
    res = vm.run("stop")
    still_running = vm.qemu_pid() is not None
    assert not (res.code == OK and still_running), f"stop said OK but the domain runs: {res.details()}"
    if res.code != OK:
        assert res.exit_reason, f"a failed stop needs an exit reason: {res.details()}"
