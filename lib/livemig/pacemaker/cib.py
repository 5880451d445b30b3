"""The CIB: read with ``cibadmin --query``, parsed, and queried.

``cibadmin`` honours the environment variable ``CIB_file``: with it set, it
reads that file instead of the live cluster, which is how tests (and
``livemig guard --cib FILE``) point it at a saved CIB.

What livemig looks for: the location constraint DRBD's fence-peer handler
(``crm-fence-peer.sh`` / ``crm-fence-peer.9.sh``) places when it could not
reach a peer. While it exists, that peer's copy of the resource is not to be
trusted. The handler names it ``<prefix>-<clone>``, ``<clone>`` being the id
of the ``<master>`` or promotable ``<clone>`` whose primitive has
``drbd_resource=<resource>`` (the constraint's ``rsc``), and ``<prefix>``
being ``drbd-fence-by-handler``: older scripts used the prefix as it is
(``drbd-fence-by-handler-<clone>``); newer ones append the resource
(``drbd-fence-by-handler-<resource>-<clone>``) so that several DRBD resources
in one clone get a constraint each. Both forms are recognised.

The queries (what ``livemig check`` judges, and what the guard needs) read the
CIB as Pacemaker does where it matters: meta attributes from every
``meta_attributes`` set of an element in document order (the first value
wins; rules are not evaluated), over its parents' and ``rsc_defaults``; a
boolean as ``crm_is_true`` reads it; the promotable clone of a DRBD resource
in both forms (``<clone promotable=true>`` and the legacy ``<master>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from lxml import etree

from livemig.ocf.deadline import Deadline
from livemig.ocf.metadata import FALSE_WORDS, TRUE_WORDS
from livemig.run import CommandError, CommandRunner
from livemig.xmlsafe import safe_xml_parser

DEFAULT_CIB_TIMEOUT = 10.0
FENCE_CONSTRAINT_PREFIX = "drbd-fence-by-handler-"


PROMOTED_ROLES = ("Promoted", "Master")
INFINITY_SCORES = ("INFINITY", "+INFINITY", "inf", "+inf")


def is_true(value: Optional[str]) -> Optional[bool]:
    """Pacemaker's reading of a boolean (None when unset or not a boolean)."""
    if value is None:
        return None
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def _nvpairs(element: etree._Element, set_tag: str) -> Dict[str, str]:
    found: Dict[str, str] = {}
    for attr_set in element.findall(set_tag):
        for pair in attr_set.iter("nvpair"):
            name, value = pair.get("name"), pair.get("value")
            if name and value is not None and name not in found:
                found[name] = value
    return found


def own_meta(element: etree._Element) -> Dict[str, str]:
    """The meta attributes set on ``element`` itself."""
    return _nvpairs(element, "meta_attributes")


def instance_attributes(element: etree._Element) -> Dict[str, str]:
    return _nvpairs(element, "instance_attributes")


def effective_meta(element: etree._Element, cib: etree._Element) -> Dict[str, str]:
    """``rsc_defaults`` < the element's parents (outermost first) < the element itself."""
    layers: List[Dict[str, str]] = []
    node: Optional[etree._Element] = element
    while node is not None and node.tag in ("primitive", "group", "clone", "master", "bundle"):
        layers.append(own_meta(node))
        node = node.getparent()
    merged: Dict[str, str] = {}
    for defaults in cib.findall("configuration/rsc_defaults"):
        for key, value in _nvpairs(defaults, "meta_attributes").items():
            merged.setdefault(key, value)
    for layer in reversed(layers):
        merged.update(layer)
    return merged


def cluster_properties(cib: etree._Element) -> Dict[str, str]:
    found: Dict[str, str] = {}
    for attr_set in cib.findall("configuration/crm_config/cluster_property_set"):
        for pair in attr_set.iter("nvpair"):
            name, value = pair.get("name"), pair.get("value")
            if name and value is not None and name not in found:
                found[name] = value
    return found


def find_resource(cib: etree._Element, resource_id: str) -> Optional[etree._Element]:
    for element in cib.iterfind("configuration/resources//*[@id]"):
        if element.get("id") == resource_id and element.tag in ("primitive", "group", "clone", "master"):
            return element
    return None


def agent_name(primitive: etree._Element) -> str:
    parts = [primitive.get("class") or "?", primitive.get("provider"), primitive.get("type") or "?"]
    return ":".join(p for p in parts if p)


def virtual_domain_primitives(cib: etree._Element) -> List[etree._Element]:
    return [p for p in cib.iterfind("configuration/resources//primitive") if p.get("type") == "VirtualDomain"]


