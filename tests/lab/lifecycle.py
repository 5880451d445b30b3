"""``up`` and ``down``: the order in which the lab's parts are built, and torn down in reverse.

``down`` also works without the state file (after a failed ``up``): it discovers ``lmlab-*``
namespaces, the processes inside them and loop devices backed by files under the lab directory.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Sequence

from tests.lab import cluster, network, nodes, queries, storage
from tests.lab.core import DRBD_RES, LAB_DIR, LOWER_ROOT, LabError, log, node_names, wait_for
from tests.lab.state import LabState, load_state


def up(count: int = 2, configure: bool = True, vm: bool = True, diskless: Sequence[str] = (),
       drbd_quorum: str = "", two_primaries: str = "always") -> LabState:
    """Build the lab: ``count`` nodes (2 or 3), ``diskless`` of them without a DRBD backing disk
    (a tiebreaker: never promoted, never running the VM), DRBD resource option quorum
    ``drbd_quorum`` (e.g. "majority"; "" leaves it off), the VM's ``two_primaries`` mode
    ("always": a promotable DRBD clone, promoted-max=2; "migration": no clone, DRBD up at each
    node's boot, allow-two-primaries off in its configuration)."""
    if two_primaries not in ("always", "migration"):
        raise LabError(f"two_primaries {two_primaries}: always or migration")
    names = node_names(count)
    diskless = sorted(set(diskless))
    unknown = [n for n in diskless if n not in names]
    if unknown:
        raise LabError("diskless {}: no such node (nodes: {})".format(", ".join(unknown), ", ".join(names)))
    if len(names) - len(diskless) < 2:
        raise LabError("the lab's VM migrates between diskful nodes: at least two must keep their disk")
    if LAB_DIR.exists():
        raise LabError(f"{LAB_DIR} exists: the lab is already up (or left over): run `lab down` first")
    if LOWER_ROOT and not (Path(LOWER_ROOT) / "usr/sbin/pacemakerd").exists():
        raise LabError(f"LIVEMIG_LAB_ROOT={LOWER_ROOT} is no root file system with Pacemaker (no usr/sbin/pacemakerd)")
    LAB_DIR.mkdir(mode=0o755)
    state = LabState(names=names, netns_dir_existed=os.path.isdir("/run/netns"),
                     netns_dir_was_mount=network.is_mount("/run/netns"), started=time.time(),
                     lower_root=LOWER_ROOT, diskless=diskless, drbd_quorum=drbd_quorum,
                     two_primaries=two_primaries)
    state.save()
    try:
        log("preparing shared storage and node files" + (f" (nodes on {LOWER_ROOT})" if LOWER_ROOT else ""))
        storage.prepare_shared(names, state, vm, diskless, drbd_quorum, two_primaries)
        for n in names:
            nodes.prepare_node_files(n, names, cluster.corosync_conf(names))
        network.setup_network(names, state)
        for n in names:
            nodes.start_holder(n, state)
            log(f"{n}: namespaces ready (PID 1 = host pid {state.holders[n]})")
        for n in names:
            nodes.start_daemons(n, state)
        log("daemons started; waiting for libvirtd (QEMU capabilities probe) and the cluster")
        for n in names:
            wait_for(f"libvirtd on {n}", lambda n=n: nodes.libvirt_ready(n, state), 120, 0.5)
            log(f"{n}: libvirtd answers")
        wait_for("all nodes Online with a DC", lambda: cluster.cluster_online(names[0], names, state), 180, 1.0)
        log("cluster: {} Online, DC elected".format(", ".join(names)))
        if configure:
            state.crm_commands = cluster.configure_cluster(names, state, vm, diskless)
            state.save()
            if two_primaries == "migration":
                wait_for(f"{DRBD_RES} Connected everywhere, Secondary", lambda: cluster.drbd_idle(state), 60, 0.5)
                log(f"cluster configured; {DRBD_RES} up on every node, Secondary, no DRBD clone")
            else:
                want = cluster.expected_promoted(names, diskless)
                promoted = wait_for(f"drbd clone promoted on {want} diskful nodes",
                                    lambda: _promoted(state, want), 120, 1.0)
                log("cluster configured; drbd-{} promoted on {}".format(DRBD_RES, ", ".join(sorted(promoted))))
        state.ready = True
        state.save()
        return state
    except BaseException:
        log("lab up failed: tearing down what was started")
        keep_logs = os.environ.get("LIVEMIG_LAB_KEEP_LOGS_ON_FAILURE")
        if keep_logs:
            queries.collect_logs(Path(keep_logs))
        down()
        raise


def _promoted(state: LabState, want: int) -> set:
    """The promoted nodes once there are ``want`` of them, none of them diskless (else empty)."""
    found = cluster.promoted_nodes(state.names[0], state)
    return found if len(found) == want and not found & set(state.diskless) else set()


def down(timeout: float = 30) -> None:
    """Remove everything the lab created; safe to call at any time, also twice."""
    state = load_state()
    namespaces = network.lab_namespaces(state)
    inodes = network.namespace_inodes(namespaces)
    # 1. Every process of the nodes.
    nodes.stop_nodes(state, lambda: network.pids_in_netns(inodes), timeout)
    # 2. Network namespaces (their links go with them).
    network.remove_network(namespaces, state)
    # 3. Loop devices backed by lab files.
    storage.release_loops()
    # 4. The lab directory.
    if LAB_DIR.exists():
        shutil.rmtree(str(LAB_DIR))
