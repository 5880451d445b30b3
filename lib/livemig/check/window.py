"""``livemig check`` rows for ``drbd_two_primaries=migration``: two primaries only while a migration runs.

In this mode (DRBD 9 only) Pacemaker manages no DRBD resource: the agent promotes the DRBD
resources behind the VM where it runs, allows two primaries on the connection to the target
for the length of one live migration (``drbdsetup net-options``) and closes it again; the
target is promoted by the libvirt hook ``/etc/libvirt/hooks/qemu.d/livemig`` before its
QEMU opens the disks. What that needs, row by row:

- drbd-config: a DRBD 9 configuration (``drbd-9``); ``allow-two-primaries`` **no** in the
  configuration, for the resource and each connection (the agent refuses ``yes``, and any
  ``drbdadm adjust`` would put a runtime allowance back to the file's value);
  ``become-primary-on`` not set; ``auto-promote`` (WARN if off); ``quorum`` (majority with
  three or more nodes; two nodes: WARN) and ``on-no-quorum io-error``; protocol C outside
  the window (WARN: the agent runs C for the window only); no crm-fence-peer handler (it
  constrains a promotable clone this mode does not have: WARN);
- pacemaker: no promotable clone of the resource (``drbd-clone``: FAIL, two owners of the
  role); the VM kept off every diskless node (``location-diskless``);
- drbd-runtime: no connection with a runtime allowance while no migration runs
  (``runtime-allowance``), DRBD 9 loaded (``drbd-9``);
- host: the hook installed, executable, and older than the running libvirt daemon
  (``libvirt-hook``, :mod:`livemig.check.hook`).
"""

from __future__ import annotations

import shlex
from typing import Dict, List, Mapping, Optional, Sequence

from lxml import etree

from livemig.check.drbd_config import DrbdResourceView, _scoped, check_after_sb, check_protocol_rows
from livemig.check.model import (
    LAYER_DRBD_CONFIG,
    LAYER_DRBD_RUNTIME,
    LAYER_PACEMAKER,
    CheckResult,
    Fix,
    fail,
    ok,
    unknown,
    warn,
)
from livemig.drbd.state import DrbdResourceState, DrbdStateError
from livemig.drbd.status9 import ShowResource
from livemig.drbd.tools import DrbdReader
from livemig.pacemaker.cib import drbd_clones
from livemig.pacemaker.naming import avoid_location_id

MODE_PARAMETER = "drbd_two_primaries"
MODE_MIGRATION = "migration"
#: quorum values that mean "on" (DRBD 9: off, majority, all, or a number of nodes)
QUORUM_OFF = ("off", "none", "")
NEGATIVE_INFINITY = ("-INFINITY", "-inf", "-infinity")


def _adjust(res: str) -> str:
    return f"then run `drbdadm adjust {res}` on every node"


def window_mode(params: Mapping[str, str]) -> bool:
    """Whether the VM primitive's instance attributes ask for ``drbd_two_primaries=migration``."""
    return (params.get(MODE_PARAMETER) or "").strip() == MODE_MIGRATION


def _q(value: str) -> str:
    return shlex.quote(value)


def diskless_hosts(view: DrbdResourceView) -> List[str]:
    """The hosts of the resource whose every volume is ``disk none`` (diskless: tiebreakers).

    drbdadm 9 dumps ``disk none;`` as an empty ``<disk></disk>``; ``none`` is taken as well.
    """
    found: List[str] = []
    for host in view.config.hosts:
        disks = [(vol.disk or "").strip() for vol in host.volumes]
        if disks and all(disk in ("", "none") for disk in disks):
            found.append(host.name)
    return found


