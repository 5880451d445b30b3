"""Domain XML checks: is every disk of the VM on DRBD (or otherwise present on the target)?

A disk the target cannot see makes the migration fail, or worse, start the VM on
another disk. Disks are mapped as the guard maps them
(:mod:`livemig.drbd.mapping`); a DRBD minor is named from the DRBD configuration,
so no DRBD runtime state is needed here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from livemig.check.model import LAYER_DOMAIN, CheckResult, Fix, fail, ok, unknown, warn
from livemig.domain_xml import DomainDisk, DomainXMLError, parse_domain_xml
from livemig.drbd.byres import BY_RES_DIR
from livemig.drbd.mapping import DrbdMappingError, drbd_refs_for_disk

StatFunction = Callable[[str], os.stat_result]

BY_RES_PREFIX = BY_RES_DIR + "/"


@dataclass
class DomainFindings:
    """The rows, the domain's name and the DRBD resources behind its disks (in disk order)."""

    results: List[CheckResult] = field(default_factory=list)
    name: Optional[str] = None
    drbd_resources: List[str] = field(default_factory=list)


def check_domain(xml_text: str, minor_names: Mapping[int, str], *,
                 stat: StatFunction = os.stat, sysfs_root: str = "/sys") -> DomainFindings:
    """Rows for the domain's disks; ``minor_names`` maps DRBD minors to resources (from dump-xml)."""
    findings = DomainFindings()
    try:
        domain = parse_domain_xml(xml_text, strict=False)
    except DomainXMLError as exc:
        findings.results.append(fail(LAYER_DOMAIN, "domain-xml", str(exc),
                                     Fix("point the resource's config parameter at the domain's XML file")))
        return findings
    findings.name = domain.name or None
    disks = domain.disks
    if not disks:
        findings.results.append(fail(LAYER_DOMAIN, "disk-on-drbd", "the domain has no disk",
                                     Fix("add its disks on DRBD devices (/dev/drbd/by-res/RES/VOL)")))
    for disk in disks:
        findings.results.append(_check_disk(disk, minor_names, findings.drbd_resources, stat, sysfs_root))
    if disks and not findings.drbd_resources:
        findings.results.append(fail(LAYER_DOMAIN, "drbd-disks", "no disk of the domain is on DRBD",
                                     Fix("put the disks on DRBD devices (/dev/drbd/by-res/RES/VOL)")))
    return findings


def _check_disk(disk: DomainDisk, minor_names: Mapping[int, str], found: List[str],
                stat: StatFunction, sysfs_root: str) -> CheckResult:
    label = disk.label()
    kind = disk.device
    try:
        refs = drbd_refs_for_disk(disk, stat=stat, sysfs_root=sysfs_root)
    except DrbdMappingError as exc:
        return unknown(LAYER_DOMAIN, "disk-on-drbd", str(exc),
                       Fix("use a /dev/drbd/by-res/RES/VOL path so the DRBD resource can be told"), label)
    if refs:
        names: List[str] = []
        for ref in refs:
            res = ref.resource or (minor_names.get(ref.minor) if ref.minor is not None else None)
            if res is None:
                return fail(LAYER_DOMAIN, "disk-on-drbd",
                            f"{label}: {disk.source} is DRBD minor {ref.minor}, which no configured resource uses",
                            Fix(f"define the resource for minor {ref.minor} in /etc/drbd.d on both nodes, "
                                "or fix the disk's source"), label)
            names.append(res if ref.volume is None else f"{res} volume {ref.volume}")
            if res not in found:
                found.append(res)
        return ok(LAYER_DOMAIN, "disk-on-drbd", f"{label}: {disk.source} on DRBD {', '.join(names)}", label)
    if disk.disk_type == "network":
        return ok(LAYER_DOMAIN, "disk-on-drbd", f"{label}: network disk (shared storage, not DRBD)", label)
    if disk.source is None:
        return ok(LAYER_DOMAIN, "disk-on-drbd", f"{label}: {kind} with no medium", label)
    if kind in ("cdrom", "floppy"):
        return warn(LAYER_DOMAIN, "disk-on-drbd",
                    f"{label}: {kind} {disk.source} is not on DRBD",
                    Fix(f"make sure {disk.source} exists at the same path on the target, or eject it"), label)
    return fail(LAYER_DOMAIN, "disk-on-drbd",
                f"{label}: {disk.source} is not on DRBD: the target has no copy of it",
                Fix("move the disk onto a DRBD resource (a /dev/drbd/by-res/RES/VOL device, or a file "
                    "system on one) and colocate the VM with its clone"), label)


def check_guard_resources(vm_id: str, parameter: Optional[str],
                          disk_resources: Sequence[str]) -> List[CheckResult]:
    """When the agent's ``drbd_resources`` parameter is set, it must name every DRBD resource of the disks."""
    if not parameter or not parameter.strip():
        return []
    named = [w for w in parameter.replace(",", " ").split() if w]
    missing = [r for r in disk_resources if r not in named]
    if not missing:
        return [ok(LAYER_DOMAIN, "guard-resources", f"drbd_resources={parameter} covers every DRBD disk")]
    value = " ".join(list(dict.fromkeys(named + missing)))
    return [fail(LAYER_DOMAIN, "guard-resources",
                 f"drbd_resources={parameter} leaves out {', '.join(missing)}: the migration guard would not "
                 "check them", Fix(crm=f"crm resource param {vm_id} set drbd_resources \"{value}\"",
                                  pcs=f"pcs resource update {vm_id} drbd_resources=\"{value}\""))]


def unnamed_drbd_resources(xml_text: str, resources: Sequence[str]) -> List[Tuple[str, str]]:
    """(disk, resource) for each disk whose own source is a by-res path of a resource not in ``resources``.

    Only the disk's source is read (not its backing chain), and only from its
    name: nothing is opened. [] when ``xml_text`` is not a domain XML.
    """
    try:
        disks = parse_domain_xml(xml_text, strict=False).disks
    except DomainXMLError:
        return []
    found: List[Tuple[str, str]] = []
    for disk in disks:
        if disk.source is None or not disk.source.startswith(BY_RES_PREFIX):
            continue
        top = DomainDisk(disk.target, disk.disk_type, disk.source)  # its source alone, not its backing chain
        for ref in drbd_refs_for_disk(top):  # a by-res path is read from its name, nothing is opened
            if ref.resource and ref.resource not in resources:
                found.append((disk.label(), ref.resource))
    return found
