"""Lab self-tests: the two-node lab itself (root; builds the lab once per session, ~30 s)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.lab import cluster as lab_cluster
from tests.lab import core, drbdsim, queries
from tests.lab import network as lab_network
from tests.lab import nodes as lab_nodes
from tests.lab.labfixtures import LabSession


def test_both_nodes_online(lab: LabSession) -> None:
    root = lab_cluster.crm_mon_xml(lab.names[0])
    online = {n.get("name") for n in root.iter("node") if n.get("online") == "true"}
    assert online == set(lab.names)
    assert root.find("summary/current_dc").get("present") == "true"


def test_nodes_have_their_own_view(lab: LabSession) -> None:
    for name in lab.names:
        assert lab.run(name, "hostname").stdout.strip() == name
        out = lab.run(name, "ls", "/usr/lib/ocf/resource.d/livemig", "/usr/lib/ocf/resource.d/livemiglab").stdout
        assert "VirtualDomain" in out and "drbd" in out
        assert lab.run(name, "readlink", "-f", f"/dev/drbd/by-res/{core.DRBD_RES}/0").stdout.strip() \
            == f"/dev/drbd{core.DRBD_MINOR}"
    # ...while the host's files are untouched.
    assert not Path("/usr/lib/ocf/resource.d/livemig").exists() or \
        core.LAB_DIR.as_posix() not in os.path.realpath("/usr/lib/ocf/resource.d/livemig")
    assert not Path(f"/dev/drbd{core.DRBD_MINOR}").exists()
    assert "livemiglab" not in Path("/etc/corosync/corosync.conf").read_text()


def test_pacemaker_promotes_both_clone_instances(lab: LabSession) -> None:
    assert lab_cluster.promoted_nodes(lab.names[0]) == set(lab.names)
    for name in lab.names:
        assert lab.run(name, "drbdadm", "role", core.DRBD_RES).stdout.strip() == "Primary"


def test_vm_starts_under_pacemaker_inside_its_node(lab: LabSession) -> None:
    first = lab.names[0]
    lab.crm("resource", "start", core.VM_NAME)
    try:
        node = lab_cluster.wait_resource_on(first, core.VM_NAME, None, timeout=120)
        pids = queries.qemu_pids()
        assert len(pids) == 1, f"expected one QEMU for {core.VM_NAME}, found {pids}"
        holder = lab_nodes.holder_pid(node)
        for ns in ("net", "mnt", "pid", "uts"):
            assert os.readlink(f"/proc/{pids[0]}/ns/{ns}") == os.readlink(f"/proc/{holder}/ns/{ns}"), ns
        # The VM's disk is the simulated DRBD device, as the guard will see it in the domain XML.
        xml = lab.run(node, "virsh", "dumpxml", core.VM_NAME).stdout
        assert f"/dev/drbd/by-res/{core.DRBD_RES}/0" in xml
        # Demoting the node under the running VM is refused, as by DRBD (device held open).
        res = lab.run(node, "drbdadm", "secondary", core.DRBD_RES, check=False)
        assert res.returncode == 11 and "(-12) Device is held open by someone" in res.stderr
    finally:
        lab.crm("resource", "stop", core.VM_NAME)
    assert queries.qemu_pids() == []


def test_simulator_two_primaries_rule_on_the_nodes(lab: LabSession) -> None:
    """The fake drbdadm on the nodes, on a resource of its own (Pacemaker's r0 is left alone)."""
    store = core.SHARED / "drbd" / "selftest.json"

    drbdsim.init_store(str(store), "t0", 7, "", [(n, core.node_ip(n)) for n in lab.names], devices=False)
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
    before = lab_nodes.on_node(victim, ["pgrep", "-x", "corosync"]).stdout.strip()
    lab.run(first, "stonith_admin", "--reboot", victim, "--timeout", "60", timeout=90)
    after = lab_nodes.on_node(victim, ["pgrep", "-x", "corosync"], check=False).stdout.strip()
    assert after != before, f"corosync of {victim} was not restarted by the fence device"
    assert "fence request: reboot" in (core.node_dir(victim) / "init.log").read_text()
    # Rejoining (corosync, pacemaker) and promotion usually take ~20 s; one CI run of many
    # needed more than 120 s for reasons not found yet, so wait longer and say what was seen.
    try:
        core.wait_for(f"{victim} back Online and promoted",
                      lambda: lab_cluster.promoted_nodes(first) == set(lab.names), 240, 1.0)
    except core.LabError as exc:
        mon = lab.run(first, "crm_mon", "-1", "-r", "-f", check=False).stdout
        drbd = lab.run(victim, "drbdadm", "status", check=False)
        pytest.fail(f"{exc}\n{mon}\n{victim}: {drbd.stdout}{drbd.stderr}\n{queries.node_diagnostics(victim)}",
                    pytrace=False)


def test_zz_down_leaves_nothing_behind(lab: LabSession) -> None:
    """Runs last in this module: tears the session lab down and compares with the machine before."""
    before = lab.before
    inodes = {os.stat("/run/netns/" + ns).st_ino for ns in os.listdir("/run/netns") if ns.startswith("lmlab-")}
    lab.down()
    after = queries.snapshot()
    for key in ("mounts", "netns", "links", "lab_dir"):
        assert sorted(set(after[key]) - set(before[key])) == [], key
    marks = ("livemig-lab", "nodeinit.py", "lmlab-")
    # Other people's processes come and go on a shared machine: only lab processes count. Every
    # daemon of a node lives in the node's network namespace (checked below).
    new_procs = [p for p in set(after["processes"]) - set(before["processes"]) if any(m in p for m in marks)]
    assert new_procs == []
    assert [p for p in lab_network.pids_in_netns(inodes)] == []
    assert [x for x in after["loops"] if str(core.LAB_DIR) in x] == []
    assert not Path("/run/livemig-lab").exists()
