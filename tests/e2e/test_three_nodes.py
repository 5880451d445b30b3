"""Three nodes under Pacemaker (docs/lab.md, issue 17): the VM live-migrated by `crm resource move`.

(a) three diskful nodes, the DRBD clone promotable with promoted-max=2 of 3 (drbd_two_primaries
unset: the `always` mode), the VM moved around every pair; (b) two diskful nodes and a diskless
tiebreaker with DRBD quorum majority, the VM moved between the diskful ones and never placed on
the tiebreaker.

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
from tests.lab.labvm import PlacementSampler, running_cluster_vm

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


def live_move(lab: LabSession, source: str, target: str) -> None:
    """`crm resource move` of the VM from ``source`` to ``target``: a live migration, the guard's
    verdict logged on the source, the constraint cleared and the VM staying."""
    assert lab_cluster.resource_nodes(lab.names[0], VM) == [source]
    rule = promote_for_move(lab, source, target)
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
    assert target in promoted(lab) and len(promoted(lab)) == 2


def drbd_json(lab: LabSession, node: str, what: str) -> dict:
    out = lab.run(node, "drbdsetup", what, core.DRBD_RES, "--json").stdout
    return json.loads(out)[0]


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
