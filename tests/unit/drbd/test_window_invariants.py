"""drbd_two_primaries=migration over generated sequences of migrations, faults and recoveries.

The code under test is the agent's DRBD policy (guard, window, roles) on the source and the
libvirt hook on the target, talking to the lab's DRBD simulator (DRBD's formats, rules and
exit codes) in-process. The oracle reads the simulator's own answers as plain JSON, with none
of livemig's parsers, and checks the promises:

- never two Primaries outside a migration between exactly those two nodes;
- after every migration that ran to its end (success or failure, faults included) and after
  Pacemaker's recovery of one that was cut short: exactly one Primary, the node that runs the
  VM, and no connection that allows two primaries on either side.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livemig.agents.libvirt_hook import Hook, HookRefusal
from livemig.agents.virtualdomain.drbd import DrbdPolicy
from livemig.ocf.deadline import Deadline
from livemig.ocf.errors import GenericError
from tests.support.drbdworld import DOMAIN_XML, DrbdWorld

LOG = logging.getLogger("test.window")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALUES = {"drbd_guard": "auto", "drbd_resources": "", "drbd_peer_names": "", "drbd_wait": "0",
          "drbd_two_primaries": "migration", "drbd_allow_two_node_quorum": True}
STEPS = ("open", "hook", "job", "close")
FAULTS = ("none", "kill", "link-down", "net-options-fails")


# -- the oracle: the simulator's answers as plain JSON --------------------------------------


def roles(world: DrbdWorld) -> Dict[str, str]:
    found = {}
    for name, node in world.nodes.items():
        doc = json.loads(node.tool(["drbdsetup", "status", "--json"]).stdout or "[]")
        found[name] = doc[0]["role"] if doc else "down"
    return found


def allowances(world: DrbdWorld) -> Set[Tuple[str, int]]:
    """(node, peer id) of every connection whose runtime settings allow two primaries."""
    found = set()
    for name, node in world.nodes.items():
        doc = json.loads(node.tool(["drbdsetup", "show", "--json"]).stdout or "[]")
        for res in doc:
            for conn in res.get("connections", []):
                if conn.get("net", {}).get("allow-two-primaries") in (True, "yes"):
                    found.add((name, conn["_peer_node_id"]))
    return found


def primaries(world: DrbdWorld) -> List[str]:
    return sorted(n for n, r in roles(world).items() if r == "Primary")


# -- the cluster as Pacemaker drives it ---------------------------------------------------------


class Cluster:
    def __init__(self, tmp: Path, nodes: List[str]) -> None:
        self.world = DrbdWorld(tmp, nodes)
        self.tmp = tmp
        self.vm: Optional[str] = None

    def policy(self, node: str) -> DrbdPolicy:
        return DrbdPolicy(VALUES, DOMAIN_XML, self.world.nodes[node], Deadline(20), LOG,
                          marker_path=str(self.tmp / f"window-{node}.json"))

    def hook(self, node: str) -> Hook:
        hook = Hook(self.world.nodes[node], Deadline(15), str(self.tmp / f"hook-{node}"))
        return hook

    def on(self, node: str, fn: Any, *args: Any) -> Any:
        with self.world.as_node(node):
            return fn(*args)

    def start(self, node: str) -> None:
        self.on(node, self.policy(node).check_start)
        self.vm = node

    def stop(self, node: str) -> None:
        self.on(node, self.policy(node).release_after_stop)
        if self.vm == node:
            self.vm = None

    def monitor(self, node: str) -> None:
        self.on(node, self.policy(node).check_monitor)

    def migrate(self, target: str, fault: str, at: str, succeed: bool) -> str:
        """One migrate_to; returns "done" (it ran to its end) or "cut" (the agent was killed)."""
        source = self.vm
        assert source is not None
        policy = self.policy(source)
        try:
            self.on(source, policy.guard, target)
        except GenericError:
            return "done"  # refused: nothing was touched
        for step in STEPS:
            if step == at and fault == "kill":
                return "cut"
            if step == at and fault == "link-down":
                self.world.sim(["link", "r0", source, target, "down"])
            if step == at and fault == "net-options-fails":
                self.world.sim(["fail-net-options", source, "on"])
            try:
                if step == "open":
                    self.on(source, policy.open_window, target)
                elif step == "hook":
                    self.on(target, self.hook(target).incoming, "vm1", DOMAIN_XML)
                elif step == "job":
                    if not succeed or self.link_down(source, target):
                        # (the watch aborts the job when the connection to the target drops)
                        raise GenericError("the migration job failed")
                    self.vm = target
                elif step == "close":
                    self.on(source, policy.close_window, True, Deadline(5))
            except (GenericError, HookRefusal):
                if step == "close":
                    break  # the VM moved: migrate_to logs it and succeeds; the next action closes it
                if step in ("hook", "job"):
                    self.on(target, self.hook(target).released, "vm1")  # the target's QEMU ended
                try:
                    self.on(source, policy.close_window, False, Deadline(5))
                except GenericError:
                    pass
                break
        return "done"

    def link_down(self, a: str, b: str) -> bool:
        doc = json.loads(self.world.nodes[a].tool(["drbdsetup", "status", "--json"]).stdout or "[]")
        conns = doc[0].get("connections", []) if doc else []
        return not any(c.get("name") == b and c.get("connection-state") == "Connected" for c in conns)

    def heal(self) -> None:
        for a in self.world.names:
            for b in self.world.names:
                if a < b:
                    self.world.sim(["link", "r0", a, b, "up"])
        for n in self.world.names:
            self.world.sim(["fail-net-options", n, "off"])


def assert_quiet(cluster: Cluster) -> None:
    assert primaries(cluster.world) == ([cluster.vm] if cluster.vm else []), roles(cluster.world)
    assert not allowances(cluster.world), allowances(cluster.world)


MIGRATION = st.tuples(st.integers(0, 2), st.sampled_from(FAULTS), st.sampled_from(STEPS), st.booleans())


@SETTINGS
@given(nodes=st.sampled_from([2, 3]), migrations=st.lists(MIGRATION, min_size=1, max_size=6))
def test_two_primaries_only_inside_a_migration(tmp_path_factory: Any, nodes: int,
                                               migrations: List[Tuple[int, str, str, bool]]) -> None:
    names = ["alpha", "beta", "gamma"][:nodes]
    cluster = Cluster(tmp_path_factory.mktemp("w"), names)
    cluster.start("alpha")
    assert_quiet(cluster)
    for pick, fault, at, succeed in migrations:
        others = [n for n in names if n != cluster.vm]
        target = others[pick % len(others)]
        source = cluster.vm
        assert source is not None
        outcome = cluster.migrate(target, fault, at, succeed)
        if len(primaries(cluster.world)) > 1:
            assert set(primaries(cluster.world)) == {source, target}
        cluster.heal()
        if outcome == "cut":
            # migrate_to killed (its timeout): Pacemaker stops the resource on the target and on
            # the source, then starts it again. The target's hook ran when its QEMU ended.
            cluster.on(target, cluster.hook(target).released, "vm1")
            cluster.stop(target)
            cluster.stop(source)
            cluster.start(source)
        else:
            cluster.monitor(cluster.vm or source)
        assert_quiet(cluster)
