"""stop: a graceful ACPI shutdown when the guest answers, destroy within the deadline when not.

How a stop ended is read from libvirt's QEMU log ('shutting down, reason=shutdown'
when the guest powered itself off, 'reason=destroyed' after virDomainDestroy)
and from the guest's console (it prints LIVEMIG-GUEST-POWEROFF before powering off).
"""

from __future__ import annotations

import pytest

from tests.support import guest
from tests.support.vm import MakeVM, TestVM

OK = 0
#: A short stop timeout: the agent must split it between waiting and destroying.
SHORT_TIMEOUT_MS = 8000


def test_graceful_acpi_shutdown(vm: TestVM) -> None:
    assert vm.run("start").code == OK
    vm.wait_ready()
    res = vm.run("stop")
    assert res.code == OK, res.details()
    assert vm.domain() is None and vm.qemu_pid() is None
    console = vm.console_text(vm.boot_offset)
    assert guest.ACPI_BUTTON in console, f"the guest never saw the power button:\n{console}"
    assert guest.POWEROFF in console, f"the guest did not power itself off:\n{console}"
    assert vm.last_stop_reason() == "shutdown", f"libvirt says {vm.last_stop_reason()!r}, not a guest shutdown"


def test_graceful_with_shutdown_mode_acpi(vm: TestVM) -> None:
    assert vm.run("start", params={"shutdown_mode": "acpi"}).code == OK
    vm.wait_ready()
    res = vm.run("stop", params={"shutdown_mode": "acpi"})
    assert res.code == OK, res.details()
    assert vm.last_stop_reason() == "shutdown"


def test_slow_guest_shutdown_is_waited_for(make_vm: MakeVM) -> None:
    """A guest that needs 3 s to power off is not destroyed when the timeout leaves room."""
    vm = make_vm(acpi_behaviour="delay:3")
    assert vm.run("start").code == OK
    vm.wait_ready()
    res = vm.run("stop", timeout_ms=30000)
    assert res.code == OK, res.details()
    assert vm.last_stop_reason() == "shutdown", f"destroyed instead of waiting: {res.details()}"
    assert res.elapsed >= 3, res.describe()


@pytest.mark.parametrize("behaviour", ["ignore", "hang"])
def test_destroy_when_guest_does_not_shut_down(make_vm: MakeVM, behaviour: str) -> None:
    """'ignore': no acpid at all. 'hang': the guest sees the button but never powers off."""
    vm = make_vm(acpi_behaviour=behaviour)
    assert vm.run("start").code == OK
    vm.wait_ready()
    res = vm.run("stop", timeout_ms=SHORT_TIMEOUT_MS)
    assert not res.timed_out, res.details()
    assert res.code == OK, res.details()
    assert res.elapsed < SHORT_TIMEOUT_MS / 1000, f"stop overran its timeout: {res.describe()}"
    assert vm.domain() is None and vm.qemu_pid() is None
    assert vm.last_stop_reason() == "destroyed", vm.last_stop_reason()
    console = vm.console_text(vm.boot_offset)
    assert guest.POWEROFF not in console
    if behaviour == "hang":
        assert guest.ACPI_BUTTON in console, "the graceful request never reached the guest"


def test_force_stop_destroys_at_once(vm: TestVM) -> None:
    assert vm.run("start").code == OK
    vm.wait_ready()
    res = vm.run("stop", params={"force_stop": "true"})
    assert res.code == OK, res.details()
    assert vm.last_stop_reason() == "destroyed", vm.last_stop_reason()
    assert guest.ACPI_BUTTON not in vm.console_text(vm.boot_offset), "force_stop must not ask the guest first"


def test_stop_right_after_start_still_within_deadline(make_vm: MakeVM) -> None:
    """Stopping a guest that is still booting (acpid not up yet) ends within the timeout."""
    vm = make_vm()
    assert vm.run("start").code == OK
    res = vm.run("stop", timeout_ms=SHORT_TIMEOUT_MS)
    assert res.code == OK, res.details()
    assert res.elapsed < SHORT_TIMEOUT_MS / 1000, res.describe()
    assert vm.domain() is None and vm.qemu_pid() is None
