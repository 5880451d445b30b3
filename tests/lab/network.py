"""The lab's network: one namespace per node (``lmlab-NODE``, its ``eth0`` on the lab subnet)
and ``lmlab-sw`` holding the bridge the nodes' veth peers are ports of. Nothing of it appears in
the host's network namespace; ``remove_network`` also finds namespaces ``up`` did not record."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Set

from tests.lab.core import NS_PREFIX, SWITCH_NS, node_ip, run
from tests.lab.state import LabState


def is_mount(path: str) -> bool:
    try:
        return any(line.split()[1] == path for line in Path("/proc/self/mounts").read_text().splitlines())
    except OSError:
        return False


def _netns_add(name: str, state: LabState) -> None:
    run(["ip", "netns", "add", name])
    state.netns.append(name)
    state.save()
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def setup_network(names: List[str], state: LabState) -> None:
    _netns_add(SWITCH_NS, state)
    run(["ip", "-n", SWITCH_NS, "link", "add", "br0", "type", "bridge", "stp_state", "0"])
    run(["ip", "-n", SWITCH_NS, "link", "set", "br0", "up"])
    for n in names:
        ns = NS_PREFIX + n
        _netns_add(ns, state)
        port = "p-" + n
        run(["ip", "-n", SWITCH_NS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", SWITCH_NS, "link", "set", port, "master", "br0", "up"])
        run(["ip", "-n", ns, "addr", "add", node_ip(n) + "/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])


def lab_namespaces(state: Optional[LabState]) -> List[str]:
    """Every ``lmlab-*`` network namespace: those recorded and those found in /run/netns."""
    found = {n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []) if n.startswith(NS_PREFIX)}
    return sorted(found | set(state.netns if state else []))


def _ns_inode(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def namespace_inodes(namespaces: List[str]) -> Set[int]:
    return {i for i in (_ns_inode("/run/netns/" + n) for n in namespaces) if i}


def pids_in_netns(inodes: Set[int]) -> List[int]:
    """Host PIDs (other than ours) whose network namespace is one of ``inodes``."""
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            try:
                if os.stat(f"/proc/{p}/ns/net").st_ino in inodes:
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def remove_network(namespaces: List[str], state: Optional[LabState]) -> None:
    """Delete the namespaces (their links go with them), and /run/netns if `up` made or mounted it."""
    for ns in namespaces:
        run(["ip", "netns", "delete", ns], check=False)
    if state and not state.netns_dir_was_mount and is_mount("/run/netns") and not os.listdir("/run/netns"):
        run(["umount", "/run/netns"], check=False)
    if state and not state.netns_dir_existed and os.path.isdir("/run/netns") \
            and not os.listdir("/run/netns") and not is_mount("/run/netns"):
        os.rmdir("/run/netns")
