"""The agent on two fake nodes, driven by random sequences of what Pacemaker may call (issue 13).

Pacemaker is modelled by what it believes: the node where the resource is
started (or none), and whether a failure awaits recovery. Only the actions
Pacemaker would call in that belief state are called: start where it is
believed stopped everywhere, stop and monitor where it is believed started,
a probe anywhere, migrate_to + migrate_from + stop of the source as one
migration, and after any failure the recovery: stop on every node, fencing a
node whose stop fails (its world is wiped, its /run emptied). Between actions,
faults: libvirtd hung or killed and restored, the config file missing or
different per node (with the state file lost or not), DRBD disconnected,
the peer Inconsistent or Secondary, drbdsetup hung, the target unreachable, a migration failing midway, and
timeouts of a few seconds.

After every step the oracle looks at the fake worlds, not at the agent:

* at most one active copy of the resource's domains across the nodes; a
  domain counts as a copy whenever libvirt says it is not shut off (running,
  paused, or the source of a migration in progress). The fake moves a domain
  at the end of a successful migration, so source and target never both hold
  it, post-copy included;
* stop returned 0 on a node => no domain of the resource is active there;
* monitor/probe returned 0 => one is active there; 7 => none is;
* every action returned within its OCF_RESKEY_CRM_meta_timeout;
* migrate_to returned 0 only where the node's DRBD state is safe (DRBD_STATES).

Budget: LIVEMIG_SM_EXAMPLES (default 30) sequences of at most LIVEMIG_SM_STEPS
(default 15) steps, derandomized; LIVEMIG_SM_SEED=<n> makes a randomized run
with that seed. ``make test-state-machine`` runs a larger budget.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Set

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.unit.properties.cluster_fake import DRBD_STATES, NODES, Cluster, Outcome, describe

EXAMPLES = int(os.environ.get("LIVEMIG_SM_EXAMPLES", "30"))
STEPS = int(os.environ.get("LIVEMIG_SM_STEPS", "15"))
SEED = os.environ.get("LIVEMIG_SM_SEED")

nodes = st.sampled_from(NODES)
#: short timeouts on purpose: a hung libvirtd costs the action's whole timeout in real time
timeouts = st.sampled_from([5000, 8000])
MONITOR_INTERVAL_MS = 10000


class AgentOnTwoNodes(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="livemig-sm-"))
        self.cluster = Cluster(self.root)
        #: Pacemaker's belief: where the resource is started (None: stopped everywhere)
        self.started_on: Optional[str] = None
        #: a failed action awaits recovery
        self.failed = False
        self.history: List[Outcome] = []
        self.stopped_ok: Set[str] = set()

    def teardown(self) -> None:
        self.cluster.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- calling the agent and checking each answer --------------------------------------------

    def call(self, node: str, action: str, timeout_ms: int, interval_ms: int = 0, **meta: str) -> int:
        out = self.cluster.run(node, action, timeout_ms, interval_ms, **meta)
        self.history.append(out)
        running = self.cluster.nodes[node].running()
        where = f"\n{describe(self.history)}\nworlds: {self.cluster.all_running()}\nstderr:\n{out.stderr}"
        assert out.elapsed <= out.timeout, f"{action} on {node} ran past its timeout{where}"
        if action == "stop" and out.code == 0:
            assert not running, f"stop returned 0 on {node} but {running} still active{where}"
        if action == "monitor" and out.code == 0:
            assert running, f"monitor returned 0 on {node} but nothing runs there{where}"
        if action == "monitor" and out.code == 7:
            assert not running, f"monitor returned 7 on {node} but {running} runs there{where}"
        if action == "migrate_to" and out.code == 0:
            assert DRBD_STATES[out.drbd], f"migrate_to returned 0 with DRBD {out.drbd} on {node}{where}"
        return out.code

    def stop_or_fence(self, node: str, timeout_ms: int) -> None:
        if self.call(node, "stop", timeout_ms) != 0:
            self.cluster.nodes[node].fence()

    # -- what Pacemaker calls ------------------------------------------------------------------

    @precondition(lambda self: not self.failed and self.started_on is None)
    @rule(node=nodes, timeout_ms=timeouts)
    def start(self, node: str, timeout_ms: int) -> None:
        if self.call(node, "start", timeout_ms) == 0:
            self.started_on = node
        else:
            self.failed = True

    @precondition(lambda self: not self.failed and self.started_on is not None)
    @rule(timeout_ms=timeouts)
    def stop(self, timeout_ms: int) -> None:
        assert self.started_on is not None
        self.stop_or_fence(self.started_on, timeout_ms)
        self.started_on = None

    @precondition(lambda self: not self.failed and self.started_on is not None)
    @rule(timeout_ms=timeouts)
    def monitor(self, timeout_ms: int) -> None:
        assert self.started_on is not None
        if self.call(self.started_on, "monitor", timeout_ms, MONITOR_INTERVAL_MS) != 0:
            self.failed = True

    @precondition(lambda self: not self.failed)
    @rule(node=nodes, timeout_ms=timeouts)
    def probe(self, node: str, timeout_ms: int) -> None:
        code = self.call(node, "monitor", timeout_ms)
        expected = 0 if node == self.started_on else 7
        if code != expected:
            self.failed = True

    @precondition(lambda self: not self.failed and self.started_on is not None)
    @rule(timeout_ms=timeouts)
    def migrate(self, timeout_ms: int) -> None:
        assert self.started_on is not None
        source = self.started_on
        target = self.cluster.peer(source)
        meta = {"migrate_source": source, "migrate_target": target}
        if self.call(source, "migrate_to", timeout_ms, 0, **meta) != 0:
            self.failed = True
            return
        if self.call(target, "migrate_from", timeout_ms, 0, **meta) != 0:
            self.failed = True
            return
        self.started_on = target
        self.stop_or_fence(source, timeout_ms)

    @precondition(lambda self: self.failed)
    @rule(timeout_ms=timeouts)
    def recover(self, timeout_ms: int) -> None:
        """Pacemaker's recovery: stop wherever it may run (a failed stop fences), then it is stopped."""
        for node in NODES:
            self.stop_or_fence(node, timeout_ms)
        self.started_on = None
        self.failed = False

    # -- faults ---------------------------------------------------------------------------------

    @rule(node=nodes, fault=st.sampled_from(["hang", "jobs_hang", "kill", "restore", "restore"]))
    def libvirtd(self, node: str, fault: str) -> None:
        getattr(self.cluster.nodes[node], fault)()

    @rule(node=nodes, variant=st.sampled_from(["same", "memory", "renamed", "renamed", "missing"]),
          state_lost=st.booleans())
    def config_file(self, node: str, variant: str, state_lost: bool) -> None:
        """The node's config file changes (its /etc out of sync); with state_lost, the agent's state
        file goes too (HA_RSCTMP cleaned): only the domain's own tag still says whose it is."""
        self.cluster.nodes[node].write_config(variant)
        if state_lost:
            self.cluster.nodes[node].lose_state_file()

    @rule(node=nodes, lost=st.booleans())
    def target_reachable(self, node: str, lost: bool) -> None:
        peer = self.cluster.peer(node)
        hosts = self.cluster.nodes[node].world.unreachable_hosts
        if lost:
            hosts.add(peer)
        else:
            hosts.discard(peer)

    @rule(node=nodes, error=st.sampled_from([None, "Unable to read from monitor: Connection reset by peer"]))
    def migration_fails_midway(self, node: str, error: Optional[str]) -> None:
        self.cluster.nodes[node].world.migration["error"] = error

    @rule(node=nodes, seconds=st.sampled_from([0.0, 0.0, 1.0, 30.0]))
    def migration_duration(self, node: str, seconds: float) -> None:
        """How long the next migration from this node takes (30 s: past any timeout here)."""
        self.cluster.nodes[node].world.migration["duration"] = seconds

    @rule(node=nodes, state=st.sampled_from(sorted(DRBD_STATES) + ["derived-dual-primary"] * 3))
    def drbd_state(self, node: str, state: str) -> None:
        """DRBD changes under the agent: disconnected, the peer Inconsistent or Secondary, tools hung."""
        self.cluster.nodes[node].drbd = state

    # -- the oracle after every step -------------------------------------------------------------

    @invariant()
    def at_most_one_copy(self) -> None:
        copies = [(node, name) for node, names in self.cluster.all_running().items() for name in names]
        assert len(copies) <= 1, f"{len(copies)} active copies {copies}\n{describe(self.history)}"


_settings = dict(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None)
if SEED is None:
    _settings["derandomize"] = True
AgentOnTwoNodes.TestCase.settings = settings(**_settings)  # type: ignore[arg-type]
TestAgentOnTwoNodes = AgentOnTwoNodes.TestCase
if SEED is not None:
    from hypothesis import seed

    TestAgentOnTwoNodes = seed(int(SEED))(TestAgentOnTwoNodes)
