"""`livemig check`'s host rows (check/host.py): node-shutdown ordering and libvirt-guests.

Each test lays out a host under tmp_path the way Debian 12 and RHEL 9 packages do (unit files in
/lib or /usr/lib/systemd/system, enablement links under /etc/systemd/system/*.wants, settings in
/etc/default or /etc/sysconfig), in the files' own formats: the units written as libvirt,
pacemaker and resource-agents write theirs (several After= lines, comments, EnvironmentFile=-),
the settings file with its commented-out defaults, the script with its defaults at top level and
an indented assignment inside a function.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from livemig.check.host import HostPaths, check_host, shell_settings, unit_setting
from livemig.check.model import CheckReport, CheckResult
from livemig.check.readiness import CheckOptions, check_vm
from livemig.ocf.deadline import Deadline
from tests.unit.check.helpers import CIB, DOMAIN, DRBD
from tests.unit.drbd.scripted import ScriptedRunner

ROOT = Path(__file__).resolve().parents[3]
DROP_IN = (ROOT / "systemd" / "resource-agents-deps.target.d" / "livemig.conf").read_text(encoding="utf-8")

PACEMAKER = """[Unit]
Description=Pacemaker High Availability Cluster Manager
Documentation=man:pacemakerd

# Some OCF resources may have dependencies that aren't managed by the cluster;
# these must be started before Pacemaker and stopped after it.
After=resource-agents-deps.target
Wants=resource-agents-deps.target

After=corosync.service
Requires=corosync.service

[Service]
Type=simple
ExecStart=/usr/sbin/pacemakerd

[Install]
WantedBy=multi-user.target
"""
TARGET = "[Unit]\nDescription=resource-agents dependencies\n"
LIBVIRTD = """[Unit]
Description=Virtualization daemon
Requires=virtlogd.socket
Wants=libvirtd.socket
After=network.target
After=dbus.service
Documentation=man:libvirtd(8)

[Service]
Type=notify
Environment=LIBVIRTD_ARGS="--timeout 120"
ExecStart=/usr/sbin/libvirtd $LIBVIRTD_ARGS

[Install]
WantedBy=multi-user.target
"""
GUESTS_UNIT = """[Unit]
Description=Suspend/Resume Running libvirt Guests
Requires=virt-guest-shutdown.target
After=network.target
After=libvirtd.socket
After=virtqemud.socket
After=virt-guest-shutdown.target
Documentation=man:libvirt-guests(8)

[Service]
EnvironmentFile=-{config}
# Hack just call traditional service until we factor
# out the code
ExecStart={script} start
ExecStop={script} stop
Type=oneshot
RemainAfterExit=yes
TimeoutStopSec=0

[Install]
WantedBy=multi-user.target
"""
SHUTDOWN_TARGET = "[Unit]\nDescription=Libvirt guests shutdown\nDocumentation=https://libvirt.org\n"
GUESTS_CONFIG = """# URIs to check for running guests
#URIS=default

# action taken on host boot
# - start   all guests which were running on shutdown are started on boot
# - ignore  libvirt-guests init script won't start any guest on boot
#ON_BOOT=ignore

# action taken on host shutdown
# - suspend   all running guests are suspended using virsh managedsave
# - shutdown  all running guests are asked to shutdown.
#ON_SHUTDOWN=shutdown
{extra}"""
GUESTS_SCRIPT = """#!/bin/sh
sysconfdir="/etc"
URIS="default"
ON_BOOT="{boot}"
ON_SHUTDOWN="{shutdown}"
SHUTDOWN_TIMEOUT=300

test -f "$sysconfdir"/default/libvirt-guests &&
    . "$sysconfdir"/default/libvirt-guests

case "$1" in
    shutdown)
        ON_SHUTDOWN="shutdown"
        stop
        ;;
esac
"""
DEBIAN_SCRIPT = "/usr/lib/libvirt/libvirt-guests.sh"
RHEL_SCRIPT = "/usr/libexec/libvirt-guests.sh"


def write(root: Path, path: str, text: str) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def debian_host(root: Path, *, drop_in: bool = True, guests: bool = True, enabled: bool = False,
                extra: str = "", target: bool = True) -> HostPaths:
    """Debian 12: units in /lib/systemd/system, the package's drop-in in /usr/lib, /etc/default."""
    units = "/lib/systemd/system"
    write(root, f"{units}/pacemaker.service", PACEMAKER)
    if target:
        write(root, f"{units}/resource-agents-deps.target", TARGET)
    write(root, f"{units}/libvirtd.service", LIBVIRTD)
    if drop_in:
        write(root, "/usr/lib/systemd/system/resource-agents-deps.target.d/livemig.conf", DROP_IN)
    if guests:
        write(root, f"{units}/libvirt-guests.service",
              GUESTS_UNIT.format(config="/etc/default/libvirt-guests", script=DEBIAN_SCRIPT))
        write(root, f"{units}/virt-guest-shutdown.target", SHUTDOWN_TARGET)
        write(root, "/etc/default/libvirt-guests", GUESTS_CONFIG.format(extra=extra))
        write(root, DEBIAN_SCRIPT, GUESTS_SCRIPT.format(boot="ignore", shutdown="shutdown"))
    if enabled:
        enable(root, "libvirt-guests.service", units)
    return HostPaths(root=str(root))


