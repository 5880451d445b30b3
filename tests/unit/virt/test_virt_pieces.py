from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from livemig.domain_xml import ConfigUnreadable, DomainXMLError, load_domain_config, parse_domain_xml
from livemig.run import CommandNotFound, CommandRunner, CommandTimeout
from livemig.virt.bounded import CallTimeout, bounded_call
from livemig.virt.errors import InvalidSetting
from livemig.virt.options import check_uri, is_local_qemu, shutdown_flags
from livemig.virt.qemu_proc import find_qemu_pids, qemu_domain_name
from livemig.virt.states import BLOCKED, CRASHED, NOSTATE, PAUSED, PMSUSPENDED, RUNNING, SHUTDOWN, SHUTOFF, classify

GOOD = "<domain type='qemu'><name>vm1</name><uuid>0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0</uuid><devices>" \
       "<disk type='block' device='disk'><source dev='/dev/drbd0'/><target dev='vda'/></disk>" \
       "<disk type='volume' device='disk'><source pool='p1' volume='v'/><target dev='vdb'/></disk>" \
       "<interface type='network'><source network='net1'/></interface></devices></domain>"


def test_parse_domain_xml() -> None:
    cfg = parse_domain_xml(GOOD)
    assert cfg.name == "vm1" and cfg.uuid == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert cfg.domain_type == "qemu"
    assert [d.path for d in cfg.disks] == ["/dev/drbd0", None]
    assert cfg.disks[0].target == "vda"
    assert cfg.networks == ("net1",) and cfg.pools == ("p1",)


@pytest.mark.parametrize("text,match", [
    ("not xml at all", "not well-formed"),
    ("<domain><name>a</name>", "not well-formed"),
    ("<network><name>a</name></network>", "not a libvirt domain"),
    ("<domain type='kvm'><memory>1</memory></domain>", "has no <name>"),
    ("<domain><name>  </name></domain>", "has no <name>"),
    ("<domain><name>a/b</name></domain>", "invalid domain name"),
    ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/shadow">]><domain><name>&x;</name></domain>',
     "DOCTYPE"),
    ('<!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><domain><name>&b;</name></domain>', "DOCTYPE"),
])
def test_bad_domain_xml(text: str, match: str) -> None:
    with pytest.raises(DomainXMLError, match=match):
        parse_domain_xml(text)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigUnreadable, match="No such file"):
        load_domain_config(str(tmp_path / "missing.xml"))
    with pytest.raises(ConfigUnreadable, match="not a regular file"):
        load_domain_config(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ConfigUnreadable, match="not a regular file"):
        load_domain_config(str(fifo))  # must not block waiting for a writer
    assert time.monotonic() - started < 5
    big = tmp_path / "big.xml"
    big.write_bytes(b"<domain>" + b" " * (5 * 1024 * 1024) + b"</domain>")
    with pytest.raises(DomainXMLError, match="larger than"):  # code 6: a configuration error, not node-local
        load_domain_config(str(big))
    binary = tmp_path / "bin.xml"
    binary.write_bytes(b"\xff\xfe<domain/>")
    with pytest.raises(DomainXMLError, match="UTF-8"):
        load_domain_config(str(binary))


@pytest.mark.parametrize("state,reason,outcome", [
    (RUNNING, 1, "running"), (BLOCKED, 0, "running"), (PAUSED, 1, "running"), (PAUSED, 2, "running"),
    (SHUTDOWN, 1, "running"), (PMSUSPENDED, 0, "running"), (NOSTATE, 0, "running"),
    (PAUSED, 12, "running"), (PAUSED, 9, "running"),
    (PAUSED, 5, "failed"), (PAUSED, 6, "failed"), (PAUSED, 10, "failed"), (PAUSED, 13, "failed"),
    (CRASHED, 1, "failed"),
    (SHUTOFF, 1, "stopped"), (SHUTOFF, 5, "stopped"),
])
def test_state_mapping(state: int, reason: int, outcome: str) -> None:
    health = classify(state, reason)
    got = "running" if health.running else "failed" if health.failed else "stopped"
    assert got == outcome


