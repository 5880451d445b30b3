"""Reading a domain's XML configuration (the agent's ``config`` file) with lxml.

The parser refuses what a configuration file has no business containing:
entities are not resolved, no DTD is loaded, nothing is fetched from the
network, and huge trees are rejected (billion-laughs, XXE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

MAX_CONFIG_BYTES = 4 * 1024 * 1024


class DomainXMLError(Exception):
    """The XML is not a usable libvirt domain definition."""


class ConfigUnreadable(Exception):  # noqa: N818 - reads as a condition
    """The configuration file cannot be read (missing, permissions, not a file, its mount hung)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class DiskSource:
    device: str  # disk | cdrom | floppy | lun
    kind: str  # block | file | network | volume | ...
    path: Optional[str]  # dev= or file= for local sources
    pool: Optional[str] = None
    target: Optional[str] = None


@dataclass(frozen=True)
class DomainConfig:
    name: str
    uuid: Optional[str]
    domain_type: Optional[str]
    disks: Tuple[DiskSource, ...] = field(default_factory=tuple)
    networks: Tuple[str, ...] = field(default_factory=tuple)
    pools: Tuple[str, ...] = field(default_factory=tuple)


def read_config_text(path: str, seconds: float = 10.0) -> str:
    """The file's text; :class:`ConfigUnreadable` with the reason otherwise.

    Through :func:`livemig.files.read_regular_file`: a FIFO or device named as
    the config cannot hang the agent, nor a mount that stopped answering for
    more than ``seconds``.
    """
    from livemig.files import FileTooLarge, FileUnreadable, read_regular_file

    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES, seconds)
    except FileTooLarge:
        raise DomainXMLError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a domain definition") from None
    except FileUnreadable as exc:
        raise ConfigUnreadable(str(exc), timed_out=exc.timed_out) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DomainXMLError(f"{path} is not UTF-8 text") from None


def parse_domain_xml(text: str, origin: str = "domain XML") -> DomainConfig:
    from lxml import etree

    from livemig.xmlsafe import safe_xml_parser

    if "<!ENTITY" in text or "<!DOCTYPE" in text:
        raise DomainXMLError(f"{origin} declares a DOCTYPE or entities, which a domain definition never needs")
    try:
        root = etree.fromstring(text.encode("utf-8"), parser=safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise DomainXMLError(f"{origin} is not well-formed XML: {exc}") from None
    if root is None or root.tag != "domain":
        tag = getattr(root, "tag", None)
        raise DomainXMLError(f"{origin} is not a libvirt domain definition (root element {tag!r}, expected 'domain')")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise DomainXMLError(f"{origin} has no <name>")
    if len(name) > 255 or "/" in name or any(ord(c) < 32 for c in name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise DomainXMLError(f"invalid domain name {shown!r} in {origin} (at most 255 characters, no '/')")
    uuid = (root.findtext("uuid") or "").strip() or None

    disks: List[DiskSource] = []
    pools: List[str] = []
    for disk in root.iterfind("devices/disk"):
        source = disk.find("source")
        kind = disk.get("type") or "file"
        path = None
        pool = None
        if source is not None:
            path = source.get("dev") or source.get("file")
            pool = source.get("pool")
            if pool and kind == "volume":
                pools.append(pool)
        target = disk.find("target")
        disks.append(DiskSource(device=disk.get("device") or "disk", kind=kind, path=path, pool=pool,
                                target=target.get("dev") if target is not None else None))
    networks = [src.get("network") or "" for src in root.iterfind("devices/interface[@type='network']/source")]
    return DomainConfig(name=name, uuid=uuid, domain_type=root.get("type"), disks=tuple(disks),
                        networks=tuple(n for n in networks if n), pools=tuple(dict.fromkeys(pools)))


def load_domain_config(path: str, seconds: float = 10.0) -> Tuple[DomainConfig, str]:
    """Parse the file at ``path`` (read within ``seconds``); returns the config and the raw XML text."""
    text = read_config_text(path, seconds)
    return parse_domain_xml(text, origin=path), text
