"""Which DRBD devices are behind a libvirt domain's disks.

The disks and every layer of their storage (source, backing chain, block-copy
mirror) are read by :mod:`livemig.domain_xml`, the one reading of a domain XML;
here each layer is traced down to block devices.

A layer is on DRBD when it is

- a ``/dev/drbd/by-res/<res>/<vol>`` path (8.4, 9) or ``/dev/drbd/by-res/<res>``
  (8.3): the resource and volume are in the name;
- a block device with major 147 (``/dev/drbdN``, or any symlink or custom
  device name resolving to one): the minor is N;
- a device-mapper or md device (LVM on DRBD), or a partition, whose ``slaves``
  (or parent) in sysfs lead to DRBD;
- a loop device whose backing file (sysfs ``loop/backing_file``) is on DRBD;
- a file on a file system (GFS2, OCFS2, ext4, ...) that lives on one of the above.

Putting a resource name on a minor is the reader's job
(:meth:`livemig.drbd.tools.DrbdReader.names_for_minors`).

A layer whose backing cannot be traced (a file on a file system whose files
have an anonymous device: btrfs, overlayfs, ZFS, NFS, FUSE, ...; a path that
does not exist here; a storage-pool volume; a vhost-user or vDPA disk; a network
disk served on this node; a block device a user-space process serves) may be on
DRBD: where DRBD is loaded on this node (``/proc/drbd`` exists) that raises
:class:`DrbdMappingError`, telling the operator to name the resources
(``drbd_resources``): the guard must not assume "not on DRBD" for a disk it
could not look at. Where DRBD is not loaded nothing can be on local DRBD, and
such a layer is not on DRBD. A file system that has no block device at all
(tmpfs, ramfs, ...) is not on DRBD. A ``/dev/drbd*`` name that does not resolve
names DRBD without saying which resource: it raises wherever it is.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Tuple

from livemig.bounded import CallTimeout, bounded_call
from livemig.domain_xml import DomainDisk, DomainXMLError, parse_domain_xml
from livemig.drbd.byres import BY_RES_PATH, DRBD_DEVICE
from livemig.drbd.proc import proc_drbd_path
from livemig.drbd.state import DrbdStateError
from livemig.files import FileUnreadable, read_small_file

if TYPE_CHECKING:
    from livemig.drbd.tools import DrbdReader
    from livemig.ocf.deadline import Deadline
    from livemig.run import CommandRunner

#: The block major the kernel assigns to DRBD devices.
DRBD_MAJOR = 147
MOUNTINFO_PATH = "/proc/self/mountinfo"
SYSFS_ROOT = "/sys"

#: File systems whose files live in memory: there is no block device under them that DRBD could be.
NO_BLOCK_DEVICE_FS = frozenset({
    "tmpfs", "ramfs", "devtmpfs", "hugetlbfs", "proc", "sysfs", "devpts", "mqueue", "debugfs",
    "tracefs", "securityfs", "configfs", "cgroup", "cgroup2", "pstore", "bpf", "efivarfs",
})
#: Block devices (by kernel name) whose data a user-space process serves: nothing to trace below them.
USER_SPACE_BLOCK_DEVICES = ("nbd", "ublkb")

#: The reason an operator gets for every disk that cannot be traced.
OPERATOR_HINT = ("tell the agent which DRBD resources the VM uses: drbd_resources=<the DRBD resources "
                 "behind the VM> (or drbd_guard=off if it uses none)")

#: Tracing every disk of a domain may take this long at most (a hung NFS or FUSE mount).
TRACE_TIMEOUT = 10.0

_MAX_STACK_DEPTH = 8
_MAX_TRACE_STEPS = 256
_MAX_MOUNTINFO_BYTES = 8 * 1024 * 1024
_MAX_SYSFS_BYTES = 4096 + 64  # a path (PATH_MAX) and a newline
_MAX_REASONS_SHOWN = 3


class DrbdMappingError(DrbdStateError):
    """A disk's backing could not be determined."""


@dataclass(frozen=True)
class DrbdDiskRef:
    """A disk found on DRBD: by minor, or by resource (and volume) from a by-res path."""

    disk: DomainDisk
    minor: Optional[int] = None
    resource: Optional[str] = None
    volume: Optional[int] = None
    where: str = "source"


StatFunction = Callable[[str], os.stat_result]


def domain_disks(xml_text: str) -> List[DomainDisk]:
    """The disks of a libvirt domain XML (:func:`livemig.domain_xml.parse_domain_xml`).

    Raises :class:`DrbdMappingError` on XML that is not a domain: the guard refuses what it cannot read.
    """
    try:
        return list(parse_domain_xml(xml_text, strict=False).disks)
    except DomainXMLError as exc:
        raise DrbdMappingError(str(exc)) from None


