"""Which domains belong to a resource: an owner tag in the domain's libvirt ``<metadata>``.

A domain's name comes from the agent's ``config`` file, which may be missing,
different or unreadable on some nodes (an /etc out of sync, a hung shared
file system). The tag travels with the domain instead: it is written into the
definition the agent creates the domain from, and libvirt carries it in the
live XML through every migration, save and restore::

    <metadata>
      <livemig:resource xmlns:livemig="https://livemig.org/xmlns/resource/1" id="vm1"/>
    </metadata>

so that on any node "this resource's domains" can be told without the config
file: by asking libvirt (:func:`domains_owned_by`), or, when libvirtd does not
answer, from the status files the QEMU driver keeps for its running domains
(:func:`running_names_from_status`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, List, Optional

if TYPE_CHECKING:
    from livemig.virt.connection import Hypervisor

NAMESPACE = "https://livemig.org/xmlns/resource/1"
PREFIX = "livemig"
ELEMENT = "resource"
#: Where libvirt's system QEMU driver keeps the live XML of each running domain.
QEMU_STATUS_DIR = "/run/libvirt/qemu"
MAX_STATUS_FILES = 4096
MAX_STATUS_BYTES = 4 * 1024 * 1024


def owner_element(owner: str) -> str:
    """The tag as ``virDomainSetMetadata`` takes it."""
    from lxml import etree

    return str(etree.tostring(etree.Element(ELEMENT, id=owner), encoding="unicode"))


def tag_domain_xml(xml_text: str, owner: str) -> str:
    """``xml_text`` with the owner tag for ``owner`` (replacing any livemig tag it carries).

    Raises ValueError on XML that is not a domain (the caller parsed it before).
    """
    from lxml import etree

    from livemig.xmlsafe import safe_xml_parser

    root = etree.fromstring(xml_text.encode("utf-8"), parser=safe_xml_parser())
    if root is None or root.tag != "domain":
        raise ValueError("not a libvirt <domain>")
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.SubElement(root, "metadata")  # libvirt does not mind where it goes
    for old in metadata.findall(f"{{{NAMESPACE}}}{ELEMENT}"):
        metadata.remove(old)
    tag = etree.SubElement(metadata, f"{{{NAMESPACE}}}{ELEMENT}", nsmap={PREFIX: NAMESPACE})
    tag.set("id", owner)
    return str(etree.tostring(root, encoding="unicode"))


def owner_from_element(text: Optional[str]) -> Optional[str]:
    """The owner named by a tag as ``virDomainGetMetadata`` returns it (None if unreadable)."""
    if not text:
        return None
    from lxml import etree

    from livemig.xmlsafe import safe_xml_parser

    try:
        root = etree.fromstring(text.encode("utf-8"), parser=safe_xml_parser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    if root is None or etree.QName(root).localname != ELEMENT:
        return None
    owner = root.get("id")
    return owner or None


def owner_of(hv: Hypervisor, dom: Any) -> Optional[str]:
    """The resource the domain belongs to, by its tag; None for an untagged (or vanished) domain."""
    return owner_from_element(hv.metadata(dom, NAMESPACE))


def domains_owned_by(hv: Hypervisor, owner: str, active_only: bool = True) -> List[Any]:
    """The domains on this libvirtd tagged for ``owner`` (running ones only by default)."""
    return [dom for dom in hv.domains(active_only=active_only) if owner_of(hv, dom) == owner]


def tag(hv: Hypervisor, dom: Any, owner: str) -> None:
    """Tag a running domain (one started before livemig tagged, or restored from an old save)."""
    hv.set_metadata(dom, owner_element(owner), PREFIX, NAMESPACE)


def running_names_from_status(owner: str, status_dir: Optional[str] = None) -> List[str]:
    """Names of the running domains tagged for ``owner``, from the QEMU driver's status files.

    For when libvirtd does not answer: ``<status_dir>/<name>.xml`` exists for
    every domain the driver runs and holds its live XML. Reading is bounded in
    the number of files and their size; unreadable files are skipped (the
    caller still looks for the QEMU process of every name it knows).
    """
    from livemig.files import FileUnreadable, read_regular_file

    status_dir = status_dir or QEMU_STATUS_DIR
    try:
        entries = sorted(os.listdir(status_dir))[:MAX_STATUS_FILES]
    except OSError:
        return []
    names = []
    for entry in entries:
        if not entry.endswith(".xml"):
            continue
        try:
            data = read_regular_file(os.path.join(status_dir, entry), MAX_STATUS_BYTES, 2.0)
        except FileUnreadable:
            continue
        name = _owned_domain_name(data, owner)
        if name is not None:
            names.append(name)
    return names


def _owned_domain_name(data: bytes, owner: str) -> Optional[str]:
    from lxml import etree

    from livemig.xmlsafe import safe_xml_parser

    if NAMESPACE.encode() not in data:
        return None  # the common case, without parsing
    try:
        root = etree.fromstring(data, parser=safe_xml_parser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    domain = root if root.tag == "domain" else root.find("domain")
    if domain is None:
        return None
    tags = domain.findall(f"metadata/{{{NAMESPACE}}}{ELEMENT}")
    if not any(t.get("id") == owner for t in tags):
        return None
    name = (domain.findtext("name") or "").strip()
    return name or None