def rhel_host(root: Path, *, extra: str = "", script: bool = True) -> HostPaths:
    """RHEL 9: modular daemons, units in /usr/lib/systemd/system, /etc/sysconfig, libvirt-guests enabled."""
    units = "/usr/lib/systemd/system"
    write(root, f"{units}/pacemaker.service", PACEMAKER)
    write(root, f"{units}/resource-agents-deps.target", TARGET)
    write(root, f"{units}/virtqemud.service", LIBVIRTD.replace("libvirtd", "virtqemud"))
    write(root, f"{units}/resource-agents-deps.target.d/livemig.conf", DROP_IN)
    write(root, f"{units}/libvirt-guests.service",
          GUESTS_UNIT.format(config="/etc/sysconfig/libvirt-guests", script=RHEL_SCRIPT))
    write(root, f"{units}/virt-guest-shutdown.target", SHUTDOWN_TARGET)
    write(root, "/etc/sysconfig/libvirt-guests", GUESTS_CONFIG.format(extra=extra))
    if script:
        write(root, RHEL_SCRIPT, GUESTS_SCRIPT.format(boot="start", shutdown="suspend"))
    enable(root, "libvirt-guests.service", units)
    return HostPaths(root=str(root))


def enable(root: Path, name: str, units: str) -> None:
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / name).symlink_to(f"{units}/{name}")


def rows(paths: HostPaths) -> Dict[str, CheckResult]:
    found = check_host(paths)
    assert all(r.layer == "host" for r in found)
    by_name = {r.name: r for r in found}
    assert len(by_name) == len(found), found
    return by_name


# -- shutdown ordering ---------------------------------------------------------------------------

def test_the_packages_drop_in_orders_pacemaker_before_libvirt(tmp_path: Path) -> None:
    order = rows(debian_host(tmp_path))["shutdown-order"]
    assert order.status == "ok", order
    assert "libvirtd.service, libvirt-guests.service, virt-guest-shutdown.target" in order.found
    assert "resource-agents-deps.target.d/livemig.conf" in order.found
    assert "systemd is not running here" in order.found  # tmp_path has no run/systemd/system


def test_without_the_drop_in_the_missing_units_are_named(tmp_path: Path) -> None:
    order = rows(debian_host(tmp_path, drop_in=False))["shutdown-order"]
    assert order.status == "warn"
    assert ("lacks libvirtd.service, libvirt-guests.service, virt-guest-shutdown.target, "
            "Wants=virt-guest-shutdown.target") in order.found
    assert "resource-agents-deps.target.d/livemig.conf" in order.fix.render()


def test_an_etc_drop_in_of_the_same_name_replaces_the_packages(tmp_path: Path) -> None:
    paths = rhel_host(tmp_path)
    assert rows(paths)["shutdown-order"].status == "ok"
    write(tmp_path, "/etc/systemd/system/resource-agents-deps.target.d/livemig.conf",
          "[Unit]\nAfter=libvirtd.service libvirt-guests.service virt-guest-shutdown.target\n"
          "Wants=virt-guest-shutdown.target\n")
    order = rows(paths)["shutdown-order"]
    assert order.status == "warn" and "lacks virtqemud.service:" in order.found, order


def test_another_drop_in_adds_to_the_packages(tmp_path: Path) -> None:
    paths = debian_host(tmp_path, drop_in=False)
    write(tmp_path, "/run/systemd/system/resource-agents-deps.target.d/99-VirtualDomain-libvirt.conf",
          "[Unit]\nAfter=libvirtd.service\n")  # what heartbeat's agent writes at start
    order = rows(paths)["shutdown-order"]
    assert order.status == "warn" and "lacks libvirt-guests.service" in order.found
    assert "libvirtd.service," not in order.found.split("lacks", 1)[1].split(":")[0]
    assert "systemd is not running" not in order.found  # run/systemd/system exists now