class _Problem(NamedTuple):
    text: str
    names_drbd: bool  # a /dev/drbd* name: on DRBD whatever is loaded, but which resource cannot be told


class _Tracer:
    """Follows one disk's layers down to block devices; collects DRBD minors and what could not be traced."""

    def __init__(self, stat: StatFunction, sysfs_root: str, mountinfo: str) -> None:
        self.stat = stat
        self.sysfs_root = sysfs_root
        self.mountinfo = mountinfo
        self.minors: List[int] = []
        self.problems: List[_Problem] = []
        self._steps = 0
        self._mounts: Optional[Dict[str, str]] = None
        self._mounts_error: Optional[str] = None

    def problem(self, text: str, names_drbd: bool = False) -> None:
        self.problems.append(_Problem(text, names_drbd))

    def found(self, minor: int) -> None:
        if minor not in self.minors:
            self.minors.append(minor)

    def path(self, path: str, depth: int) -> None:
        """A path: a block device is traced by its device number, a file or directory by its file system's."""
        try:
            st = self.stat(path)
        except OSError as exc:
            named = DRBD_DEVICE.match(path)
            if named:  # /dev/drbdN names its minor even where the node is absent
                self.found(int(named.group(1)))
            elif path.startswith("/dev/drbd"):
                self.problem(f"{path} cannot be resolved ({exc.strerror or exc})", names_drbd=True)
            elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
                self.problem(f"{path} does not exist here (it may be on DRBD once its storage is active: "
                             "an LV on DRBD, a file system on DRBD not mounted yet)")
            else:
                self.problem(f"{path} cannot be looked at ({exc.strerror or exc})")
            return
        if stat_module.S_ISBLK(st.st_mode):
            self.device(os.major(st.st_rdev), os.minor(st.st_rdev), depth, path)
        elif stat_module.S_ISREG(st.st_mode) or stat_module.S_ISDIR(st.st_mode):
            self.file_system(st.st_dev, path, depth)
        # anything else (a character device, socket, FIFO) is no storage a file system or DRBD is under

    def file_system(self, dev: int, path: str, depth: int) -> None:
        major, minor = os.major(dev), os.minor(dev)
        if major != 0:
            self.device(major, minor, depth, path)
            return
        fs_type = self.fs_type(f"{major}:{minor}")
        if fs_type in NO_BLOCK_DEVICE_FS:
            return
        if fs_type is None:
            self.problem(f"{path} is on device 0:{minor}, a file system with no block device of its own, "
                         f"and {self._mounts_error}")
        else:
            self.problem(f"{path} is on {fs_type} (device 0:{minor}): its files have an anonymous device, "
                         "so the block devices under it cannot be traced")

    def fs_type(self, number: str) -> Optional[str]:
        """The type of the mounted file system with device ``major:minor`` (None: see ``_mounts_error``)."""
        if self._mounts is None:
            self._mounts = {}
            data = _read_bounded(self.mountinfo, _MAX_MOUNTINFO_BYTES)
            if data is None:
                self._mounts_error = f"the mount table {self.mountinfo} could not be read"
                return None
            for line in data.splitlines():
                fields = line.split(" ")
                if len(fields) < 3 or " - " not in line:
                    continue
                after = line.split(" - ", 1)[1].split(" ")
                self._mounts.setdefault(fields[2], after[0])
        found = self._mounts.get(number)
        if found is None and self._mounts_error is None:
            self._mounts_error = f"no mount in {self.mountinfo} has that device"
        return found

    def device(self, major: int, minor: int, depth: int, via: str) -> None:
        """Block device ``major:minor`` (reached through ``via``): DRBD, or what sysfs says is under it."""
        self._steps += 1
        if self._steps > _MAX_TRACE_STEPS:
            if self._steps == _MAX_TRACE_STEPS + 1:
                self.problem(f"{via}: more than {_MAX_TRACE_STEPS} block devices under it, not all traced")
            return
        if major == DRBD_MAJOR:
            self.found(minor)
            return
        if depth >= _MAX_STACK_DEPTH:
            self.problem(f"{via}: block devices stacked more than {_MAX_STACK_DEPTH} deep, not all traced")
            return
        node = os.path.join(self.sysfs_root, "dev", "block", f"{major}:{minor}")
        if not os.path.isdir(node):
            self.problem(f"{via} is on block device {major}:{minor}, which is not in {self.sysfs_root}/dev/block")
            return
        if os.path.exists(os.path.join(node, "partition")):
            node = os.path.dirname(os.path.realpath(node))
        name = os.path.basename(os.path.realpath(node))
        if os.path.isdir(os.path.join(node, "loop")):
            self.loop(node, name, depth, via)
            return
        if name.startswith(USER_SPACE_BLOCK_DEVICES):
            self.problem(f"{via} is on /dev/{name}, a block device served by a user-space process, "
                         "whose storage cannot be traced")
            return
        slaves = os.path.join(node, "slaves")
        try:
            names = sorted(os.listdir(slaves))
        except OSError as exc:
            self.problem(f"{via} is on /dev/{name}, whose {slaves} cannot be listed ({exc.strerror or exc})")
            return
        for slave in names:
            numbers = _read_dev_numbers(os.path.join(slaves, slave, "dev"))
            if numbers is None:
                self.problem(f"{via} is on /dev/{name}, stacked on {slave}, whose device number cannot be read")
            else:
                self.device(numbers[0], numbers[1], depth + 1, via)

    def loop(self, node: str, name: str, depth: int, via: str) -> None:
        """A loop device: the file (or device) it reads from, from sysfs ``loop/backing_file``."""
        data = _read_bounded(os.path.join(node, "loop", "backing_file"), _MAX_SYSFS_BYTES)
        backing = data.rstrip("\n") if data is not None else ""
        if not backing:
            self.problem(f"{via} is on the loop device /dev/{name}, whose backing file cannot be read from sysfs")
        elif backing.endswith(" (deleted)"):
            self.problem(f"{via} is on the loop device /dev/{name} over {backing[:-len(' (deleted)')]}, "
                         "which has been deleted")
        elif not backing.startswith("/"):
            self.problem(f"{via} is on the loop device /dev/{name} over {backing!r}, not an absolute path")
        else:
            before = len(self.problems)
            self.path(backing, depth + 1)
            for index in range(before, len(self.problems)):  # say how the backing file is reached
                text, names_drbd = self.problems[index]
                self.problems[index] = _Problem(f"{via} is on the loop device /dev/{name} over {backing}, and "
                                                f"{text}", names_drbd)


