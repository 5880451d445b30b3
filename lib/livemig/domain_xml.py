"""The one reading of a libvirt domain XML: the config file, and the live XML libvirt returns.

:func:`parse_domain_xml` reads a ``<domain>`` into a :class:`DomainConfig`:
its name, uuid and type, its disks (:class:`DomainDisk`), the libvirt networks
its interfaces use and the storage pools its volume disks use. The parser is
:func:`livemig.xmlsafe.safe_xml_parser` (no entities resolved, no DTD, no
network, no huge trees); ``strict`` (the agent's config file) also refuses a
DOCTYPE or entity declaration, and a missing or unusable name.

A ``<disk>`` is read as libvirt reads it (formatdomain, "Hard drives, floppy
disks, CDROMs"): its ``type`` (``file`` when it has none) says which attribute
of ``<source>`` names the storage (``file``, ``dev``, ``dir``; ``pool`` and
``volume``; ``protocol`` and ``name``; ...), and an attribute of another type is
ignored, as libvirt ignores it. Every layer of the disk is kept: the
``<source>``, each nested ``<backingStore>`` (each with its own type and
source), and the ``<mirror>`` of a block job in the live XML (the destination
the disk pivots onto, with its own chain). What is behind a layer (DRBD or not)
is :mod:`livemig.drbd.mapping`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:
    from lxml import etree

MAX_CONFIG_BYTES = 4 * 1024 * 1024

#: libvirt's type for a ``<disk>`` (or ``<backingStore>``, ``<mirror>``) that has none.
DEFAULT_DISK_TYPE = "file"
#: The disk types whose storage is a local path, and the ``<source>`` attribute naming it.
PATH_ATTRIBUTES = {"file": "file", "block": "dev", "dir": "dir"}

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6",
                             "ip6-localhost", "ip6-loopback"})


class DomainXMLError(Exception):
    """The XML is not a usable libvirt domain definition."""


class ConfigUnreadable(Exception):  # noqa: N818 - reads as a condition
    """The configuration file cannot be read (missing, permissions, not a file, its mount hung)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class DiskLayer:
    """One layer of a disk's storage: its ``<source>``, a ``<backingStore>``, or a block job's ``<mirror>``.

    ``disk_type`` is the layer's own type. ``source`` names its storage: the
    path of a file, block or dir layer, ``pool/volume``, ``protocol:name``, the
    socket of a vhost-user layer, the device of a vDPA layer (None: nothing
    named). ``where`` says which element it is (``source``, ``backingStore 1``
    for the first layer below the source, ``mirror``). ``served_here``: a
    network layer whose server is on this node (a unix socket, a loopback host).
    """

    disk_type: str
    source: Optional[str]
    where: str = "source"
    served_here: bool = False

    @property
    def path(self) -> Optional[str]:
        """The local path (file, block and dir layers), else None."""
        return self.source if self.disk_type in PATH_ATTRIBUTES else None


@dataclass(frozen=True)
class DomainDisk:
    """One ``<disk>``: its target (``vda``), type and source, every layer of its storage, its device kind.

    ``device`` is ``disk``, ``cdrom``, ``floppy`` or ``lun``; ``pool`` the
    storage pool of a ``volume`` disk.
    """

    target: Optional[str]
    disk_type: Optional[str]
    source: Optional[str]
    layers: Tuple[DiskLayer, ...] = ()
    device: str = "disk"
    pool: Optional[str] = None

    @property
    def path(self) -> Optional[str]:
        """The local path of the disk's own source (file, block and dir disks), else None."""
        return self.source if (self.disk_type or DEFAULT_DISK_TYPE) in PATH_ATTRIBUTES else None

    def label(self) -> str:
        return self.target or self.source or "(unnamed disk)"

    def storage(self) -> Tuple[DiskLayer, ...]:
        """The layers to trace (a disk built without ``layers``: its source alone)."""
        if self.layers:
            return self.layers
        if self.source is None:
            return ()
        return (DiskLayer(self.disk_type or DEFAULT_DISK_TYPE, self.source),)


@dataclass(frozen=True)
class DomainConfig:
    """A domain definition. ``name`` is '' only when parsed with ``strict=False`` from XML without one."""

    name: str
    uuid: Optional[str]
    domain_type: Optional[str]
    disks: Tuple[DomainDisk, ...] = field(default_factory=tuple)
    networks: Tuple[str, ...] = field(default_factory=tuple)
    pools: Tuple[str, ...] = field(default_factory=tuple)


def read_config_text(path: str, seconds: float = 10.0) -> str:
    """The file's text; :class:`ConfigUnreadable` with the reason otherwise.

    Through :func:`livemig.files.read_regular_file`: a FIFO or device named as
    the config cannot hang the agent, nor a mount that stopped answering for
    more than ``seconds``.
    """
    from livemig.files import FileNotText, FileTooLarge, FileUnreadable, read_text_file

    try:
        return read_text_file(path, MAX_CONFIG_BYTES, seconds)
    except FileTooLarge:
        raise DomainXMLError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a domain definition") from None
    except FileNotText:
        raise DomainXMLError(f"{path} is not UTF-8 text") from None
    except FileUnreadable as exc:
        raise ConfigUnreadable(str(exc), timed_out=exc.timed_out) from None


