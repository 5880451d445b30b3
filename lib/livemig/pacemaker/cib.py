"""The CIB, read with ``cibadmin --query``.

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
"""

from __future__ import annotations

from typing import List, Optional

from lxml import etree

from livemig.ocf.deadline import Deadline
from livemig.run import CommandError, CommandRunner
from livemig.xmlsafe import safe_xml_parser

DEFAULT_CIB_TIMEOUT = 10.0
FENCE_CONSTRAINT_PREFIX = "drbd-fence-by-handler-"


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