def _read_bounded(path: str, limit: int) -> Optional[str]:
    """The text of a small kernel file (at most ``limit`` bytes), or None if unreadable or larger.

    In the tracer's thread (:func:`resources_from_domain_xml` bounds the whole walk).
    """
    try:
        return os.fsdecode(read_small_file(path, limit, kernel=True))
    except FileUnreadable:
        return None


def drbd_refs_for_disk(disk: DomainDisk, stat: StatFunction = os.stat,
                       sysfs_root: str = SYSFS_ROOT, *, proc_drbd: Optional[str] = None,
                       mountinfo: str = MOUNTINFO_PATH, untraceable_ok: bool = False) -> List[DrbdDiskRef]:
    """The DRBD devices behind every layer of ``disk`` ([] when it is not on DRBD).

    Raises :class:`DrbdMappingError` when a layer cannot be traced and DRBD
    is loaded on this node (``proc_drbd``, default :func:`~livemig.drbd.proc.proc_drbd_path`,
    exists), or names DRBD without saying which resource. ``untraceable_ok``:
    such layers are skipped instead (the operator named the resources); what
    could be traced is still returned.
    """
    tracer = _Tracer(stat, sysfs_root, mountinfo)
    refs: List[DrbdDiskRef] = []
    for layer in disk.storage():
        before = len(tracer.problems)
        path = layer.path
        if path is not None:
            by_res = BY_RES_PATH.match(path)
            if by_res:
                volume = int(by_res.group(2)) if by_res.group(2) is not None else None
                refs.append(DrbdDiskRef(disk=disk, resource=by_res.group(1), volume=volume, where=layer.where))
                continue
            known = len(tracer.minors)
            tracer.path(path, 0)
            refs.extend(DrbdDiskRef(disk=disk, minor=m, where=layer.where) for m in tracer.minors[known:])
        elif layer.disk_type == "network":
            if layer.served_here:
                tracer.problem(f"the network disk {layer.source} is served on this node (a unix socket or a "
                               "loopback host), so what stores it cannot be traced")
        elif layer.disk_type == "volume":
            tracer.problem(f"{layer.source} is a storage-pool volume, whose pool's storage is not traced")
        elif layer.disk_type == "vhostuser":
            tracer.problem(f"a vhost-user process serves it on {layer.source}, and its storage cannot be traced")
        elif layer.disk_type == "vhostvdpa":
            tracer.problem(f"it is the vDPA device {layer.source}, whose storage cannot be traced")
        elif layer.disk_type != "nvme":  # an NVMe controller handed to QEMU: hardware, not DRBD
            tracer.problem(f"libvirt disk type {layer.disk_type!r} is not one livemig can trace")
        if layer.where != "source":
            for index in range(before, len(tracer.problems)):
                text, names_drbd = tracer.problems[index]
                tracer.problems[index] = _Problem(f"{text} (its {layer.where})", names_drbd)
    if tracer.problems and not untraceable_ok:
        named = [p.text for p in tracer.problems if p.names_drbd]
        if named:
            raise DrbdMappingError(f"disk {disk.label()}: {_reasons(named)}: it names DRBD but not which "
                                   f"resource; use a /dev/drbd/by-res/RES/VOL path, or {OPERATOR_HINT}")
        if drbd_loaded(proc_drbd):
            raise DrbdMappingError(
                f"disk {disk.label()}: cannot tell whether it is on DRBD: "
                f"{_reasons([p.text for p in tracer.problems])}. DRBD is loaded on this node, so it may be; "
                f"{OPERATOR_HINT}")
    return refs