def test_continuation_lines_and_comments_are_read_as_systemd_does(tmp_path: Path) -> None:
    paths = debian_host(tmp_path, drop_in=False)
    write(tmp_path, "/etc/systemd/system/resource-agents-deps.target.d/order.conf",
          "# After=libvirt-guests.service is not set here\n[Unit]\nAfter=libvirtd.service \\\n"
          "  libvirt-guests.service\n;After=nothing\nAfter=virt-guest-shutdown.target\n[Install]\n"
          "Wants=virt-guest-shutdown.target\n")
    order = rows(paths)["shutdown-order"]
    assert order.status == "warn" and "lacks Wants=virt-guest-shutdown.target:" in order.found, order


def test_without_resource_agents_the_target_is_missing(tmp_path: Path) -> None:
    order = rows(debian_host(tmp_path, target=False))["shutdown-order"]
    assert order.status == "warn" and "resource-agents-deps.target is not installed" in order.found
    assert "install resource-agents" in order.fix.render()


def test_pacemaker_not_after_the_target(tmp_path: Path) -> None:
    paths = debian_host(tmp_path)
    write(tmp_path, "/etc/systemd/system/pacemaker.service", PACEMAKER.replace("resource-agents-deps", "other"))
    order = rows(paths)["shutdown-order"]
    assert order.status == "warn" and "pacemaker.service is not After=resource-agents-deps.target" in order.found


def test_no_pacemaker_here_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    order = rows(HostPaths(root=str(tmp_path)))["shutdown-order"]
    assert order.status == "warn" and "pacemaker.service is not installed here" in order.found


def test_an_unreadable_drop_in_is_named_not_raised(tmp_path: Path) -> None:
    paths = debian_host(tmp_path, drop_in=False)
    fifo = tmp_path / "etc/systemd/system/resource-agents-deps.target.d/livemig.conf"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    order = rows(paths)["shutdown-order"]
    assert order.status == "warn" and "unreadable:" in order.found and "not a regular file" in order.found


# -- libvirt-guests ----------------------------------------------------------------------------

def test_libvirt_guests_not_enabled_or_absent_or_masked(tmp_path: Path) -> None:
    assert rows(debian_host(tmp_path / "a"))["libvirt-guests"].found.endswith("is not enabled: it neither "
                                                                               "starts nor stops guests")
    assert rows(debian_host(tmp_path / "b", guests=False))["libvirt-guests"].found == \
        "libvirt-guests.service is not installed"
    masked = debian_host(tmp_path / "c", enabled=True)
    (tmp_path / "c/etc/systemd/system/libvirt-guests.service").symlink_to("/dev/null")
    assert rows(masked)["libvirt-guests"].found == "libvirt-guests.service is masked"


def test_debian_defaults_shut_guests_down(tmp_path: Path) -> None:
    found = rows(debian_host(tmp_path, enabled=True))
    assert found["libvirt-guests-boot"].status == "ok"
    assert "ON_BOOT=ignore (the default of /usr/lib/libvirt/libvirt-guests.sh)" in found["libvirt-guests-boot"].found
    shutdown = found["libvirt-guests-shutdown"]
    assert shutdown.status == "warn"
    assert "ON_SHUTDOWN=shutdown (the default of /usr/lib/libvirt/libvirt-guests.sh)" in shutdown.found
    assert "shuts down the guests" in shutdown.found
    assert "systemctl disable libvirt-guests.service" in shutdown.fix.render()


def test_on_boot_start_fails_with_the_file_in_the_fix(tmp_path: Path) -> None:
    found = rows(debian_host(tmp_path, enabled=True, extra="ON_BOOT=start\nON_SHUTDOWN=suspend\n"))
    boot = found["libvirt-guests-boot"]
    assert boot.status == "fail" and "ON_BOOT=start (/etc/default/libvirt-guests)" in boot.found
    assert boot.fix.render().startswith("set ON_BOOT=ignore in /etc/default/libvirt-guests, or systemctl disable")
    assert "suspends (managedsave)" in found["libvirt-guests-shutdown"].found


def test_rhel_defaults_start_and_suspend(tmp_path: Path) -> None:
    found = rows(rhel_host(tmp_path))
    assert found["libvirt-guests-boot"].status == "fail"
    assert "ON_BOOT=start (the default of /usr/libexec/libvirt-guests.sh)" in found["libvirt-guests-boot"].found
    assert "set ON_BOOT=ignore in /etc/sysconfig/libvirt-guests" in found["libvirt-guests-boot"].fix.render()
    assert "ON_SHUTDOWN=suspend" in found["libvirt-guests-shutdown"].found
    ignored = rows(rhel_host(tmp_path / "ignore", extra="ON_BOOT='ignore'  # cluster node\n"))
    assert ignored["libvirt-guests-boot"].status == "ok"
    assert "ON_BOOT=ignore (/etc/sysconfig/libvirt-guests)" in ignored["libvirt-guests-boot"].found


