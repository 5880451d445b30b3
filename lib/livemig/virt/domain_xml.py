"""Reading a domain's XML configuration (the agent's ``config`` file) with lxml.

The parser refuses what a configuration file has no business containing:
entities are not resolved, no DTD is loaded, nothing is fetched from the
network, and huge trees are rejected (billion-laughs, XXE).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

MAX_CONFIG_BYTES = 4 * 1024 * 1024


class DomainXMLError(Exception):
    """The XML is not a usable libvirt domain definition."""


class ConfigUnreadable(Exception):  # noqa: N818 - reads as a condition
    """The configuration file cannot be read (missing, permissions, too big)."""


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


def read_config_text(path: str) -> str:
    """The file's text; :class:`ConfigUnreadable` with the OS reason otherwise.

    Opened non-blocking and checked to be a regular file before reading, so a
    FIFO or device named as the config cannot hang the agent.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise ConfigUnreadable(f"{path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigUnreadable(f"{path} is not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise DomainXMLError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a domain definition")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigUnreadable(f"{path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # grew between fstat and read
        raise DomainXMLError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a domain definition")
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


def load_domain_config(path: str) -> Tuple[DomainConfig, str]:
    """Parse the file at ``path``; returns the config and the raw XML text."""
    text = read_config_text(path)
    return parse_domain_xml(text, origin=path), text
