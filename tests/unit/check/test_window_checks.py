"""drbd_two_primaries=migration in `livemig check`: Pacemaker rows, the runtime allowance, the libvirt hook."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple
from unittest import mock

import pytest
from lxml import etree

from livemig.check.hook import HOOK, check_hook, running_daemons, start_ticks
from livemig.check.host import HostPaths
from livemig.check.model import CheckReport, CheckResult
from livemig.check.readiness import CheckOptions, check_vm
from livemig.check.window import check_window_runtime, window_mode
from livemig.drbd import modes
from livemig.drbd.state import DrbdResourceState, DrbdStateError, DrbdStatus, PeerState
from livemig.drbd.status9 import ShowConnection, ShowResource
from livemig.ocf.deadline import Deadline
from tests.unit.check.helpers import CIB, DOMAIN, DRBD
from tests.unit.drbd.scripted import ScriptedRunner

THREE = (DRBD / "check-9-window-3nodes.dump-xml.txt").read_text(encoding="utf-8")  # drbdadm 9's dump


def cib_text(window: bool = True, clone: bool = True, location: Optional[str] = None) -> str:
    """crmsh-good.xml (vm1 on a promotable clone of r0), changed as asked."""
    root = etree.parse(str(CIB / "crmsh-good.xml")).getroot()
    vm = root.find(".//primitive[@id='vm1']")
    assert vm is not None
    if window:
        attrs = vm.find("instance_attributes")
        assert attrs is not None
        etree.SubElement(attrs, "nvpair", id="vm1-two", name="drbd_two_primaries", value="migration")
    if not clone:
        for element in root.findall(".//clone[@id='ms_drbd_r0']") + root.findall(".//rsc_colocation") + \
                root.findall(".//rsc_order"):
            element.getparent().remove(element)
    if location is not None:
        constraints = root.find("configuration/constraints")
        assert constraints is not None
        etree.SubElement(constraints, "rsc_location", id="avoid", rsc="vm1", node=location, score="-INFINITY")
    return etree.tostring(root, encoding="unicode")


def check(tmp_path: Path, cib: str, drbd: str = THREE, host: Optional[HostPaths] = None,
          peer_names: Optional[dict] = None) -> CheckReport:
    path = tmp_path / "cib.xml"
    path.write_text(cib, encoding="utf-8")
    options = CheckOptions(cib_file=str(path), drbd_xml=drbd, domain_xml=DOMAIN.read_text(encoding="utf-8"),
                           runtime=False, libvirt=False, peer="beta", host=host, peer_names=peer_names or {})
    return check_vm("vm1", options, runner=ScriptedRunner({"cibadmin": (0, cib)}), deadline=Deadline(30))


def rows(report: CheckReport, name: str) -> List[CheckResult]:
    return report.by_name(name)


def test_window_mode_is_read_from_the_primitive() -> None:
    assert window_mode({"drbd_two_primaries": "migration"})
    assert not window_mode({"drbd_two_primaries": "always"}) and not window_mode({})


def test_a_promotable_clone_fails_with_two_owners(tmp_path: Path) -> None:
    report = check(tmp_path, cib_text(location="tb"))
    clone = rows(report, "drbd-clone")
    assert [r.status for r in clone] == ["fail"]
    assert "two owners of the role" in clone[0].found and "promotable clone ms_drbd_r0" in clone[0].found
    assert clone[0].fix.crm == "crm resource unmanage ms_drbd_r0; crm configure delete ms_drbd_r0 drbd_r0"
    assert clone[0].fix.pcs == "pcs resource unmanage ms_drbd_r0; pcs resource delete ms_drbd_r0 --force"
    assert "systemctl enable --now drbd@r0.target" in clone[0].fix.text
    # the dual-primary rows are not this mode's
    for name in ("promoted-max", "clone-limits", "notify", "colocation", "order"):
        assert rows(report, name) == [], name


def test_no_clone_and_the_vm_off_the_tiebreaker_pass(tmp_path: Path) -> None:
    report = check(tmp_path, cib_text(clone=False, location="tb"))
    assert [r.status for r in rows(report, "drbd-clone")] == ["ok"]
    assert [(r.status, r.subject) for r in rows(report, "location-diskless")] == [("ok", "tb")]
    assert [r.status for r in rows(report, "allow-two-primaries")] == ["ok", "ok", "ok"]
    assert [r.status for r in rows(report, "quorum")] == ["ok"]


def test_a_diskless_node_without_a_location_fails(tmp_path: Path) -> None:
    report = check(tmp_path, cib_text(clone=False))
    row = rows(report, "location-diskless")
    assert [(r.status, r.subject) for r in row] == [("fail", "tb")]
    assert row[0].fix.crm == "crm configure location location-vm1-tb--INFINITY vm1 -inf: tb"
    assert row[0].fix.pcs == "pcs constraint location vm1 avoids tb"
    # the DRBD host name is mapped back to the Pacemaker node with --peer-name NODE=HOST
    mapped = check(tmp_path, cib_text(clone=False), peer_names={"tiebreak": "tb"})
    assert [r.subject for r in rows(mapped, "location-diskless")] == ["tiebreak"]


def test_always_mode_is_unchanged(tmp_path: Path) -> None:
    report = check(tmp_path, cib_text(window=False), host=HostPaths(root=str(tmp_path / "empty")))
    names = {r.name for r in report.results}
    assert {"promoted-max", "colocation", "order"} <= names
    assert not names & {"drbd-9", "location-diskless", "libvirt-hook", "quorum", "runtime-allowance"}


def test_the_hook_row_comes_with_the_host_layer_in_this_mode_only(tmp_path: Path) -> None:
    report = check(tmp_path, cib_text(clone=False, location="tb"), host=HostPaths(root=str(tmp_path / "empty")))
    hook = rows(report, "libvirt-hook")
    assert [r.status for r in hook] == ["fail"] and f"no {HOOK}" in hook[0].found
    assert rows(check(tmp_path, cib_text(clone=False, location="tb")), "libvirt-hook") == []


# -- runtime allowance: every combination of roles, connection and runtime setting ------------------

class FakeReader:
    def __init__(self, status: DrbdStatus, show: Sequence[ShowResource] = (), fail_show: bool = False) -> None:
        self.status = status
        self.show = tuple(show)
        self.fail_show = fail_show

    def read_resources(self, names: Sequence[str], *, peers: bool = False) -> DrbdStatus:
        return self.status

    def show9(self) -> Tuple[ShowResource, ...]:
        if self.fail_show:
            raise DrbdStateError("drbdsetup show: exit 20")
        return self.show


ROLES = ("Primary", "Secondary")
COMBINATIONS = list(itertools.product(ROLES, ROLES + ("Unknown",), (True, False, None)))


@pytest.mark.parametrize("local,peer,allowed", COMBINATIONS)
def test_runtime_allowance(local: str, peer: str, allowed: Optional[bool]) -> None:
    state = DrbdResourceState("r0", local, False, peers=(PeerState("beta", 1, "Connected" if peer != "Unknown"
                                                                   else "Connecting", peer),))
    show = ShowResource("r0", True, (ShowConnection(1, "beta", None, allowed),))
    reader = FakeReader(DrbdStatus("9.2.12", 9, (state,)), [show])
    found = check_window_runtime(["r0"], reader)  # type: ignore[arg-type]
    assert [(r.name, r.status) for r in found][0] == ("drbd-9", "ok")
    (row,) = [r for r in found if r.name == "runtime-allowance"]
    # the oracle: on at runtime while both are Primary is a migration (or a window left: warn);
    # on otherwise is a window left open (fail); off is what this mode wants between migrations
    if allowed is True and local == "Primary" and peer == "Primary":
        assert row.status == "warn" and "a live migration runs now" in row.found
    elif allowed is True:
        assert row.status == "fail" and "while no migration runs" in row.found
        assert "drbdsetup net-options r0 1 --allow-two-primaries=no" in row.fix.text
    else:
        assert row.status == "ok"


def test_runtime_on_drbd_8_fails_and_unreadable_is_unknown() -> None:
    eight = FakeReader(DrbdStatus("8.4.11", 8, ()))
    found = check_window_runtime(["r0"], eight)  # type: ignore[arg-type]
    assert [(r.name, r.status) for r in found] == [("drbd-9", "fail")] and "8.4.11" in found[0].found
    broken = FakeReader(DrbdStatus("9.2.12", 9, ()), fail_show=True)
    found = check_window_runtime(["r0"], broken)  # type: ignore[arg-type]
    assert [(r.name, r.status) for r in found] == [("drbd-9", "ok"), ("drbd-settings", "unknown")]
    down = FakeReader(DrbdStatus("9.2.12", 9, ()), [])
    found = check_window_runtime(["r0"], down)  # type: ignore[arg-type]
    assert [(r.name, r.status) for r in found] == [("drbd-9", "ok"), ("runtime-allowance", "unknown")]


# -- the libvirt hook --------------------------------------------------------------------------------

BOOT = 1_700_000_000
HZ = 100


def host_tree(tmp_path: Path, hook_mtime: Optional[float], daemons: Sequence[Tuple[int, str, float]] = (),
              mode: int = 0o755, symlink: bool = False) -> HostPaths:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "stat").write_text(f"cpu  1 2 3\nbtime {BOOT}\nprocesses 9\n", encoding="utf-8")
    for pid, name, started in daemons:
        (root / "proc" / str(pid)).mkdir()
        (root / "proc" / str(pid) / "comm").write_text(name + "\n", encoding="utf-8")
        ticks = int((started - BOOT) * HZ)
        fields = ["S"] + ["0"] * 18 + [str(ticks), "0", "0"]
        (root / "proc" / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + "\n",
                                                        encoding="utf-8")
    if hook_mtime is not None:
        hook = root / HOOK.lstrip("/")
        hook.parent.mkdir(parents=True)
        real = tmp_path / "livemig-libvirt-hook" if symlink else hook
        real.write_text("#!/bin/sh\n", encoding="utf-8")
        real.chmod(mode)
        os.utime(real, (hook_mtime, hook_mtime))
        if symlink:
            os.utime(real, (BOOT, BOOT))  # an old file, linked in later: the link's own time counts
            hook.symlink_to(real)
            os.utime(hook, (hook_mtime, hook_mtime), follow_symlinks=False)
    return HostPaths(root=str(root))


def test_start_ticks_reads_field_22_past_a_command_with_parentheses() -> None:
    assert start_ticks("7 (a) b (c)) S " + " ".join(str(n) for n in range(4, 30))) == 22
    assert start_ticks("7 (short) S 1 2") is None


@pytest.mark.parametrize("hook,daemons,status,words", [
    (None, [(42, "virtqemud", BOOT + 50)], "fail", f"no {HOOK}"),
    (BOOT + 10, [(42, "virtqemud", BOOT + 50)], "ok", "older than virtqemud (pid 42)"),
    (BOOT + 60, [(42, "virtqemud", BOOT + 50)], "fail", "libvirt looks for hooks when it starts"),
    (BOOT + 60, [(42, "libvirtd", BOOT + 70), (43, "virtqemud", BOOT + 50)], "fail", "virtqemud (pid 43"),
    (BOOT + 60, [(44, "bash", BOOT + 1)], "ok", "no libvirtd or virtqemud runs"),
])
def test_hook_rows(tmp_path: Path, hook: Optional[float], daemons: list, status: str, words: str) -> None:
    (row,) = check_hook(host_tree(tmp_path, hook, daemons), ticks_per_second=HZ)
    assert row.name == "libvirt-hook" and row.layer == "host"
    assert row.status == status and words in row.found, row
    if status == "fail" and hook is not None:  # only the daemon that started before the hook is restarted
        assert row.fix.text == "systemctl restart virtqemud (or reload; running VMs keep running)"


def test_hook_not_executable_and_a_late_symlink(tmp_path: Path) -> None:
    (row,) = check_hook(host_tree(tmp_path / "a", BOOT + 10, [(42, "virtqemud", BOOT + 50)], mode=0o644),
                        ticks_per_second=HZ)
    assert row.status == "fail" and "is not executable" in row.found and row.fix.text == f"chmod 0755 {HOOK}"
    (row,) = check_hook(host_tree(tmp_path / "b", BOOT + 60, [(42, "virtqemud", BOOT + 50)], symlink=True),
                        ticks_per_second=HZ)
    assert row.status == "fail" and row.fix.text == "systemctl restart virtqemud (or reload; running VMs keep running)"


def test_running_daemons(tmp_path: Path) -> None:
    paths = host_tree(tmp_path, None, [(42, "virtqemud", BOOT + 50), (7, "libvirtd", BOOT + 2.5)])
    found = running_daemons(paths.path("proc"), HZ)
    assert [(d.name, d.pid, d.started) for d in found] == [("virtqemud", 42, BOOT + 50), ("libvirtd", 7, BOOT + 2.5)]


def test_a_good_window_setup_has_no_failure(tmp_path: Path) -> None:
    report = check(tmp_path, cib_text(clone=False, location="tb"))
    assert report.failed() == [] and report.exit_code == 0, report.failed()


def test_check_vm_runtime_in_this_mode(tmp_path: Path) -> None:
    """With runtime on: the mode's rows from the reader; until the guard has the mode, one warning says so."""
    cib = cib_text(clone=False, location="tb")
    path = tmp_path / "cib.xml"
    path.write_text(cib, encoding="utf-8")
    options = CheckOptions(cib_file=str(path), drbd_xml=THREE, domain_xml=DOMAIN.read_text(encoding="utf-8"),
                           runtime=True, libvirt=False, peer="beta")
    state = DrbdResourceState("r0", "Primary", False, peers=(PeerState("beta", 1, "Connected", "Secondary"),))
    reader = FakeReader(DrbdStatus("9.2.12", 9, (state,)),
                        [ShowResource("r0", True, (ShowConnection(1, "beta", None, True),))])
    with mock.patch.dict(modes.__dict__):
        modes.__dict__.pop("MODE_WINDOW", None)  # a guard without the mode (this branch's)
        report = check_vm("vm1", options, runner=ScriptedRunner({"cibadmin": (0, cib)}), deadline=Deadline(30),
                          reader=reader)  # type: ignore[arg-type]
    runtime = [(r.name, r.status) for r in report.results if r.layer == "drbd-runtime"]
    assert runtime == [("drbd-9", "ok"), ("runtime-allowance", "fail"), ("drbd-state", "warn")]
    assert "guard of drbd_two_primaries=migration is not in this livemig" in report.by_name("drbd-state")[0].found
    assert report.exit_code == 1
