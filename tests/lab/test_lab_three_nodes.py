"""Lab self-tests of the three-node labs (root): three diskful nodes, and two with a diskless
tiebreaker (labfixtures: ``lab_three``, ``lab_tiebreaker``; each built once per session)."""

from __future__ import annotations

import json
import re

import pytest

from tests.lab import cluster as lab_cluster
from tests.lab import core, lifecycle
from tests.lab import nodes as lab_nodes
from tests.lab.labfixtures import LabSession


def test_up_refuses_a_diskless_node_it_does_not_have_or_one_diskful_node() -> None:
    with pytest.raises(core.LabError, match="diskless node4: no such node"):
        lifecycle.up(3, diskless=["node4"])
    with pytest.raises(core.LabError, match="at least two must keep their disk"):
        lifecycle.up(2, diskless=["node2"])


def test_three_nodes_form_a_three_vote_quorum_and_promote_two(lab_three: LabSession) -> None:
    lab = lab_three
    assert lab.names == ["node1", "node2", "node3"]
    assert lab_cluster.cluster_online(lab.names[0], lab.names, lab.state)
    for node in lab.names:
        conf = lab.run(node, "cat", "/etc/corosync/corosync.conf").stdout
        assert "two_node" not in conf and conf.count("nodeid:") == 3
        quorum = lab.run(node, "corosync-quorumtool", "-s").stdout
        assert re.search(r"Expected votes:\s+3\b", quorum) and re.search(r"Total votes:\s+3\b", quorum), quorum
        assert "2Node" not in quorum and "Quorate" in quorum, quorum
        # The simulated resource is up on every node, one connection per peer.
        status = json.loads(lab.run(node, "drbdsetup", "status", core.DRBD_RES, "--json").stdout)[0]
        assert status["devices"][0]["disk-state"] == "UpToDate"
        assert sorted(c["name"] for c in status["connections"]) == sorted(set(lab.names) - {node})
        assert {c["connection-state"] for c in status["connections"]} == {"Connected"}
    assert len(lab_cluster.promoted_nodes(lab.names[0])) == 2  # promoted-max=2 of 3


def test_every_node_has_the_libvirt_hook_when_the_tree_has_one(lab_three: LabSession) -> None:
    hook = lab_nodes.repo_hook()
    path = "/etc/" + lab_nodes.HOOK_PATH
    for node in lab_three.names:
        found = lab_three.run(node, "cat", path, check=False)
        if hook is not None:
            # The tree's hook, with the node's DRBD variables that libvirt's clean environment lacks.
            assert f" {hook} " in found.stdout, (node, found.stdout, found.stderr)
            assert f"LIVEMIG_PROC_DRBD={core.proc_drbd_path(node)}" in found.stdout, found.stdout
            assert f"LIVEMIG_LAB_NODE={node}" in found.stdout, found.stdout
            # Executable, and run as libvirtd runs it (clean environment) for an operation it ignores.
            ran = lab_three.run(node, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", path, "x", "prepare", "begin",
                                "-", check=False)
            assert ran.returncode == 0 and ran.stdout == "", (node, ran.stdout, ran.stderr)
        else:
            assert found.returncode != 0, f"{node} has a hook the working tree does not: {found.stdout}"
        # Never an OCF agent, whatever agents/ holds.
        agents = lab_three.run(node, "ls", "/usr/lib/ocf/resource.d/livemig").stdout.split()
        assert "VirtualDomain" in agents and lab_nodes.HOOK_EXECUTABLE not in agents


def test_tiebreaker_is_diskless_and_never_promoted(lab_tiebreaker: LabSession) -> None:
    lab = lab_tiebreaker
    assert lab.diskful == ["node1", "node2"]
    tiebreaker = json.loads(lab.run("node3", "drbdsetup", "status", core.DRBD_RES, "--json").stdout)[0]
    assert tiebreaker["devices"][0]["disk-state"] == "Diskless" and tiebreaker["role"] == "Secondary"
    peers = {c["name"]: c["peer_devices"][0]["peer-disk-state"] for c in tiebreaker["connections"]}
    assert peers == {"node1": "UpToDate", "node2": "UpToDate"}
    seen = json.loads(lab.run("node1", "drbdsetup", "status", core.DRBD_RES, "--json").stdout)[0]
    assert {c["name"]: c["peer_devices"][0]["peer-disk-state"] for c in seen["connections"]}["node3"] == "Diskless"
    assert lab_cluster.promoted_nodes(lab.names[0]) == {"node1", "node2"}
    # No promotion score where there is no disk (the lab's drbd agent, as linbit's).
    score = lab.run("node1", "crm_attribute", "-N", "node3", "-n", "master-drbd-r0", "-l", "reboot", "-G", "-q",
                    check=False)
    assert score.returncode != 0 or not score.stdout.strip(), score.stdout
    cib = lab.run("node1", "cibadmin", "-Q", "-o", "constraints").stdout
    assert 'id="lmvm1-avoids-node3"' in cib and 'score="-INFINITY"' in cib and 'node="node3"' in cib, cib
