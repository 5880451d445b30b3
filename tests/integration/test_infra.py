"""Self-tests of the test infrastructure: the private libvirtd and the guest do what tests rely on."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Dict

import libvirt_qemu
import pytest

from tests.support import guest
from tests.support.libvirtd import LibvirtDaemon, _pids_in_ns
from tests.support.vm import MakeVM

WATCHED = ["/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt", "/run/libvirt",
           "/etc/passwd", "/etc/group"]


def _host_state() -> Dict[str, str]:
    state = {}
    for path in WATCHED:
        p = Path(path)
        if p.is_dir():
            state[path] = "dir:" + ",".join(sorted(os.listdir(p)))
        elif p.is_file():
            state[path] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            state[path] = "absent"
    with open("/proc/self/mountinfo") as f:
        state["mounts"] = "\n".join(sorted(" ".join(line.split()[3:5]) for line in f))
    return state


def test_private_libvirtd_leaves_the_host_as_it_was(guest_image: guest.GuestImage, tmp_path: Path) -> None:
    before = _host_state()
    daemon = LibvirtDaemon()
    try:
        daemon.setup()
        assert _host_state() == before, "the running daemon changed the host's view"
        log = tmp_path / "console.log"
        daemon.connect().createXML(guest.domain_xml("lmt-infra", guest_image, console_log=log), 0)
        assert daemon.qemu_pid("lmt-infra") is not None
        ns = daemon.mnt_ns
        assert ns is not None
    finally:
        daemon.teardown()
    assert not _pids_in_ns(ns), "processes of the test namespace survived teardown"
    assert not daemon.dir.exists()
    assert daemon.qemu_pid("lmt-infra") is None
    assert _host_state() == before


def test_frozen_libvirtd_does_not_answer(libvirtd: LibvirtDaemon) -> None:
    with libvirtd.frozen():
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(["virsh", "-c", libvirtd.uri, "list"], capture_output=True, timeout=1.5, check=False)
    subprocess.run(["virsh", "-c", libvirtd.uri, "list"], capture_output=True, timeout=30, check=True)


def test_guest_behaviours_on_the_console(make_vm: MakeVM) -> None:
    """The markers the shutdown tests rely on: button seen, power-off announced, or not."""
    conn = None
    for behaviour, expect_button, expect_poweroff in [("poweroff", True, True), ("hang", True, False),
                                                      ("ignore", False, False)]:
        vm = make_vm(acpi_behaviour=behaviour)
        conn = vm.daemon.connect()
        dom = conn.createXML(vm.xml, 0)
        vm.wait_ready()
        dom.shutdown()
        if expect_poweroff:
            guest.wait_for_console(vm.console, guest.KERNEL_POWER_DOWN, 10)
            vm.wait_until(lambda: vm.domain() is None, 10, "gone")  # noqa: B023
            assert vm.last_stop_reason() == "shutdown"
        elif expect_button:
            guest.wait_for_console(vm.console, guest.ACPI_BUTTON, 10)
        else:
            time.sleep(1.0)  # proving a negative: give the button a second to (not) arrive
        text = vm.console_text()
        assert (guest.ACPI_BUTTON in text) == expect_button, text
        assert (guest.POWEROFF in text) == expect_poweroff, text


def test_guest_dirties_memory_at_the_requested_rate(make_vm: MakeVM) -> None:
    """Measured by QEMU over 1 s, sampling 16384 pages per GiB (QEMU's maximum) through QMP.

    libvirt's startDirtyRateCalc samples QEMU's default 512 pages per GiB: 64 pages of this
    128 MiB guest, in steps of 2 MiB/s, from 10 to 34 MiB/s for 20 in fifteen runs here, and
    once 8 under CI's load. Its exact dirty-bitmap mode ends QEMU 7.2's TCG guest here (Debian 12:
    "Unable to read from monitor: Connection reset by peer").
    """
    vm = make_vm(dirty_mib_s=20)
    dom = vm.daemon.connect().createXML(vm.xml, 0)
    vm.wait_ready()
    guest.wait_for_console(vm.console, "LIVEMIG-DIRTY: 20.0 MiB/s", 10)
    libvirt_qemu.qemuMonitorCommand(dom, json.dumps(
        {"execute": "calc-dirty-rate", "arguments": {"calc-time": 1, "sample-pages": 16384}}), 0)
    deadline = time.monotonic() + 10
    while True:
        reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "query-dirty-rate"}', 0))
        result = reply["return"]
        if result["status"] == "measured":
            break
        assert time.monotonic() < deadline, result
        time.sleep(0.1)
    assert result["sample-pages"] == 16384, result
    assert 14 <= result["dirty-rate"] <= 28, result
