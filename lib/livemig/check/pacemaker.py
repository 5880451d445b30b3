"""Pacemaker layer rows: what a live migration of a VM on DRBD dual-primary needs from Pacemaker.

- every DRBD resource behind the VM's disks in a promotable clone of ``ocf:linbit:drbd``
  (the current ``<clone>`` with ``promotable=true`` and ``promoted-max``, or the legacy
  ``<master>`` with ``master-max``), two promoted instances and ``notify=true``;
- the VM on a migration-capable agent (``ocf:livemig:VirtualDomain``, or
  ``ocf:heartbeat:VirtualDomain`` without livemig's DRBD guard) with ``allow-migrate=true``;
- the VM colocated (INFINITY) with the Promoted role of each clone, and ordered after
  its promote;
- fencing enabled with a fencing device, no leftover ``drbd-fence-by-handler-*``
  constraint, and nothing in maintenance (cluster, node, VM or clone).

The CIB is read through :mod:`livemig.pacemaker.cib`; the ids the fixes
propose are :mod:`livemig.pacemaker.naming`'s.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from lxml import etree

from livemig.check.model import LAYER_PACEMAKER, CheckResult, Fix, fail, ok, warn
from livemig.check.promotable import check_promotion, check_syntax
from livemig.check.window import check_diskless_locations, check_window_pacemaker
from livemig.pacemaker.cib import (
    INFINITY_SCORES,
    PROMOTED_ROLES,
    agent_name,
    cluster_properties,
    drbd_clones,
    effective_meta,
    fence_constraint_ids,
    find_resource,
    is_true,
    node_attributes,
)
from livemig.pacemaker.config_generator import (
    crm_colocation,
    crm_drbd_statements,
    crm_order,
    pcs_colocation,
    pcs_drbd_commands,
    pcs_order,
)

MIGRATION_AGENTS = {("ocf", "livemig", "VirtualDomain"), ("ocf", "heartbeat", "VirtualDomain")}


def check_pacemaker(cib: etree._Element, vm_id: str, drbd_resources: Sequence[str], *, window: bool = False,
                    diskless: Sequence[str] = ()) -> List[CheckResult]:
    """Every Pacemaker check for resource ``vm_id`` on ``drbd_resources``.

    ``window``: the VM has ``drbd_two_primaries=migration``: no promotable clone may manage
    the resources (:mod:`livemig.check.window`), and the VM must avoid the ``diskless`` nodes.
    """
    results: List[CheckResult] = []
    vm = find_resource(cib, vm_id)
    if vm is None or vm.tag != "primitive":
        results.append(fail(LAYER_PACEMAKER, "vm-resource", f"no primitive {vm_id} in the CIB",
                            Fix("create it with the commands `livemig config` prints")))
        return results
    results += _check_vm(cib, vm)
    results += _check_cluster(cib)
    for name in drbd_resources:
        results += check_window_pacemaker(cib, vm_id, name) if window else _check_drbd_resource(cib, vm, name)
    if window:
        results += check_diskless_locations(cib, vm_id, diskless)
    return results


def _check_vm(cib: etree._Element, vm: etree._Element) -> List[CheckResult]:
    vm_id = vm.get("id") or "?"
    results: List[CheckResult] = []
    agent = (vm.get("class"), vm.get("provider"), vm.get("type"))
    name = agent_name(vm)
    if agent == ("ocf", "livemig", "VirtualDomain"):
        results.append(ok(LAYER_PACEMAKER, "vm-agent", f"{vm_id} uses {name}"))
    elif agent in MIGRATION_AGENTS:
        results.append(warn(LAYER_PACEMAKER, "vm-agent",
                            f"{vm_id} uses {name}: it migrates, but checks nothing about DRBD first",
                            Fix("switch to ocf:livemig:VirtualDomain (same parameters): "
                                f"crm configure edit {vm_id}, replace {name} by ocf:livemig:VirtualDomain")))
    else:
        results.append(fail(LAYER_PACEMAKER, "vm-agent",
                            f"{vm_id} uses {name}, which cannot live-migrate a libvirt domain",
                            Fix("recreate the resource with the commands `livemig config` prints "
                                f"(crm configure delete {vm_id} first)")))
    meta = effective_meta(vm, cib)
    allow = is_true(meta.get("allow-migrate"))
    if allow:
        results.append(ok(LAYER_PACEMAKER, "allow-migrate", f"{vm_id}: allow-migrate={meta['allow-migrate']}"))
    else:
        seen = f"allow-migrate={meta['allow-migrate']}" if "allow-migrate" in meta else "allow-migrate not set"
        results.append(fail(LAYER_PACEMAKER, "allow-migrate",
                            f"{vm_id}: {seen}; Pacemaker stops and starts the VM instead of migrating it",
                            Fix(crm=f"crm resource meta {vm_id} set allow-migrate true",
                                pcs=f"pcs resource meta {vm_id} allow-migrate=true")))
    results += _check_managed(vm_id, meta, "vm-managed")
    return results


def _check_managed(rid: str, meta: Dict[str, str], name: str, subject: str = "") -> List[CheckResult]:
    problems: List[str] = []
    crm: List[str] = []
    pcs: List[str] = []
    if is_true(meta.get("is-managed")) is False:
        problems.append(f"is-managed={meta['is-managed']}")
        crm.append(f"crm resource manage {rid}")
        pcs.append(f"pcs resource manage {rid}")
    if is_true(meta.get("maintenance")):
        problems.append(f"maintenance={meta['maintenance']}")
        crm.append(f"crm resource maintenance {rid} off")
        pcs.append(f"pcs resource meta {rid} maintenance=false")
    if not problems:
        return [ok(LAYER_PACEMAKER, name, f"{rid} is managed", subject)]
    return [fail(LAYER_PACEMAKER, name, f"{rid}: {', '.join(problems)}; Pacemaker will not act on it",
                 Fix(crm="; ".join(crm), pcs="; ".join(pcs)), subject)]


def _check_cluster(cib: etree._Element) -> List[CheckResult]:
    results: List[CheckResult] = []
    props = cluster_properties(cib)
    key = "fencing-enabled" if "fencing-enabled" in props else "stonith-enabled"
    enabled = is_true(props.get(key, "true"))
    if enabled is False:
        results.append(fail(LAYER_PACEMAKER, "fencing-enabled",
                            f"{key}={props[key]}: a split brain between two primaries is not resolved by fencing",
                            Fix(crm=f"crm configure property {key}=true",
                                pcs=f"pcs property set {key}=true")))
    else:
        results.append(ok(LAYER_PACEMAKER, "fencing-enabled", f"{key}={props.get(key, 'true (default)')}"))
    devices = [p.get("id") or "?" for p in cib.iterfind("configuration/resources//primitive")
               if p.get("class") == "stonith"]
    if devices:
        results.append(ok(LAYER_PACEMAKER, "fencing-device", f"fencing devices: {', '.join(devices)}"))
    else:
        results.append(fail(LAYER_PACEMAKER, "fencing-device", "no fencing (stonith) device is configured",
                            Fix("configure one that can power off every node, e.g. "
                                "crm configure primitive fence-NODE stonith:fence_ipmilan params ip=BMC-ADDRESS "
                                "username=USER password=PASSWORD pcmk_host_list=NODE "
                                "(pcs stonith create fence-NODE fence_ipmilan ...)")))
    mode = props.get("maintenance-mode")
    if is_true(mode):
        results.append(fail(LAYER_PACEMAKER, "maintenance-mode",
                            f"maintenance-mode={mode}: the cluster manages nothing",
                            Fix(crm="crm configure property maintenance-mode=false",
                                pcs="pcs property set maintenance-mode=false",
                                text="once DRBD and libvirt configuration changes are done on every node")))
    else:
        results.append(ok(LAYER_PACEMAKER, "maintenance-mode", f"maintenance-mode={mode or 'false (default)'}"))
    for node in cib.iterfind("configuration/nodes/node"):
        uname = node.get("uname") or node.get("id") or "?"
        value = node_attributes(node).get("maintenance")
        if is_true(value):
            results.append(warn(LAYER_PACEMAKER, "node-maintenance",
                                f"node {uname} is in maintenance: resources on it are not managed",
                                Fix(crm=f"crm node ready {uname}", pcs=f"pcs node unmaintenance {uname}"), uname))
    return results


def _check_drbd_resource(cib: etree._Element, vm: etree._Element, res: str) -> List[CheckResult]:
    vm_id = vm.get("id") or "?"
    clones = drbd_clones(cib, res)
    promotable = [c for c in clones if c.clone_id is not None]
    if not promotable:
        if clones:
            found = (f"ocf:linbit:drbd primitive {clones[0].primitive_id} for {res} is not in a promotable clone")
        else:
            found = f"no ocf:*:drbd resource has drbd_resource={res}"
        return [fail(LAYER_PACEMAKER, "drbd-clone", found,
                     Fix(crm="; ".join(f"crm configure {line}" for line in crm_drbd_statements(res)),
                         pcs="; ".join(pcs_drbd_commands(res)),
                         text="or run the commands `livemig config` prints"), res)]
    clone = promotable[0]
    cid = clone.clone_id or "?"
    assert clone.element is not None  # nosec B101 # narrows the type for mypy; clones are parsed from elements
    form = "legacy ms (master)" if clone.legacy else "promotable clone"
    results = [ok(LAYER_PACEMAKER, "drbd-clone", f"{res} is managed by {form} {cid}", res)]
    if len(promotable) > 1:
        ids = ", ".join(c.clone_id or "?" for c in promotable)
        results.append(warn(LAYER_PACEMAKER, "drbd-clone", f"{len(promotable)} clones manage {res}: {ids}",
                            Fix(crm="keep one: crm configure delete <the others>"), res))
    meta = effective_meta(clone.element, cib)
    results += check_promotion(cib, clone)
    results.append(check_syntax(cib, clone))
    notify = meta.get("notify")
    if is_true(notify):
        results.append(ok(LAYER_PACEMAKER, "notify", f"{cid}: notify={notify}", res))
    else:
        results.append(fail(LAYER_PACEMAKER, "notify",
                            f"{cid}: notify={notify or 'not set (false)'}; ocf:linbit:drbd needs notifications",
                            Fix(crm=f"crm resource meta {cid} set notify true",
                                pcs=f"pcs resource meta {cid} notify=true"), res))
    results += _check_managed(cid, meta, "drbd-managed", res)
    results.append(_check_colocation(cib, vm_id, cid, res))
    results.append(_check_order(cib, vm_id, cid, res))
    fences = fence_constraint_ids(cib, res)
    if fences:
        results.append(fail(LAYER_PACEMAKER, "fence-constraint",
                            f"{fences[0]} is in the CIB: DRBD's fence-peer handler marked a peer's {res} "
                            "as not to be trusted",
                            Fix(crm=f"crm configure delete {fences[0]}", pcs=f"pcs constraint delete {fences[0]}",
                                text=f"only once {res} is UpToDate on both nodes (livemig drbd status {res}); "
                                     "the unfence handler normally removes it after the resync"), res))
    else:
        results.append(ok(LAYER_PACEMAKER, "fence-constraint", f"no drbd-fence-by-handler-{res}-* constraint", res))
    return results


def _colocation_fix(vm_id: str, clone_id: str, remove: Optional[str]) -> Fix:
    crm = f"crm configure {crm_colocation(vm_id, clone_id)}"
    pcs = pcs_colocation(vm_id, clone_id)
    if remove:
        crm = f"crm configure delete {remove}; {crm}"
        pcs = f"pcs constraint delete {remove}; {pcs}"
    return Fix(crm=crm, pcs=pcs)


def _check_colocation(cib: etree._Element, vm_id: str, clone_id: str, res: str) -> CheckResult:
    wrong: Optional[str] = None
    wrong_id: Optional[str] = None
    in_sets = False
    for constraint in cib.iterfind("configuration/constraints/rsc_colocation"):
        cid = constraint.get("id") or "?"
        if constraint.find("resource_set") is not None:
            refs = {r.get("id") for r in constraint.iterfind("resource_set/resource_ref")}
            in_sets = in_sets or {vm_id, clone_id} <= refs
            continue
        if constraint.get("rsc") != vm_id or constraint.get("with-rsc") != clone_id:
            continue
        role = constraint.get("with-rsc-role")
        score = constraint.get("score")
        if role in PROMOTED_ROLES and score in INFINITY_SCORES:
            return ok(LAYER_PACEMAKER, "colocation", f"{cid}: {vm_id} with {clone_id}:{role}, score {score}", res)
        wrong_id = cid
        wrong = (f"{cid}: {vm_id} with {clone_id}{':' + role if role else ''} score {score or '?'}; "
                 "needs the Promoted role and score INFINITY")
    if wrong is not None:
        return fail(LAYER_PACEMAKER, "colocation", wrong, _colocation_fix(vm_id, clone_id, wrong_id), res)
    found = f"no colocation of {vm_id} with the Promoted role of {clone_id}"
    if in_sets:
        found += " (a colocation set names both; sets are not analysed: use a plain colocation)"
    return fail(LAYER_PACEMAKER, "colocation", found, _colocation_fix(vm_id, clone_id, None), res)


def _order_fix(vm_id: str, clone_id: str, remove: Optional[str]) -> Fix:
    crm = f"crm configure {crm_order(vm_id, clone_id)}"
    pcs = pcs_order(vm_id, clone_id)
    if remove:
        crm = f"crm configure delete {remove}; {crm}"
        pcs = f"pcs constraint delete {remove}; {pcs}"
    return Fix(crm=crm, pcs=pcs)


def _check_order(cib: etree._Element, vm_id: str, clone_id: str, res: str) -> CheckResult:
    wrong: Optional[str] = None
    wrong_id: Optional[str] = None
    for constraint in cib.iterfind("configuration/constraints/rsc_order"):
        if constraint.get("first") != clone_id or constraint.get("then") != vm_id:
            continue
        oid = constraint.get("id") or "?"
        first_action = constraint.get("first-action") or "start"
        then_action = constraint.get("then-action") or first_action
        kind = constraint.get("kind")
        score = constraint.get("score")
        mandatory = kind == "Mandatory" or (kind is None and score != "0")
        if first_action == "promote" and then_action == "start" and mandatory:
            return ok(LAYER_PACEMAKER, "order", f"{oid}: {clone_id}:promote then {vm_id}:start", res)
        wrong_id = oid
        wrong = (f"{oid}: {clone_id}:{first_action} then {vm_id}:{then_action} ({kind or 'score ' + (score or '?')}); "
                 "needs Mandatory promote then start")
    if wrong is not None:
        return fail(LAYER_PACEMAKER, "order", wrong, _order_fix(vm_id, clone_id, wrong_id), res)
    return fail(LAYER_PACEMAKER, "order", f"no order: {clone_id}:promote then {vm_id}:start",
                _order_fix(vm_id, clone_id, None), res)
