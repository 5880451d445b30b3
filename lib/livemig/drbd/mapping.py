"""Which DRBD devices are behind a libvirt domain's disks.

A disk is on DRBD when its source is

- a ``/dev/drbd/by-res/<res>/<vol>`` path (8.4, 9) or ``/dev/drbd/by-res/<res>``
  (8.3): the resource and volume are in the name;
- a block device with major 147 (``/dev/drbdN``, or any symlink or custom
  device name resolving to one): the minor is N;
- a device-mapper device (LVM on DRBD) whose ``slaves`` in sysfs lead to DRBD;
- a file on a file system (GFS2, OCFS2) that lives on one of the above.

Putting a resource name on a minor is the reader's job
(:meth:`livemig.drbd.tools.DrbdReader.names_for_minors`). A disk whose
backing cannot be told (a storage-pool volume, a ``/dev/drbd*`` path that does
not resolve) raises :class:`DrbdMappingError`: the guard must not assume
"not on DRBD" for a disk it could not look at.
"""

from __future__ import annotations

import os
import re
import stat as stat_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from lxml import etree

from livemig.drbd.state import DrbdStateError
from livemig.xmlsafe import safe_xml_parser

if TYPE_CHECKING:
    from livemig.drbd.tools import DrbdReader
    from livemig.ocf.deadline import Deadline
    from livemig.run import CommandRunner

#: The block major the kernel assigns to DRBD devices.
DRBD_MAJOR = 147
BY_RES_DIR = "/dev/drbd/by-res"

_BY_RES = re.compile(r"^/dev/drbd/by-res/([^/]+)(?:/(\d+))?/?$")
_DRBD_NODE = re.compile(r"^/dev/drbd(\d+)$")
_MAX_STACK_DEPTH = 8


class DrbdMappingError(DrbdStateError):
    """A disk's backing could not be determined."""


@dataclass(frozen=True)
class DomainDisk:
    """One ``<disk>`` of a domain: its target (``vda``), type and source path."""

    target: Optional[str]
    disk_type: Optional[str]
    source: Optional[str]

    def label(self) -> str:
        return self.target or self.source or "(unnamed disk)"


@dataclass(frozen=True)
class DrbdDiskRef:
    """A disk found on DRBD: by minor, or by resource (and volume) from a by-res path."""

    disk: DomainDisk
    minor: Optional[int] = None
    resource: Optional[str] = None
    volume: Optional[int] = None


StatFunction = Callable[[str], os.stat_result]