def _reasons(texts: List[str]) -> str:
    shown = "; ".join(texts[:_MAX_REASONS_SHOWN])
    more = len(texts) - _MAX_REASONS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")


def drbd_loaded(proc_drbd: Optional[str] = None) -> bool:
    """Whether DRBD is loaded here: ``/proc/drbd`` (or ``LIVEMIG_PROC_DRBD``) exists; True when that cannot be told."""
    path = proc_drbd or proc_drbd_path()
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # fail closed: it may be there
    return True


def drbd_minors_below(device: int, sysfs_root: str = SYSFS_ROOT, stat: StatFunction = os.stat) -> List[int]:
    """DRBD minors that ``device`` is, or is stacked on (slaves, partitions, loop backing files)."""
    tracer = _Tracer(stat, sysfs_root, MOUNTINFO_PATH)
    tracer.device(os.major(device), os.minor(device), 0, f"{os.major(device)}:{os.minor(device)}")
    return tracer.minors


def _read_dev_numbers(path: str) -> Optional[Tuple[int, int]]:
    text = (_read_bounded(path, 64) or "").strip()
    major, _, minor = text.partition(":")
    if not (major.isascii() and minor.isascii() and major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def resources_from_domain_xml(xml_text: str, runner: CommandRunner, deadline: Deadline,
                              *, reader: Optional[DrbdReader] = None, untraceable_ok: bool = False,
                              stat: StatFunction = os.stat, sysfs_root: str = SYSFS_ROOT,
                              proc_drbd: Optional[str] = None, mountinfo: str = MOUNTINFO_PATH,
                              trace_timeout: float = TRACE_TIMEOUT) -> List[str]:
    """The DRBD resources behind a domain's disks, in disk order ([] if none).

    ``untraceable_ok``: the operator named the resources (``drbd_resources``), so
    a disk layer whose backing cannot be traced is left to that list instead of
    raising :class:`DrbdMappingError`; the DRBD resources of what can be traced
    are still returned.

    Raises :class:`~livemig.drbd.state.DrbdStateError` (or its subclass
    :class:`~livemig.drbd.mapping.DrbdMappingError`) when a disk's backing,
    or the resource of a DRBD minor, cannot be told: fail closed. Tracing the
    disks (``stat`` and sysfs reads, which a hung NFS or FUSE mount can block)
    takes at most ``trace_timeout`` seconds, never past ``deadline``.
    """
    disks = domain_disks(xml_text)

    def trace() -> List[DrbdDiskRef]:
        return [ref for disk in disks
                for ref in drbd_refs_for_disk(disk, stat, sysfs_root, proc_drbd=proc_drbd, mountinfo=mountinfo,
                                              untraceable_ok=untraceable_ok)]

    seconds = deadline.bound(trace_timeout)
    try:
        refs = bounded_call("trace the domain's disks", seconds, trace) if disks else []
    except CallTimeout:
        raise DrbdMappingError(f"the storage behind the domain's disks did not answer within {seconds:.1f}s "
                               "(a hung NFS, FUSE or cluster file system?): cannot tell which DRBD resources "
                               f"are behind them; {OPERATOR_HINT}") from None
    minors = sorted({ref.minor for ref in refs if ref.minor is not None and ref.resource is None})
    names: Dict[int, str] = {}
    if minors:
        # Only a bare minor needs DRBD's tools; a VM without DRBD disks never imports them.
        from livemig.drbd.tools import DrbdReader

        reader = reader or DrbdReader(runner, deadline, proc_path=proc_drbd)
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
