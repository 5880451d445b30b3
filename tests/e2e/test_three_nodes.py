"""Three nodes under Pacemaker (docs/lab.md, issue 17): the VM live-migrated by `crm resource move`.

(a) three diskful nodes, the DRBD clone promotable with promoted-max=2 of 3 (drbd_two_primaries
unset: the `always` mode), the VM moved around every pair; (b) two diskful nodes and a diskless
tiebreaker with DRBD quorum majority, the VM moved between the diskful ones and never placed on
the tiebreaker; (c) drbd_two_primaries=migration on three nodes: no DRBD clone, two primaries
allowed on the one connection for the length of each move only, and the window closed again
after an abort at the deadline and after the target is lost during it.

With promoted-max=2 of 3 the target of a move may be Unpromoted. Pacemaker 2.1.5 then does not
migrate: promoting the target and demoting the third node in the same transition as the move
makes it stop and start the VM ("Move lmvm1 ... due to unrunnable drbd-r0-clone demote", seen in
this lab). So, as an operator would, each move to an Unpromoted node is prepared by a location
with role=Promoted for the target (Pacemaker promotes it and demotes the third node, the VM
untouched), and removed once the VM has arrived.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple

from tests.lab import cluster as lab_cluster
from tests.lab import core, queries
from tests.lab.labfixtures import LabSession
from tests.lab.labvm import DIRECT, Background, PlacementSampler, RoleSampler, domain_nodes, running_cluster_vm

VM = core.VM_NAME
CLONE = f"drbd-{core.DRBD_RES}-clone"


def boots() -> int:
    return Path(core.console_log_path()).read_bytes().count(b"LIVEMIG-GUEST-READY")


def promoted(lab: LabSession) -> set:
    return lab_cluster.promoted_nodes(lab.names[0])


def promote_for_move(lab: LabSession, source: str, target: str) -> Optional[str]:
    """Get ``target`` promoted beside ``source`` before the move (see the module's docstring);
    the id of the location that did it, or None when it already was."""
    if target in promoted(lab):
        return None
    rule = f"{CLONE}-promoted-on-{target}"
    lab.crm("configure", "location", rule, CLONE, "rule", "role=Promoted", "inf:", "#uname", "eq", target)
    core.wait_for(f"{CLONE} promoted on {source} and {target}",
                  lambda: promoted(lab) == {source, target}, timeout=90, interval=0.5)
    return rule


def live_move(lab: LabSession, source: str, target: str, window: bool = False) -> None:
    """`crm resource move` of the VM from ``source`` to ``target``: a live migration, the guard's
    verdict logged on the source, the constraint cleared and the VM staying. ``window``:
    drbd_two_primaries=migration (no clone to promote; the window's lines logged, then the
    target the only Primary and the allowance off everywhere)."""
    assert lab_cluster.resource_nodes(lab.names[0], VM) == [source]
    rule = None if window else promote_for_move(lab, source, target)
    ops_before = len(queries.agent_ops(VM))
    said_before = len(queries.agent_messages(source))
    lab.crm("resource", "move", VM, target)
    try:
        assert lab_cluster.wait_resource_on(lab.names[0], VM, target, timeout=120) == target
    finally:
        lab.crm("resource", "clear", VM)
        if rule:
            lab.crm("configure", "delete", rule)
    ops = [(o["node"], o["action"], o["rc"]) for o in queries.agent_ops(VM)[ops_before:] if o["action"] != "monitor"]
    assert (source, "migrate_to", 0) in ops and (target, "migrate_from", 0) in ops, ops
    assert not [o for o in ops if o[1] in ("start", "migrate_to") and o != (source, "migrate_to", 0)], ops
    said = queries.agent_messages(source)[said_before:]
    assert f"INFO: DRBD guard: migrating to {target} is safe for {core.DRBD_RES}" in said, said
    assert [m for m in said if m.startswith(f"INFO: live migration of {VM} to {target} completed")], said
    # Cleared, the VM stays where it went (stickiness), on one node, promoted there.
    assert lab_cluster.resource_nodes(lab.names[0], VM) == [target]
    if window:
        peer = f"{core.DRBD_RES} (peer {target})"
        assert f"INFO: two primaries allowed for the migration to {target} on {peer}" in said, said
        assert f"INFO: two primaries no longer allowed on {peer}" in said, said
        assert primaries(lab) == [target]
        assert allowances(lab) == [], allowances(lab)
    else:
        assert target in promoted(lab) and len(promoted(lab)) == 2


def drbd_json(lab: LabSession, node: str, what: str) -> dict:
    out = lab.run(node, "drbdsetup", what, core.DRBD_RES, "--json").stdout
    return json.loads(out)[0]


def primaries(lab: LabSession) -> List[str]:
    """The nodes where DRBD says the resource is Primary (each node's own drbdsetup)."""
    return [n for n in lab.names if lab.run(n, "drbdsetup", "role", core.DRBD_RES, check=False).stdout.strip()
            == "Primary"]


def allowances(lab: LabSession) -> List[str]:
    """Every connection, on every node that has the resource up, where `drbdsetup show --json` has
    allow-two-primaries on at runtime, as "NODE->PEER"."""
    found = []
    for node in lab.names:
        out = lab.run(node, "drbdsetup", "show", core.DRBD_RES, "--json", check=False)
        if out.returncode != 0 or not out.stdout.strip():
            continue  # not up there (a node lost)
        for conn in json.loads(out.stdout)[0].get("connections", []):
            if conn.get("net", {}).get("allow-two-primaries") in (True, "yes"):
                found.append(f"{node}->{conn.get('net', {}).get('_name', conn.get('_peer_node_id'))}")
    return found


# -- (a) three diskful nodes, promoted-max=2 of 3 ---------------------------------------------------


def test_vm_live_migrates_between_each_pair_of_three_diskful_nodes(lab_three: LabSession) -> None:
    lab = lab_three
    assert len(lab.names) == 3 and lab.diskful == lab.names
    assert len(promoted(lab)) == 2  # promoted-max=2 of 3
    with running_cluster_vm(lab) as first:
        a = first
        b, c = [n for n in lab.names if n != a]
        booted = boots()
        pairs: List[Tuple[str, str]] = [(a, b), (b, c), (c, a)]
        with PlacementSampler(lab) as seen:
            for source, target in pairs:
                live_move(lab, source, target)
        assert seen.samples > 0
        assert seen.max_running == 1, "the VM ran on two nodes at once"
        assert seen.max_qemus <= 2  # source and incoming target during a migration, never more
        assert seen.running_on == set(lab.names), seen.running_on  # it really visited every node
        assert boots() == booted  # live each time: the guest never rebooted
        assert queries.qemu_pids() and len(queries.qemu_pids()) == 1
        assert lab_cluster.resource_nodes(lab.names[0], VM) == [a]


# -- (b) two diskful nodes and a diskless tiebreaker, quorum majority --------------------------------


def test_tiebreaker_is_diskless_with_quorum_and_never_gets_the_vm(lab_tiebreaker: LabSession) -> None:
    lab = lab_tiebreaker
    tiebreaker = "node3"
    assert lab.diskful == ["node1", "node2"]
    status = drbd_json(lab, tiebreaker, "status")
    assert status["role"] == "Secondary" and status["devices"][0]["disk-state"] == "Diskless", status
    assert promoted(lab) == {"node1", "node2"}
    with running_cluster_vm(lab) as first:
        assert first != tiebreaker
        other = next(n for n in lab.diskful if n != first)
        booted = boots()
        ops_before = len(queries.agent_ops(VM))
        with PlacementSampler(lab) as seen:
            live_move(lab, first, other)
            live_move(lab, other, first)
            # Asked to go to the tiebreaker, Pacemaker keeps it off (-inf beats the move's inf).
            lab.crm("resource", "move", VM, tiebreaker)
            try:
                assert lab_cluster.resource_nodes(lab.names[0], VM) == [first]
            finally:
                lab.crm("resource", "clear", VM)
        assert seen.samples > 0 and seen.max_running == 1
        assert tiebreaker not in seen.qemu_on and tiebreaker not in seen.running_on
        assert seen.running_on == {first, other}
        ops = [o for o in queries.agent_ops(VM)[ops_before:] if o["node"] == tiebreaker]
        assert ops == [], ops
        assert boots() == booted
        assert promoted(lab) == {"node1", "node2"}
        assert drbd_json(lab, tiebreaker, "status")["role"] == "Secondary"
    # DRBD's quorum as the simulator shows it on every node: configured, and held throughout.
    for node in lab.names:
        assert drbd_json(lab, node, "show").get("options", {}).get("quorum") == "majority", node
        assert drbd_json(lab, node, "status")["devices"][0]["quorum"] is True, node


# -- (c) drbd_two_primaries=migration on three nodes ------------------------------------------------

MODE = {"drbd_two_primaries": "migration"}


def test_migration_mode_allows_two_primaries_only_during_each_move(lab_window: LabSession) -> None:
    lab = lab_window
    assert lab_cluster.promoted_nodes(lab.names[0]) == set()  # no DRBD clone in this mode
    assert allowances(lab) == []  # allow-two-primaries no in the configuration
    with running_cluster_vm(lab) as a:
        assert primaries(lab) == [a]  # the agent's start made its node Primary
        b, c = [n for n in lab.names if n != a]
        booted = boots()
        with RoleSampler(lab) as roles, PlacementSampler(lab) as seen:
            for source, target in ((a, b), (b, c), (c, a)):
                live_move(lab, source, target, window=True)
        assert roles.samples > 0 and roles.outside == [], roles.outside
        assert roles.max_primaries == 2 and roles.two_primaries > 0  # the window opened each time...
        assert seen.max_running == 1 and seen.running_on == set(lab.names)
        assert boots() == booted
        assert primaries(lab) == [a] and allowances(lab) == []
    # The VM stopped: its node Secondary again, nobody Primary.
    assert primaries(lab) == []


def test_migration_mode_abort_at_the_deadline_closes_the_window(lab_window: LabSession, drbd_direct_vm) -> None:
    lab = lab_window
    n1, n2 = lab.names[:2]
    vm = drbd_direct_vm(dirty_mib_s=40, **MODE)
    vm.start(n1)
    assert primaries(lab) == [n1]
    with RoleSampler(lab) as roles:
        res = vm.migrate(n1, n2, timeout_s=25, migration_speed="2", migration_progress_interval="2")
    assert res.code == 1, res.stderr
    assert res.exit_reason.startswith(f"migration to {n2} aborted at its"), res.exit_reason
    assert roles.two_primaries > 0, "the target was never promoted: the window did not open"
    assert roles.outside == [], roles.outside
    # One Primary (the source, where the VM still runs), the allowance off, no marker left.
    assert domain_nodes(lab, DIRECT) == [n1]
    assert primaries(lab) == [n1]
    assert allowances(lab) == []
    assert all(queries.window_markers(n) == [] for n in lab.names)


def test_migration_mode_target_lost_during_the_window(lab_window: LabSession, drbd_direct_vm) -> None:
    lab = lab_window
    n1, n2 = lab.names[:2]
    vm = drbd_direct_vm(dirty_mib_s=20, **MODE)
    vm.start(n1)
    job = Background(lambda: vm.migrate(n1, n2, timeout_s=40, migration_speed="2"))
    # The window open and the target promoted by its hook: then the target loses power.
    core.wait_for("two primaries for the migration", lambda: sorted(
        n for n, r in queries.drbd_roles().items() if r == "Primary") == sorted([n1, n2]), timeout=30, interval=0.05)
    lab.run(n1, "stonith_admin", "--reboot", n2, "--timeout", "60", timeout=90)
    res = job.join(90)
    assert res.code == 1, res.stderr
    assert f"{DIRECT} still runs on" in res.exit_reason, res.exit_reason
    assert domain_nodes(lab, DIRECT) == [n1]
    assert primaries(lab) == [n1]
    assert allowances(lab) == []  # closed on the survivor
    assert queries.window_markers(n1) == []
    # The target back (its DRBD up at boot): Secondary, its side of every connection closed too.
    core.wait_for(f"{n2} back Online with {core.DRBD_RES} Connected", lambda: lab_cluster.cluster_online(
        n1, lab.names, lab.state) and lab.run(n2, "drbdadm", "cstate", core.DRBD_RES, check=False).stdout.split()
        == ["Connected", "Connected"], timeout=240, interval=1.0)
    assert primaries(lab) == [n1]
    assert allowances(lab) == []