def parse_domain_xml(text: str, origin: str = "domain XML", *, strict: bool = True) -> DomainConfig:
    """The domain ``text`` describes; :class:`DomainXMLError` unless it is a well-formed ``<domain>``.

    ``strict`` (the config file the agent starts): no DOCTYPE or entity
    declaration, and a ``<name>`` libvirt accepts. Otherwise (the live XML, an
    operator's file for ``livemig guard`` or ``check``) the name may be
    missing (``''``).
    """
    from lxml import etree

    from livemig.xmlsafe import safe_xml_parser

    if strict and ("<!ENTITY" in text or "<!DOCTYPE" in text):
        raise DomainXMLError(f"{origin} declares a DOCTYPE or entities, which a domain definition never needs")
    try:
        root = etree.fromstring(text.encode("utf-8"), parser=safe_xml_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DomainXMLError(f"{origin} is not well-formed XML: {exc}") from None
    if root is None or root.tag != "domain":
        tag = getattr(root, "tag", None)
        raise DomainXMLError(f"{origin} is not a libvirt domain definition (root element {tag!r}, expected 'domain')")
    name = (root.findtext("name") or "").strip()
    if strict and not name:
        raise DomainXMLError(f"{origin} has no <name>")
    if strict and (len(name) > 255 or "/" in name or any(ord(c) < 32 for c in name)):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise DomainXMLError(f"invalid domain name {shown!r} in {origin} (at most 255 characters, no '/')")
    uuid = (root.findtext("uuid") or "").strip() or None
    disks = tuple(_disk(disk) for disk in root.iterfind("devices/disk"))
    pools = [d.pool for d in disks if d.pool and d.disk_type == "volume"]
    networks = [src.get("network") or "" for src in root.iterfind("devices/interface[@type='network']/source")]
    return DomainConfig(name=name, uuid=uuid, domain_type=root.get("type"), disks=disks,
                        networks=tuple(n for n in networks if n), pools=tuple(dict.fromkeys(pools)))


def domain_name(text: str) -> Optional[str]:
    """The ``<name>`` of the domain ``text`` describes; None when it is not a domain XML or has none."""
    try:
        return parse_domain_xml(text, strict=False).name or None
    except DomainXMLError:
        return None


def load_domain_config(path: str, seconds: float = 10.0) -> Tuple[DomainConfig, str]:
    """Parse the file at ``path`` (read within ``seconds``); returns the config and the raw XML text."""
    text = read_config_text(path, seconds)
    return parse_domain_xml(text, origin=path), text


def _disk(disk: etree._Element) -> DomainDisk:
    target = disk.find("target")
    disk_type = disk.get("type") or DEFAULT_DISK_TYPE
    source = disk.find("source")
    top = _layer(disk_type, source, "source")
    layers = [] if top is None else [top]
    layers.extend(_backing_chain(disk, "backingStore"))
    mirror = disk.find("mirror")
    if mirror is not None:
        mirror_type = mirror.get("type") or DEFAULT_DISK_TYPE
        own = _layer(mirror_type, mirror.find("source"), "mirror")
        if own is None and mirror.get("file"):  # libvirt before 1.2.6: <mirror file=... format=...>
            own = DiskLayer("file", mirror.get("file"), "mirror")
        if own is not None:
            layers.append(own)
        layers.extend(_backing_chain(mirror, "mirror backingStore"))
    return DomainDisk(
        target=target.get("dev") if target is not None else None,
        disk_type=disk_type,
        source=top.source if top is not None else None,
        layers=tuple(layer for layer in layers if layer.path is not None or layer.disk_type not in PATH_ATTRIBUTES),
        device=disk.get("device") or "disk",
        pool=source.get("pool") if source is not None else None,
    )


def _backing_chain(element: etree._Element, name: str) -> List[DiskLayer]:
    """The nested ``<backingStore>`` layers below ``element`` (an empty one ends the chain)."""
    layers = []
    depth = 0
    node = element.find("backingStore")
    while node is not None and (node.get("type") is not None or node.find("source") is not None):
        depth += 1  # bounded: each step goes one element deeper into a finite, parsed tree
        layer = _layer(node.get("type") or DEFAULT_DISK_TYPE, node.find("source"), f"{name} {depth}")
        if layer is not None:
            layers.append(layer)
        node = node.find("backingStore")
    return layers


def _layer(disk_type: str, source: Optional[etree._Element], where: str) -> Optional[DiskLayer]:
    """The layer ``<source>`` describes for a disk of ``disk_type`` (None without a ``<source>``)."""
    if source is None:
        return None
    if disk_type in PATH_ATTRIBUTES:
        return DiskLayer(disk_type, source.get(PATH_ATTRIBUTES[disk_type]), where)
    if disk_type == "volume":
        pool, volume = source.get("pool"), source.get("volume")
        return DiskLayer(disk_type, f"{pool}/{volume}" if pool or volume else None, where)
    if disk_type == "network":
        protocol, name = source.get("protocol"), source.get("name")
        named = f"{protocol}:{name}" if name else protocol
        return DiskLayer(disk_type, named, where, served_here=_served_here(protocol, source))
    if disk_type == "nvme":
        address = source.find("address")
        pci = ":".join(address.get(k) or "?" for k in ("domain", "bus", "slot", "function")) \
            if address is not None else "?"
        return DiskLayer(disk_type, f"NVMe namespace {source.get('namespace')} at PCI {pci}", where)
    if disk_type == "vhostuser":
        return DiskLayer(disk_type, source.get("path"), where)
    if disk_type == "vhostvdpa":
        return DiskLayer(disk_type, source.get("dev"), where)
    return DiskLayer(disk_type, None, where)


def _served_here(protocol: Optional[str], source: etree._Element) -> bool:
    """A network source whose server runs on this node: a unix socket, or a loopback host."""
    import ipaddress  # here: only a network disk needs it

    hosts = source.findall("host")
    if protocol == "sheepdog" and not hosts:
        return True  # libvirt's default sheepdog server is localhost:7000
    for host in hosts:
        if host.get("transport") == "unix":
            return True
        name = (host.get("name") or "").strip().strip("[]").lower()
        if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
            return True
        try:
            if ipaddress.ip_address(name).is_loopback:
                return True
        except ValueError:
            pass
    return False