def check_window_config(view: DrbdResourceView) -> List[CheckResult]:
    """The drbd-config rows of one resource in ``migration`` mode."""
    res = view.name
    results: List[CheckResult] = []
    if view.generation != "9":
        results.append(fail(LAYER_DRBD_CONFIG, "drbd-9",
                            f"DRBD {view.generation} configuration: drbd_two_primaries=migration needs DRBD 9 "
                            "(per-connection net options at runtime, quorum)",
                            Fix("upgrade DRBD and drbd-utils to 9 on every node, or set drbd_two_primaries=always"),
                            res))
    else:
        results.append(ok(LAYER_DRBD_CONFIG, "drbd-9", "DRBD 9 configuration", res))
    results += _two_primaries_off(view)
    become = view.config.option("startup", "become-primary-on")
    if become is not None:
        results.append(fail(LAYER_DRBD_CONFIG, "become-primary-on",
                            f"become-primary-on {become}: DRBD promotes at start, outside the agent, which owns "
                            "the role in this mode",
                            Fix(f"{view.where()}, resource {res}: remove `startup {{ become-primary-on ...; }}`; "
                                f"{_adjust(res)}"), res))
    results += check_protocol_rows(view, window=True)
    if view.generation == "9":
        results += _auto_promote(view)
        results += _quorum(view)
        results += _fence_handler(view)
    results += check_after_sb(view)
    return results