@dataclass(frozen=True)
class DrbdClone:
    """The promotable clone around the ``ocf:linbit:drbd`` primitive of one DRBD resource."""

    drbd_resource: str
    primitive_id: str
    clone_id: Optional[str]  # None: the primitive is not in a promotable clone
    legacy: bool  # a <master> (master-max) rather than <clone promotable=true> (promoted-max)
    element: Optional[etree._Element]

    @property
    def max_attribute(self) -> str:
        return "master-max" if self.legacy else "promoted-max"


def drbd_clones(cib: etree._Element, drbd_resource: str) -> List[DrbdClone]:
    """Every ``ocf:*:drbd`` primitive (normally ocf:linbit:drbd) with ``drbd_resource`` = the resource."""
    found: List[DrbdClone] = []
    for primitive in cib.iterfind("configuration/resources//primitive"):
        # ocf:linbit:drbd in the field; any OCF agent named drbd managing a drbd_resource
        # (a distribution's or a lab's own) is the same thing to Pacemaker.
        if (primitive.get("class"), primitive.get("type")) != ("ocf", "drbd"):
            continue
        if instance_attributes(primitive).get("drbd_resource") != drbd_resource:
            continue
        parent = primitive.getparent()
        clone_id: Optional[str] = None
        legacy = False
        element: Optional[etree._Element] = None
        if parent is not None and parent.tag == "master":
            clone_id, legacy, element = parent.get("id"), True, parent
        elif parent is not None and parent.tag == "clone" and is_true(own_meta(parent).get("promotable")):
            clone_id, element = parent.get("id"), parent
        found.append(DrbdClone(drbd_resource, primitive.get("id") or "?", clone_id, legacy, element))
    return found


def node_names(cib: etree._Element) -> List[str]:
    """The ``uname`` of every node in the CIB's configuration, in document order."""
    return [n.get("uname") or "" for n in cib.iterfind("configuration/nodes/node") if n.get("uname")]


def node_attributes(node: etree._Element) -> Dict[str, str]:
    """A ``<node>``'s instance attributes (``maintenance``, ...)."""
    return _nvpairs(node, "instance_attributes")


class CibError(Exception):
    """The CIB could not be read or parsed."""


def read_cib_xml(runner: CommandRunner, deadline: Deadline, *, cib_file: Optional[str] = None,
                 timeout: float = DEFAULT_CIB_TIMEOUT) -> str:
    """The CIB as XML text from ``cibadmin --query`` (of ``cib_file`` if given)."""
    argv = ["cibadmin", "--query"]
    if deadline.expired():
        raise CibError("cibadmin --query: not run, the operation deadline has passed")
    env = {"CIB_file": cib_file} if cib_file else None
    try:
        result = runner.run(argv, timeout=deadline.bound(timeout), env=env)
    except CommandError as exc:
        raise CibError(f"cibadmin --query: {exc}") from exc
    if not result.ok:
        raise CibError(result.describe())
    return result.stdout


def parse_cib(text: str) -> etree._Element:
    """The CIB's root element; :class:`CibError` unless it is a ``<cib>``."""
    try:
        root = etree.fromstring(text.encode("utf-8"), parser=safe_xml_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise CibError(f"the CIB is not well-formed XML ({exc})") from None
    if root is None or root.tag != "cib":
        raise CibError("the CIB document has no <cib> root")
    if root.find("configuration") is None:
        raise CibError("the CIB has no <configuration>")
    return root


def fence_constraint_ids(cib: etree._Element, resource: str) -> List[str]:
    """Ids of the DRBD fence-peer handler's location constraints for ``resource``, in document order.

    Found anywhere in the document (the handler may place them in any
    section), in every form the handler has written (it errs on the side of
    refusing):

    - an id starting ``drbd-fence-by-handler-<resource>-`` (newer scripts; a
      resource whose name extends another's, ``r0`` and ``r0-x``, may match too);
    - the id ``drbd-fence-by-handler-<clone>`` (older scripts), ``<clone>``
      being a ``<master>`` or ``<clone>`` holding a primitive with
      ``drbd_resource=<resource>``;
    - any ``drbd-fence-by-handler-*`` constraint on such a clone (its ``rsc``):
      it keeps the clone from being promoted on the peer whatever its id says.
    """
    prefix = f"{FENCE_CONSTRAINT_PREFIX}{resource}-"
    clones = _strings(cib.xpath(
        "//primitive[instance_attributes/nvpair[@name='drbd_resource' and @value=$res]]"
        "/ancestor::*[self::master or self::clone]/@id", res=resource))
    found: List[str] = []
    for constraint in cib.iter("rsc_location"):
        cid = constraint.get("id") or ""
        if not cid.startswith(FENCE_CONSTRAINT_PREFIX):
            continue
        old_form = cid[len(FENCE_CONSTRAINT_PREFIX):] in clones
        if cid.startswith(prefix) or old_form or constraint.get("rsc") in clones:
            found.append(cid)
    return list(dict.fromkeys(found))


def _strings(found: object) -> List[str]:
    return [str(value) for value in found] if isinstance(found, list) else []
