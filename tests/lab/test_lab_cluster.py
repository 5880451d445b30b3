"""Lab self-tests: the two-node lab itself (root; builds the lab once per session, ~30 s)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labctl  # noqa: E402
from labfixtures import LabSession  # noqa: E402


def test_both_nodes_online(lab: LabSession) -> None:
    root = labctl.crm_mon_xml(lab.names[0])
    online = {n.get("name") for n in root.iter("node") if n.get("online") == "true"}
    assert online == set(lab.names)
    assert root.find("summary/current_dc").get("present") == "true"


def test_nodes_have_their_own_view(lab: LabSession) -> None:
    for name in lab.names:
        assert lab.run(name, "hostname").stdout.strip() == name
        out = lab.run(name, "ls", "/usr/lib/ocf/resource.d/livemig", "/usr/lib/ocf/resource.d/livemiglab").stdout
        assert "VirtualDomain" in out and "drbd" in out
        assert lab.run(name, "readlink", "-f", f"/dev/drbd/by-res/{labctl.DRBD_RES}/0").stdout.strip() \
            == f"/dev/drbd{labctl.DRBD_MINOR}"
    # ...while the host's files are untouched.
    assert not Path("/usr/lib/ocf/resource.d/livemig").exists() or \
        labctl.LAB_DIR.as_posix() not in os.path.realpath("/usr/lib/ocf/resource.d/livemig")
    assert not Path(f"/dev/drbd{labctl.DRBD_MINOR}").exists()
    assert "livemiglab" not in Path("/etc/corosync/corosync.conf").read_text()


def test_pacemaker_promotes_both_clone_instances(lab: LabSession) -> None:
    assert labctl.promoted_nodes(lab.names[0]) == set(lab.names)
    for name in lab.names:
        assert lab.run(name, "drbdadm", "role", labctl.DRBD_RES).stdout.strip() == "Primary"


def test_vm_starts_under_pacemaker_inside_its_node(lab: LabSession) -> None:
    first = lab.names[0]
    lab.crm("resource", "start", labctl.VM_NAME)
    try:
        node = labctl.wait_resource_on(first, labctl.VM_NAME, None, timeout=120)
        pids = labctl.qemu_pids()
        assert len(pids) == 1, f"expected one QEMU for {labctl.VM_NAME}, found {pids}"
        holder = labctl.holder_pid(node)
        for ns in ("net", "mnt", "pid", "uts"):
            assert os.readlink(f"/proc/{pids[0]}/ns/{ns}") == os.readlink(f"/proc/{holder}/ns/{ns}"), ns
        # The VM's disk is the simulated DRBD device, as the guard will see it in the domain XML.
        xml = lab.run(node, "virsh", "dumpxml", labctl.VM_NAME).stdout
        assert f"/dev/drbd/by-res/{labctl.DRBD_RES}/0" in xml
        # Demoting the node under the running VM is refused, as by DRBD (device held open).
        res = lab.run(node, "drbdadm", "secondary", labctl.DRBD_RES, check=False)
        assert res.returncode == 11 and "(-12) Device is held open by someone" in res.stderr
    finally:
        lab.crm("resource", "stop", labctl.VM_NAME)
    assert labctl.qemu_pids() == []


def test_simulator_two_primaries_rule_on_the_nodes(lab: LabSession) -> None:
    """The fake drbdadm on the nodes, on a resource of its own (Pacemaker's r0 is left alone)."""
    store = labctl.SHARED / "drbd" / "selftest.json"
    sys.path.insert(0, str(labctl.HERE))
    import drbdsim

    drbdsim.init_store(str(store), "t0", 7, "", [(n, labctl.node_ip(n)) for n in lab.names], devices=False)
    a, b = lab.names[:2]

    def adm(node: str, *args: str):
        return lab.run(node, "env", f"LIVEMIG_DRBDSIM_STORE={store}", "drbdadm", *args, check=False)

    try:
        assert adm(a, "up", "t0").returncode == 0 and adm(b, "up", "t0").returncode == 0
        assert adm(a, "net-options", "--allow-two-primaries=no", "t0").returncode == 0
        assert adm(a, "primary", "t0").returncode == 0
        res = adm(b, "primary", "t0")
        assert res.returncode == 11
        assert "t0: State change failed: (-1) Multiple primaries not allowed by config" in res.stderr
        assert adm(b, "role", "t0").stdout.strip() == "Secondary"
        assert adm(b, "net-options", "--allow-two-primaries=yes", "t0").returncode == 0
        assert adm(b, "primary", "t0").returncode == 0
        status = json.loads(lab.run(a, "env", f"LIVEMIG_DRBDSIM_STORE={store}",
                                    "drbdsetup", "status", "t0", "--json").stdout)
        assert status[0]["role"] == "Primary" and status[0]["connections"][0]["peer-role"] == "Primary"
    finally:
        for suffix in ("", ".lock"):
            Path(str(store) + suffix).unlink()


def test_fencing_really_stops_the_node(lab: LabSession) -> None:
    first, victim = lab.names[0], lab.names[-1]
    before = labctl.on_node(victim, ["pgrep", "-x", "corosync"]).stdout.strip()
    lab.run(first, "stonith_admin", "--reboot", victim, "--timeout", "60", timeout=90)
    after = labctl.on_node(victim, ["pgrep", "-x", "corosync"], check=False).stdout.strip()
    assert after != before, f"corosync of {victim} was not restarted by the fence device"
    assert "fence request: reboot" in (labctl.node_dir(victim) / "init.log").read_text()
    # Rejoining (corosync, pacemaker) and promotion usually take ~20 s; one CI run of many
    # needed more than 120 s for reasons not found yet, so wait longer and say what was seen.
    try:
        labctl.wait_for(f"{victim} back Online and promoted",
                        lambda: labctl.promoted_nodes(first) == set(lab.names), 240, 1.0)
    except labctl.LabError as exc:
        mon = lab.run(first, "crm_mon", "-1", "-r", "-f", check=False).stdout
        drbd = lab.run(victim, "drbdadm", "status", check=False)
        pytest.fail(f"{exc}\n{mon}\n{victim}: {drbd.stdout}{drbd.stderr}\n{labctl.node_diagnostics(victim)}",
                    pytrace=False)


def test_zz_down_leaves_nothing_behind(lab: LabSession) -> None:
    """Runs last in this module: tears the session lab down and compares with the machine before."""
    before = lab.before
    inodes = {os.stat("/run/netns/" + ns).st_ino for ns in os.listdir("/run/netns") if ns.startswith("lmlab-")}
    lab.down()
    after = labctl.snapshot()
    for key in ("mounts", "netns", "links", "lab_dir"):
        assert sorted(set(after[key]) - set(before[key])) == [], key
    marks = ("livemig-lab", "nodeinit.py", "lmlab-")
    # Other people's processes come and go on a shared machine: only lab processes count. Every
    # daemon of a node lives in the node's network namespace (checked below).
    new_procs = [p for p in set(after["processes"]) - set(before["processes"]) if any(m in p for m in marks)]
    assert new_procs == []
    assert [p for p in labctl._pids_in_netns(inodes)] == []
    assert [x for x in after["loops"] if str(labctl.LAB_DIR) in x] == []
    assert not Path("/run/livemig-lab").exists()