def _two_primaries_off(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    results: List[CheckResult] = []
    for label, conn in view.scopes():
        value = view.option("net", "allow-two-primaries", conn)
        if value == "" or (value or "").strip().lower() in ("yes", "true"):
            shown = "allow-two-primaries" + (f" {value}" if value else " (8.3 flag)")
            results.append(fail(LAYER_DRBD_CONFIG, "allow-two-primaries",
                                f"{shown}{_scoped(label)}: with drbd_two_primaries=migration the configuration "
                                "keeps no; the agent allows two primaries only while a migration runs (and "
                                "refuses to start with yes)",
                                Fix(f"{view.where()}, resource {res}: net {{ allow-two-primaries no; }} (remove "
                                    "yes from the resource and from every connection section); "
                                    f"{_adjust(res)}"), res))
        else:
            results.append(ok(LAYER_DRBD_CONFIG, "allow-two-primaries",
                              f"allow-two-primaries {value or 'not set (no)'}{_scoped(label)}: allowed only "
                              "while a migration runs", res))
    return results


def _auto_promote(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    value = view.config.option("options", "auto-promote")
    if view.config.auto_promote is False:
        return [warn(LAYER_DRBD_CONFIG, "auto-promote",
                     f"auto-promote {value}: migration still works (the agent and the libvirt hook promote and "
                     "demote explicitly with drbdsetup primary/secondary), but livemig config writes yes, "
                     "DRBD 9's default",
                     Fix(f"{view.where()}, resource {res}: options {{ auto-promote yes; }}; {_adjust(res)}"), res)]
    return [ok(LAYER_DRBD_CONFIG, "auto-promote", f"auto-promote {value or 'not set (yes)'}", res)]


def _quorum(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    value = (view.config.option("options", "quorum") or "").strip()
    nodes = len(view.config.hosts)
    diskless = diskless_hosts(view)
    counted = f"{nodes} nodes" + (f", diskless {', '.join(diskless)}" if diskless else "")
    on = value.lower() not in QUORUM_OFF
    fix = Fix(f"{view.where()}, resource {res}: options {{ quorum majority; on-no-quorum io-error; }}; "
              f"{_adjust(res)}")
    results: List[CheckResult] = []
    if nodes >= 3 and on:
        results.append(ok(LAYER_DRBD_CONFIG, "quorum", f"quorum {value} ({counted})", res))
    elif nodes >= 3:
        results.append(warn(LAYER_DRBD_CONFIG, "quorum",
                            f"quorum {value or 'not set (off)'} ({counted}): a node cut off from the others keeps "
                            "writing, and the guard checks no quorum", fix, res))
    elif on:
        results.append(warn(LAYER_DRBD_CONFIG, "quorum",
                            f"quorum {value} with {counted}: a node alone never has quorum, so the guard refuses "
                            "every migration (it would leave the source without quorum) unless two-node quorum "
                            "is allowed",
                            Fix("add a diskless tiebreaker node (DRBD 9: `disk none;` in its on section, and a "
                                f"connection to each node) to resource {res}, and keep the VM off it "
                                "(livemig config --diskless NODE)"), res))
    else:
        results.append(warn(LAYER_DRBD_CONFIG, "quorum",
                            f"quorum {value or 'not set (off)'} with {counted}: nothing but Pacemaker's fencing "
                            "stops a node that lost the replication link from writing",
                            Fix("add a diskless tiebreaker node to resource "
                                f"{res} (DRBD 9: `disk none;` in its on section), then {fix.text}"), res))
    if on:
        action = (view.config.option("options", "on-no-quorum") or "").strip()
        if action == "io-error":
            results.append(ok(LAYER_DRBD_CONFIG, "on-no-quorum", "on-no-quorum io-error", res))
        else:
            results.append(warn(LAYER_DRBD_CONFIG, "on-no-quorum",
                                f"on-no-quorum {action or 'not set (suspend-io)'}: a node that loses quorum "
                                "freezes the VM's I/O instead of failing it, and its monitor cannot tell",
                                Fix(f"{view.where()}, resource {res}: options {{ on-no-quorum io-error; }}; "
                                    f"{_adjust(res)}"), res))
    return results


def _fence_handler(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    handler = (view.config.sections.get("handlers", {}).get("fence-peer") or "").strip()
    if "crm-fence-peer" not in handler:
        return []
    return [warn(LAYER_DRBD_CONFIG, "fence-peer-handler",
                 f"fence-peer {handler}: its constraint names the promotable clone of {res}, which this mode "
                 "has none of; quorum is what stops a cut-off node",
                 Fix(f"{view.where()}, resource {res}: remove the fence-peer and unfence-peer handlers and "
                     f"`fencing resource-and-stonith`, keep quorum majority; {_adjust(res)}"), res)]


# -- Pacemaker -------------------------------------------------------------------------------------

def check_window_pacemaker(cib: etree._Element, vm_id: str, res: str) -> List[CheckResult]:
    """The ``drbd-clone`` row of one resource in ``migration`` mode: no clone may own the role."""
    clones = drbd_clones(cib, res)
    promotable = [c for c in clones if c.clone_id is not None]
    owner = promotable[0].clone_id if promotable else (clones[0].primitive_id if clones else None)
    if owner is None:
        return [ok(LAYER_PACEMAKER, "drbd-clone",
                   f"{res} is not managed by Pacemaker: the agent promotes it where {vm_id} runs", res)]
    # crmsh's delete of a clone keeps its primitive (and moves the constraints to it): both go, in one
    # commit; pcs deletes the primitive and the constraints with the clone. --force: no stop first.
    parts = [owner] + ([promotable[0].primitive_id] if promotable else [])
    crm = f"crm resource unmanage {_q(owner)}; crm configure delete {' '.join(_q(p) for p in parts)}"
    pcs = f"pcs resource unmanage {_q(owner)}; pcs resource delete {_q(owner)} --force"
    text = (f"unmanaged first, so that deleting it leaves {res} up; then systemctl enable --now drbd@{res}.target on "
            "every node (drbd-utils' unit brings it up at boot)")
    if promotable:
        form = "legacy ms (master)" if promotable[0].legacy else "promotable clone"
        return [fail(LAYER_PACEMAKER, "drbd-clone",
                     f"{form} {owner} manages {res}, and with drbd_two_primaries=migration the agent promotes "
                     f"and demotes it too: two owners of the role",
                     Fix(crm=crm, pcs=pcs, text=text), res)]
    return [warn(LAYER_PACEMAKER, "drbd-clone",
                 f"ocf:linbit:drbd primitive {owner} (not in a promotable clone) manages {res}; in this mode "
                 "Pacemaker manages no DRBD resource", Fix(crm=crm, pcs=pcs, text=text), res)]


def check_diskless_locations(cib: etree._Element, vm_id: str, nodes: Sequence[str]) -> List[CheckResult]:
    """``location-diskless``: a -INFINITY location of the VM for every diskless DRBD node."""
    results: List[CheckResult] = []
    for node in nodes:
        found = [c.get("id") or "?" for c in cib.iterfind("configuration/constraints/rsc_location")
                 if c.get("rsc") == vm_id and c.get("node") == node and c.get("score") in NEGATIVE_INFINITY]
        if found:
            results.append(ok(LAYER_PACEMAKER, "location-diskless",
                              f"{found[0]}: {vm_id} never runs on {node} (diskless)", node))
            continue
        lid = avoid_location_id(vm_id, node)
        results.append(fail(LAYER_PACEMAKER, "location-diskless",
                            f"no -INFINITY location keeps {vm_id} off {node}, a diskless DRBD node: Pacemaker "
                            "may start or migrate the VM there",
                            Fix(crm=f"crm configure location {_q(lid)} {_q(vm_id)} -inf: {_q(node)}",
                                pcs=f"pcs constraint location {_q(vm_id)} avoids {_q(node)}"), node))
    return results


def pacemaker_node(host: str, peer_names: Mapping[str, str]) -> str:
    """The Pacemaker node name of DRBD host ``host`` (``--peer-name NODE=HOST`` read backwards)."""
    for node, drbd_host in peer_names.items():
        if drbd_host == host:
            return node
    return host


# -- runtime ---------------------------------------------------------------------------------------

def check_window_runtime(resources: Sequence[str], reader: DrbdReader) -> List[CheckResult]:
    """``drbd-9`` (loaded) and ``runtime-allowance`` per resource: no window open outside a migration."""
    try:
        status = reader.read_resources(resources)
    except DrbdStateError as exc:
        return [unknown(LAYER_DRBD_RUNTIME, "drbd-state", f"could not read DRBD state: {exc}",
                        Fix("check that DRBD is loaded and that livemig drbd status works on this node"))]
    if status.generation != 9:
        return [fail(LAYER_DRBD_RUNTIME, "drbd-9",
                     f"DRBD {status.drbd_version or status.generation or '?'} is loaded: "
                     "drbd_two_primaries=migration needs DRBD 9",
                     Fix("upgrade DRBD to 9 on every node, or set drbd_two_primaries=always"))]
    results = [ok(LAYER_DRBD_RUNTIME, "drbd-9", f"DRBD {status.drbd_version or '9'} loaded")]
    try:
        shown: Dict[Optional[str], ShowResource] = {r.name: r for r in reader.show9()}
    except DrbdStateError as exc:
        return results + [unknown(LAYER_DRBD_RUNTIME, "drbd-settings", f"could not read DRBD settings: {exc}",
                                  Fix("check that drbdsetup show works on this node"))]
    for res in resources:
        results += _allowance(res, status.resource(res), shown.get(res))
    return results


def _allowance(res: str, states: Sequence[DrbdResourceState], show: Optional[ShowResource]) -> List[CheckResult]:
    if show is None:
        return [unknown(LAYER_DRBD_RUNTIME, "runtime-allowance", f"{res} is not up on this node (drbdsetup show)",
                        Fix(f"systemctl start drbd@{res}.target (or drbdadm up {res})"), res)]
    state = states[0] if states else None
    local = state.role if state is not None else None
    results: List[CheckResult] = []
    for conn in show.connections:
        if conn.allow_two_primaries is not True:
            continue
        peer = next((p for p in (state.peers if state else ()) if p.node_id == conn.peer_node_id), None)
        who = f"{(peer.name if peer else None) or conn.name or '?'} (node-id {conn.peer_node_id})"
        if local == "Primary" and peer is not None and peer.role == "Primary":
            results.append(warn(LAYER_DRBD_RUNTIME, "runtime-allowance",
                                f"{res}: allow-two-primaries on at runtime towards {who}, both Primary: a live "
                                "migration runs now, or a window was left open (the agent's monitor then "
                                "reports two primaries outside a migration)",
                                Fix("wait for the migration to end (crm_mon -1); if none runs, the VM runs on "
                                    "one node only: stop it where it should not run"), res))
            continue
        results.append(fail(LAYER_DRBD_RUNTIME, "runtime-allowance",
                            f"{res}: allow-two-primaries on at runtime towards {who} while no migration runs "
                            f"(this node {local or '?'}, peer {(peer.role if peer else None) or 'not connected'}): "
                            "a window left open (a migration that runs right now opens it too, for moments "
                            "with one Primary: check again after it)",
                            Fix(f"the agent's next action closes it; by hand: drbdsetup net-options {_q(res)} "
                                f"{conn.peer_node_id} --allow-two-primaries=no"), res))
    if not results:
        results.append(ok(LAYER_DRBD_RUNTIME, "runtime-allowance",
                          f"{res}: no connection allows two primaries at runtime", res))
    return results
