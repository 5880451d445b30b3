"""DRBD configuration from ``drbdadm -v dump-xml <res>``.

``-v`` makes drbdadm fold the ``common`` section into each resource, so a
resource's own sections are complete. What drbd-utils 9 prints (8.4's shape
is close; 8.3 prints the protocol as a ``<protocol>`` element)::

    <resource name="r0" conf-file-line="/etc/drbd.d/r0.res:1">
      <host name="alpha">
        <volume vnr="0"><device minor="0">/dev/drbd0</device><disk>...</disk>...</volume>
        <address family="ipv4" port="7788">10.0.0.1</address>
      </host>
      <connection>
        <host name="alpha">...</host><host name="beta">...</host>   (or inside <path>)
        <section name="net"><option name="_name" value="beta"/>...</section>
      </connection>
      <section name="net"><option name="allow-two-primaries" value="yes"/>...</section>
      <section name="options"><option name="auto-promote" value="no"/></section>
    </resource>

With a resource argument there is no ``<config>`` wrapper; both shapes parse.
The XML is parsed with entities unresolved, no DTD and no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from lxml import etree

from livemig.drbd.state import DrbdStateError
from livemig.xmlsafe import safe_xml_parser

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


@dataclass(frozen=True)
class VolumeConfig:
    volume: Optional[int]
    minor: Optional[int]
    device: Optional[str]
    disk: Optional[str]
    meta_disk: Optional[str]


@dataclass(frozen=True)
class HostConfig:
    name: str
    volumes: Tuple[VolumeConfig, ...]
    address: Optional[str]


@dataclass(frozen=True)
class ConnectionConfig:
    """A ``<connection>``: the host names it joins and its own option sections."""

    hosts: Tuple[str, ...]
    sections: Mapping[str, Mapping[str, str]]

    @property
    def name(self) -> Optional[str]:
        return self.sections.get("net", {}).get("_name")


@dataclass(frozen=True)
class DrbdResourceConfig:
    """A resource's configuration. Option values are the strings drbdadm wrote."""

    name: str
    hosts: Tuple[HostConfig, ...]
    connections: Tuple[ConnectionConfig, ...]
    sections: Mapping[str, Mapping[str, str]]
    protocol_element: Optional[str] = None
    volumes: Tuple[VolumeConfig, ...] = field(default=())
    #: 8.3 dumps the protocol as an attribute of ``<resource>``
    protocol_attribute: Optional[str] = None
    #: the file the resource is defined in (``conf-file-line``, else the ``<config file=...>`` of the dump)
    conf_file: Optional[str] = None
    #: the drbd-utils generation the dump's shape shows: "9" (``<connection>``), "8.3" (``<device>`` under
    #: ``<host>``, or the protocol attribute), else "8.4"
    dump_generation: str = "8.4"

    def connection_to(self, peer: str) -> Optional[ConnectionConfig]:
        """The connection naming host ``peer`` (by host element or by ``_name``)."""
        for conn in self.connections:
            if peer in conn.hosts or conn.name == peer:
                return conn
        return None

    def option(self, section: str, name: str, peer: Optional[str] = None) -> Optional[str]:
        """An option's value: the connection to ``peer`` first, then the resource."""
        if peer is not None:
            conn = self.connection_to(peer)
            if conn is not None and name in conn.sections.get(section, {}):
                return conn.sections[section][name]
        return self.sections.get(section, {}).get(name)

    def protocol(self, peer: Optional[str] = None) -> Optional[str]:
        return self.option("net", "protocol", peer) or self.protocol_element

    def allow_two_primaries(self, peer: Optional[str] = None) -> Optional[bool]:
        return yes_no(self.option("net", "allow-two-primaries", peer))

    def fencing(self, peer: Optional[str] = None) -> Optional[str]:
        """The fencing policy: a net option in DRBD 9, a disk option in 8.x."""
        return self.option("net", "fencing", peer) or self.option("disk", "fencing", peer)

    @property
    def auto_promote(self) -> Optional[bool]:
        return yes_no(self.option("options", "auto-promote"))

    def minors(self, host: Optional[str] = None) -> Dict[int, Optional[int]]:
        """minor -> volume number, for ``host`` (or for every host and the resource)."""
        found: Dict[int, Optional[int]] = {}
        volume_sets = [h.volumes for h in self.hosts if host is None or h.name == host]
        volume_sets.append(self.volumes)
        for volumes in volume_sets:
            for vol in volumes:
                if vol.minor is not None:
                    found[vol.minor] = vol.volume
        return found


def yes_no(value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    return {"yes": True, "no": False, "true": True, "false": False}.get(value.strip().lower())


def parse_dump_xml(text: str) -> Tuple[DrbdResourceConfig, ...]:
    """Parse ``drbdadm [-v] dump-xml`` output; :class:`DrbdStateError` if it is not that."""
    body = _XML_DECLARATION.sub("", text, count=1).strip()
    if not body.startswith("<config"):
        body = f"<config>{body}</config>"
    try:
        root = etree.fromstring(body.encode("utf-8"), parser=safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise DrbdStateError(f"drbdadm dump-xml: not well-formed XML ({exc})") from None
    return tuple(_resource(el, root.get("file") or None) for el in root.iter("resource"))


def _resource(el: etree._Element, dump_file: Optional[str]) -> DrbdResourceConfig:
    name = el.get("name")
    if not name:
        raise DrbdStateError("drbdadm dump-xml: a <resource> has no name")
    line = el.get("conf-file-line") or ""
    if el.find("connection") is not None:
        generation = "9"
    elif el.find("host/device") is not None or el.get("protocol") is not None:
        generation = "8.3"
    else:
        generation = "8.4"
    return DrbdResourceConfig(
        name=name,
        hosts=tuple(_host(h) for h in el.findall("host")),
        connections=tuple(_connection(c) for c in el.findall("connection")),
        sections=_sections(el),
        protocol_element=_text(el.find("protocol")),
        volumes=tuple(_volume(v) for v in el.findall("volume")),
        protocol_attribute=el.get("protocol"),
        conf_file=line.rsplit(":", 1)[0] if line else dump_file,
        dump_generation=generation,
    )


def _host(el: etree._Element) -> HostConfig:
    address = el.find("address")
    return HostConfig(
        name=el.get("name") or "",
        volumes=tuple(_volume(v) for v in el.findall("volume")),
        address=_text(address),
    )


def _volume(el: etree._Element) -> VolumeConfig:
    device = el.find("device")
    return VolumeConfig(
        volume=_int(el.get("vnr")),
        minor=_int(device.get("minor")) if device is not None else None,
        device=_text(device),
        disk=_text(el.find("disk")),
        meta_disk=_text(el.find("meta-disk")),
    )


def _connection(el: etree._Element) -> ConnectionConfig:
    hosts: List[str] = []
    for host in list(el.findall("host")) + list(el.findall("path/host")):
        name = host.get("name")
        if name and name not in hosts:
            hosts.append(name)
    return ConnectionConfig(hosts=tuple(hosts), sections=_sections(el))


def _sections(el: etree._Element) -> Dict[str, Dict[str, str]]:
    sections: Dict[str, Dict[str, str]] = {}
    for section in el.findall("section"):
        options = sections.setdefault(section.get("name") or "", {})
        for option in section.findall("option"):
            key = option.get("name")
            if key:
                options[key] = option.get("value") or ""
    return sections


def _text(el: Optional[etree._Element]) -> Optional[str]:
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


def _int(value: Optional[str]) -> Optional[int]:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)