def test_state_constants_match_libvirt() -> None:
    import libvirt

    from livemig.virt import states

    assert (states.NOSTATE, states.RUNNING, states.BLOCKED, states.PAUSED, states.SHUTDOWN, states.SHUTOFF,
            states.CRASHED, states.PMSUSPENDED) == (
        libvirt.VIR_DOMAIN_NOSTATE, libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED,
        libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTDOWN, libvirt.VIR_DOMAIN_SHUTOFF,
        libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_PMSUSPENDED)
    assert states.PAUSED_IOERROR == libvirt.VIR_DOMAIN_PAUSED_IOERROR
    assert states.PAUSED_WATCHDOG == libvirt.VIR_DOMAIN_PAUSED_WATCHDOG
    assert states.PAUSED_CRASHED == libvirt.VIR_DOMAIN_PAUSED_CRASHED
    assert states.PAUSED_POSTCOPY_FAILED == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
    assert states.PAUSED_MIGRATION == libvirt.VIR_DOMAIN_PAUSED_MIGRATION
    assert states.PAUSED_POSTCOPY == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY
    assert states.PAUSED_API_ERROR == getattr(libvirt, "VIR_DOMAIN_PAUSED_API_ERROR", 14)
    assert states.SHUTOFF_CRASHED == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED


def test_io_error_pause_reason_is_actionable() -> None:
    assert "I/O error" in classify(PAUSED, 5).detail


def test_options() -> None:
    assert shutdown_flags("") == 0
    assert shutdown_flags("acpi") == 1
    assert shutdown_flags("agent, acpi") == 3
    with pytest.raises(InvalidSetting, match="not one of"):
        shutdown_flags("reboot")
    check_uri("qemu:///system")
    check_uri(None)
    for bad in ("", "qemu:///system\n", "no scheme", "qemu:///sys tem"):
        with pytest.raises(InvalidSetting):
            check_uri(bad)
    assert is_local_qemu(None) and is_local_qemu("qemu:///system")
    assert is_local_qemu("qemu:///system?socket=/run/x/sock")
    assert not is_local_qemu("qemu+ssh://host/system") and not is_local_qemu("xen:///system")


def test_qemu_name_from_cmdline() -> None:
    assert qemu_domain_name(["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on"]) == "vm1"
    assert qemu_domain_name(["/usr/bin/qemu-system-x86_64", "-name", "guest=a,,b,debug-threads=on"]) == "a,b"
    assert qemu_domain_name(["/usr/bin/qemu-kvm", "-name", "old"]) == "old"
    assert qemu_domain_name(["/usr/bin/python3", "-name", "guest=vm1"]) is None
    assert qemu_domain_name([]) is None


def test_find_qemu_pids_reads_proc(tmp_path: Path) -> None:
    def proc(pid: str, argv: list) -> None:
        d = tmp_path / pid
        d.mkdir()
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    proc("100", ["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on"])
    proc("200", ["/usr/bin/qemu-system-x86_64", "-name", "guest=vm10,debug-threads=on"])
    proc("300", ["/bin/sh", "-c", "-name guest=vm1"])
    (tmp_path / "self").mkdir()
    (tmp_path / "400").mkdir()  # exited: no cmdline
    assert find_qemu_pids("vm1", str(tmp_path)) == [100]
    assert find_qemu_pids("vm2", str(tmp_path)) == []
    assert find_qemu_pids("vm1", str(tmp_path / "nope")) == []


def test_bounded_call() -> None:
    assert bounded_call("add", 1.0, lambda a, b: a + b, 1, 2) == 3
    with pytest.raises(ZeroDivisionError):
        bounded_call("div", 1.0, lambda: 1 / 0)
    gate = threading.Event()
    started = time.monotonic()
    with pytest.raises(CallTimeout, match="did not answer within 0.2s"):
        bounded_call("hang", 0.2, gate.wait, 10)
    assert time.monotonic() - started < 2
    gate.set()
    with pytest.raises(CallTimeout):
        bounded_call("none", 0, lambda: None)


def test_command_runner_real_processes(tmp_path: Path) -> None:
    r = CommandRunner()
    res = r.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (res.returncode, res.stdout, res.stderr.strip()) == (3, "out\n", "err")
    assert "exited 3: err" in res.describe()
    assert r.run(["cat"], timeout=10, stdin="abc").stdout == "abc"
    with pytest.raises(CommandNotFound):
        r.run(["livemig-no-such-program"], timeout=5)
    marker = tmp_path / "grandchild"
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        # the grandchild holds the pipes open: the whole process group must die
        r.run(["sh", "-c", f"(sleep 30; touch {marker}) & sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert not marker.exists()