def test_without_the_script_libvirts_own_defaults_are_assumed(tmp_path: Path) -> None:
    found = rows(rhel_host(tmp_path, script=False))
    assert found["libvirt-guests-boot"].status == "fail"
    assert "ON_BOOT=start (libvirt's default)" in found["libvirt-guests-boot"].found


def test_a_value_only_a_shell_can_tell(tmp_path: Path) -> None:
    found = rows(debian_host(tmp_path, enabled=True, extra='ON_BOOT="$(cat /etc/boot-action)"\n'))
    assert found["libvirt-guests-boot"].status == "warn"
    assert "only a shell can tell" in found["libvirt-guests-boot"].found


@pytest.mark.parametrize("text, expected", [
    ("ON_BOOT=start\n", {"ON_BOOT": "start"}),
    ("ON_BOOT=start\nON_BOOT=ignore\n", {"ON_BOOT": "ignore"}),
    ('export ON_SHUTDOWN="shutdown" # comment\n', {"ON_SHUTDOWN": "shutdown"}),
    ("#ON_BOOT=start\n  # ON_BOOT=start\n", {}),
    ("ON_BOOT='$literal'\n", {"ON_BOOT": "$literal"}),
    ("ON_BOOT=$OTHER\n", {"ON_BOOT": None}),
    ("ON_BOOT=`cmd`\n", {"ON_BOOT": None}),
    ("ON_BOOT='unterminated\n", {"ON_BOOT": None}),
    ("URIS='default xen:///system'\n", {"URIS": "default xen:///system"}),
    ("ON_BOOT=start now\n", {"ON_BOOT": None}),
    ("URIS=\n", {"URIS": ""}),
])
def test_shell_settings(text: str, expected: Dict[str, Optional[str]]) -> None:
    assert shell_settings(text) == expected


def test_unit_setting_keeps_to_its_section() -> None:
    text = "[Unit]\nAfter=a.service b.service\n[Service]\nAfter=c.service\n[Unit]\nAfter=d.target\n"
    assert unit_setting(text, "Unit", "After") == ["a.service", "b.service", "d.target"]
    assert unit_setting(text, "Service", "After") == ["c.service"]


# -- in livemig check --------------------------------------------------------------------------

def check_vm_with(host: Optional[HostPaths]) -> CheckReport:
    options = CheckOptions(cib_file=str(CIB / "crmsh-good.xml"),
                           drbd_xml=(DRBD / "check-9-good.dump-xml.txt").read_text(encoding="utf-8"),
                           domain_xml=DOMAIN.read_text(encoding="utf-8"), runtime=False, libvirt=False,
                           peer="beta", host=host)
    runner = ScriptedRunner({"cibadmin": (0, (CIB / "crmsh-good.xml").read_text())})
    return check_vm("vm1", options, runner=runner, deadline=Deadline(30))


def test_check_vm_adds_the_host_rows_only_when_asked(tmp_path: Path) -> None:
    paths = debian_host(tmp_path, enabled=True, extra="ON_BOOT=start\n")
    without = check_vm_with(None)
    assert not [r for r in without.results if r.layer == "host"] and without.exit_code == 0
    report = check_vm_with(paths)
    host = [r.name for r in report.results if r.layer == "host"]
    assert host == ["shutdown-order", "libvirt-guests-boot", "libvirt-guests-shutdown"]
    assert report.exit_code == 1 and [r.name for r in report.failed()] == ["libvirt-guests-boot"]


def cli(argv: List[str]) -> Dict[str, object]:
    import io

    from livemig.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    runner = ScriptedRunner({"cibadmin": (0, (CIB / "crmsh-good.xml").read_text())})
    code = main(["check", "vm1", "--cib", str(CIB / "crmsh-good.xml"), "--drbd-xml",
                 str(DRBD / "check-9-good.dump-xml.txt"), "--domain-xml", str(DOMAIN), "--peer", "beta",
                 "--skip-runtime", "--skip-libvirt", "--json"] + argv, runner=runner, stdout=out, stderr=err)
    assert code in (0, 1), err.getvalue()
    document: Dict[str, object] = json.loads(out.getvalue())
    return document


def test_the_command_reads_this_host_unless_told_not_to() -> None:
    def layers(document: Dict[str, object]) -> List[str]:
        return [str(c["layer"]) for c in document["checks"]]  # type: ignore[attr-defined, index]

    assert "host" in layers(cli([]))
    assert "host" not in layers(cli(["--skip-host"]))
