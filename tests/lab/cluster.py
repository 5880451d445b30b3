"""The lab's cluster: corosync.conf, the Pacemaker configuration typed as crm commands on the
first node, and crm_mon queries (who is Online, the DC, where a resource runs, what is promoted)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Sequence

from tests.lab.core import (
    CLUSTER_NAME,
    DRBD_RES,
    FENCING,
    PY,
    REPO,
    VM_NAME,
    LabError,
    log,
    node_ip,
    run,
    vm_config_path,
    wait_for,
)
from tests.lab.nodes import on_node
from tests.lab.state import LabState


def corosync_conf(names: List[str]) -> str:
    nodes = "".join(
        f"    node {{\n        ring0_addr: {node_ip(n)}\n        name: {n}\n        nodeid: {i + 1}\n    }}\n"
        for i, n in enumerate(names))
    two_node = "    two_node: 1\n" if len(names) == 2 else ""
    return (
        f"totem {{\n    version: 2\n    cluster_name: {CLUSTER_NAME}\n    transport: knet\n"
        "    crypto_cipher: none\n    crypto_hash: none\n    token: 3000\n}\n"
        "logging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n"
        "    to_syslog: no\n    to_stderr: no\n    timestamp: on\n}\n"
        f"quorum {{\n    provider: corosync_votequorum\n{two_node}}}\n"
        f"nodelist {{\n{nodes}}}\n")


def vm_agent() -> str:
    """ocf:livemig:VirtualDomain once the working tree's agent answers meta-data, else heartbeat's."""
    forced = os.environ.get("LIVEMIG_LAB_VM_AGENT")
    if forced:
        return forced
    res = run([PY, str(REPO / "agents" / "VirtualDomain"), "meta-data"], check=False, timeout=30)
    if res.returncode == 0 and "<resource-agent" in res.stdout:
        return "ocf:livemig:VirtualDomain"
    why = (res.stderr.strip().splitlines() or ["?"])[-1]
    log(f"WARNING: agents/VirtualDomain meta-data fails ({why}); using ocf:heartbeat:VirtualDomain")
    return "ocf:heartbeat:VirtualDomain"


PROMOTED_MAX = 2


def vm_avoids_id(node: str) -> str:
    return f"{VM_NAME}-avoids-{node}"


def configure_cluster(names: List[str], state: LabState, vm: bool = True, diskless: Sequence[str] = ()) -> List[str]:
    """The configuration an administrator would type, one crm command per line.

    Three nodes keep promoted-max=2 (two Primaries at most: a live migration's source and target);
    a ``diskless`` node (a DRBD tiebreaker) is kept from running the VM by a -inf location, as
    ``livemig config`` writes it for a node without the data. With ``state.two_primaries``
    "migration" Pacemaker manages no DRBD clone (each node brings the resource up at boot,
    nodes.boot_sh) and the VM's agent makes its node Primary (drbd_two_primaries=migration).
    """
    window = state.two_primaries == "migration"
    first = names[0]
    fence_hosts = ",".join(names)
    agent = vm_agent()
    state.vm_agent = agent
    # Fencing first: crmsh 5 (Debian 13) verifies the whole CIB at every commit and refuses one
    # with fencing enabled and no fencing device; crmsh 4 only warned.
    if FENCING:
        cmds = ["crm configure primitive lab-fence stonith:fence_livemiglab "
                f"params pcmk_host_list={fence_hosts} op monitor interval=60s",
                "crm configure property stonith-enabled=true stonith-timeout=30s"]
    else:
        cmds = ["crm configure property stonith-enabled=false"]
    cmds += [
        f"crm configure property cluster-name={CLUSTER_NAME}",
        "crm configure rsc_defaults resource-stickiness=100",
    ]
    if not window:
        cmds += [
            f"crm configure primitive drbd-{DRBD_RES} ocf:livemiglab:drbd params drbd_resource={DRBD_RES} "
            "op monitor interval=15s role=Promoted op monitor interval=17s role=Unpromoted",
            f"crm configure clone drbd-{DRBD_RES}-clone drbd-{DRBD_RES} meta promotable=true "
            f"promoted-max={PROMOTED_MAX} promoted-node-max=1 clone-max={len(names)} clone-node-max=1 "
            "notify=true interleave=true",
        ]
    if vm:
        cmds += [
            f"crm configure primitive {VM_NAME} {agent} params config={vm_config_path()} "
            "hypervisor=qemu:///system migration_transport=tcp"
            + (" drbd_two_primaries=migration" if window else "") + " "
            "meta allow-migrate=true target-role=Stopped "
            "op monitor interval=10s timeout=30s op start timeout=90s op stop timeout=90s "
            "op migrate_to timeout=120s op migrate_from timeout=60s",
        ]
        if not window:
            cmds += [
                f"crm configure colocation {VM_NAME}-with-drbd inf: {VM_NAME} drbd-{DRBD_RES}-clone:Promoted",
                f"crm configure order drbd-promote-before-{VM_NAME} Mandatory: drbd-{DRBD_RES}-clone:promote "
                f"{VM_NAME}:start",
            ]
        cmds += [f"crm configure location {vm_avoids_id(n)} {VM_NAME} -inf: {n}" for n in diskless]
    for c in cmds:
        log(f"{first}$ {c}")
        on_node(first, c.split(), state=state, timeout=90)
    return cmds


# --------------------------------------------------------------------------- crm_mon


def drbd_idle(state: LabState) -> bool:
    """Every node's DRBD resource up, Secondary, Connected to every peer (drbdsetup on each node)."""
    for n in state.names:
        out = on_node(n, ["drbdsetup", "status", DRBD_RES, "--json"], check=False, timeout=20, state=state)
        if out.returncode != 0:
            return False
        res = json.loads(out.stdout)[0]
        if res["role"] != "Secondary" or len(res["connections"]) != len(state.names) - 1 or \
                any(c["connection-state"] != "Connected" for c in res["connections"]):
            return False
    return True


def expected_promoted(names: Sequence[str], diskless: Sequence[str]) -> int:
    """How many clone instances Pacemaker promotes once the lab is up (the diskful, up to promoted-max)."""
    return min(PROMOTED_MAX, len([n for n in names if n not in diskless]))


def crm_mon_xml(name: str, state: Optional[LabState] = None) -> ET.Element:
    out = on_node(name, ["crm_mon", "-1", "--output-as=xml"], check=False, timeout=30, state=state)
    if not out.stdout.strip():
        raise LabError(f"crm_mon on {name}: {out.stderr.strip()}")
    return ET.fromstring(out.stdout)


def cluster_online(name: str, names: List[str], state: LabState) -> bool:
    root = crm_mon_xml(name, state)
    dc = root.find("summary/current_dc")
    if dc is None or dc.get("present") != "true":
        return False
    online = {n.get("name") for n in root.iter("node") if n.get("online") == "true"}
    return set(names) <= online


def promoted_nodes(first: str, state: Optional[LabState] = None) -> set:
    root = crm_mon_xml(first, state)
    out = set()
    for res in root.iter("resource"):
        if res.get("id", "").startswith(f"drbd-{DRBD_RES}") and res.get("role") in ("Promoted", "Master"):
            for node in res.findall("node"):
                out.add(node.get("name"))
    return out


def resource_nodes(first: str, rsc: str, state: Optional[LabState] = None) -> List[str]:
    root = crm_mon_xml(first, state)
    out = []
    for res in root.iter("resource"):
        if res.get("id") == rsc and res.get("active") == "true" and res.get("failed") != "true":
            out.extend(node.get("name", "") for node in res.findall("node"))
    return out


def wait_resource_on(first: str, rsc: str, node: Optional[str], timeout: float = 120) -> str:
    """Wait until ``rsc`` runs (on ``node`` if given) and return where it runs."""
    def where() -> Optional[str]:
        nodes = resource_nodes(first, rsc)
        if len(nodes) == 1 and (node is None or nodes[0] == node):
            return nodes[0]
        return None
    return str(wait_for("{} running{}".format(rsc, " on " + node if node else ""), where, timeout, 0.5))