def domain_disks(xml_text: str) -> List[DomainDisk]:
    """The disks of a libvirt domain XML. Raises :class:`DrbdMappingError` on bad XML."""
    try:
        root = etree.fromstring(xml_text.encode("utf-8"), parser=safe_xml_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DrbdMappingError(f"domain XML is not well-formed ({exc})") from None
    if root.tag != "domain":
        raise DrbdMappingError(f"expected a libvirt <domain>, found <{root.tag}>")
    disks = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        path = None
        if source is not None:
            path = source.get("dev") or source.get("file") or source.get("dir")
            if disk.get("type") == "volume":
                pool, volume = source.get("pool"), source.get("volume")
                path = f"{pool}/{volume}" if pool or volume else None
        disks.append(DomainDisk(
            target=target.get("dev") if target is not None else None,
            disk_type=disk.get("type"),
            source=path,
        ))
    return disks


def drbd_refs_for_disk(disk: DomainDisk, stat: StatFunction = os.stat,
                       sysfs_root: str = "/sys") -> List[DrbdDiskRef]:
    """The DRBD devices behind ``disk`` ([] when it is not on DRBD)."""
    if disk.source is None or disk.disk_type == "network":
        return []
    if disk.disk_type == "volume":
        raise DrbdMappingError(
            f"disk {disk.label()} is the storage-pool volume {disk.source}: cannot tell whether it is "
            "on DRBD; name the DRBD resources explicitly")
    by_res = _BY_RES.match(disk.source)
    if by_res:
        volume = int(by_res.group(2)) if by_res.group(2) is not None else None
        return [DrbdDiskRef(disk=disk, resource=by_res.group(1), volume=volume)]
    try:
        st = stat(disk.source)
    except OSError as exc:
        named = _DRBD_NODE.match(disk.source)
        if named:
            return [DrbdDiskRef(disk=disk, minor=int(named.group(1)))]
        if disk.source.startswith("/dev/drbd"):
            raise DrbdMappingError(
                f"disk {disk.label()}: cannot resolve {disk.source} ({exc.strerror})") from None
        return []  # absent here and not named like DRBD: nothing to look at
    if stat_module.S_ISBLK(st.st_mode):
        device = st.st_rdev
    elif stat_module.S_ISREG(st.st_mode) or stat_module.S_ISDIR(st.st_mode):
        device = st.st_dev  # a file: the device holding its file system
    else:
        return []
    return [DrbdDiskRef(disk=disk, minor=m) for m in drbd_minors_below(device, sysfs_root)]


def drbd_minors_below(device: int, sysfs_root: str = "/sys") -> List[int]:
    """DRBD minors that ``device`` is, or is stacked on (device-mapper ``slaves``)."""
    found: List[int] = []
    _walk(os.major(device), os.minor(device), sysfs_root, found, 0)
    return found


def _walk(major: int, minor: int, sysfs_root: str, found: List[int], depth: int) -> None:
    if major == DRBD_MAJOR:
        if minor not in found:
            found.append(minor)
        return
    if depth >= _MAX_STACK_DEPTH:
        return
    node = os.path.join(sysfs_root, "dev", "block", f"{major}:{minor}")
    if os.path.exists(os.path.join(node, "partition")):
        node = os.path.dirname(os.path.realpath(node))
    slaves = os.path.join(node, "slaves")
    try:
        names = sorted(os.listdir(slaves))
    except OSError:
        return
    for name in names:
        numbers = _read_dev_numbers(os.path.join(slaves, name, "dev"))
        if numbers is not None:
            _walk(numbers[0], numbers[1], sysfs_root, found, depth + 1)


def _read_dev_numbers(path: str) -> Optional[Tuple[int, int]]:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read(64).strip()
    except (OSError, ValueError):
        return None
    major, _, minor = text.partition(":")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def scan_by_res(by_res_dir: str = BY_RES_DIR) -> Dict[int, Tuple[str, Optional[int]]]:
    """minor -> (resource, volume) from udev's ``/dev/drbd/by-res`` links ({} if absent)."""
    found: Dict[int, Tuple[str, Optional[int]]] = {}
    try:
        resources = sorted(os.listdir(by_res_dir))
    except OSError:
        return found
    for resource in resources:
        entry = os.path.join(by_res_dir, resource)
        if os.path.islink(entry):  # 8.3: by-res/<res> -> ../../drbdN
            minor = _minor_of_link(entry)
            if minor is not None:
                found[minor] = (resource, None)
            continue
        try:
            volumes = os.listdir(entry)
        except OSError:
            continue
        for volume in volumes:
            minor = _minor_of_link(os.path.join(entry, volume))
            if minor is not None and volume.isdigit():
                found[minor] = (resource, int(volume))
    return found


def _minor_of_link(path: str) -> Optional[int]:
    named = _DRBD_NODE.match(os.path.realpath(path))
    return int(named.group(1)) if named else None


def resources_from_domain_xml(xml_text: str, runner: CommandRunner, deadline: Deadline,
                              *, reader: Optional[DrbdReader] = None, untraceable_ok: bool = False) -> List[str]:
    """The DRBD resources behind a domain's disks, in disk order ([] if none).

    ``untraceable_ok``: the operator named the resources (``drbd_resources``), so
    a disk whose backing cannot be traced is left to that list instead of
    raising :class:`DrbdMappingError`.

    Raises :class:`~livemig.drbd.state.DrbdStateError` (or its subclass
    :class:`~livemig.drbd.mapping.DrbdMappingError`) when a disk's backing,
    or the resource of a DRBD minor, cannot be told: fail closed.
    """
    refs = [ref for disk in domain_disks(xml_text) for ref in drbd_refs_for_disk(disk)]
    minors = sorted({ref.minor for ref in refs if ref.minor is not None and ref.resource is None})
    names: Dict[int, str] = {}
    if minors:
        # Only a bare minor needs DRBD's tools; a VM without DRBD disks never imports them.
        from livemig.drbd.tools import DrbdReader

        reader = reader or DrbdReader(runner, deadline)
        proc = reader.read_proc()
        if proc is not None and proc.generation == 8:
            names = reader.names_for_minors(minors)
        else:
            names = {minor: res for minor, (res, _vol) in reader.names_for_minors9(minors).items()}
    found: List[str] = []
    for ref in refs:
        resource = ref.resource or (names.get(ref.minor) if ref.minor is not None else None)
        if resource is None:
            raise DrbdStateError(f"disk {ref.disk.label()} is on DRBD minor {ref.minor}, "
                                 "but no resource could be found for it")
        if resource not in found:
            found.append(resource)
    return found
