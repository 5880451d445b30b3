"""The promotable clone of a DRBD resource as Pacemaker's scheduler reads it, and its deprecated syntax.

How many instances Pacemaker promotes (``clone_unpack`` in Pacemaker 2.1 and 3.0):

- the clone's meta attributes are its own ``meta_attributes`` over ``rsc_defaults``; the
  primitive's meta attributes are not read for the clone (a ``promoted-max`` there does nothing);
- ``promoted-max`` (default 1) when it is set, else the deprecated ``master-max``: when both
  are set, ``promoted-max`` wins; the same for ``promoted-node-max`` over ``master-node-max``
  (default 1);
- ``clone-max`` defaults to the number of nodes (at least 1), ``clone-node-max`` to 1;
- each value is read as C's ``strtoll`` does (leading blanks, a sign, digits; what follows
  is ignored), no digits or a negative number giving 0.

Dual-primary needs two instances promoted on two nodes: promoted-max, clone-max >= 2 and
promoted-node-max, clone-node-max >= 1. Anything less promotes on one node at most: FAIL.

Deprecated syntax (Pacemaker 3.0 warns that it will be removed; crmsh 5 refuses ``ms`` and
treats those warnings as an invalid configuration on every later commit): a ``<master>``
element, ``master-max`` and ``master-node-max``, and the ``Master``/``Slave`` role names, in
the primitive's operations, in ``target-role``, and in constraints on the clone. Each is a
WARN whose fix says it in today's terms, in commands that both Pacemaker 2.1 and 3.0 take:
``cibadmin --modify`` renames attributes and roles in place (by element id, value and set
kept); a ``<master>`` becomes a ``<clone>`` with ``promotable=true`` by crmsh's
``load update`` of the clone statement (crmsh 4.4 and 5), or by ``cibadmin --upgrade
--force`` on Pacemaker 3.0 only (its pacemaker-4.0 schema has no ``<master>``; Pacemaker
2.1's newest, pacemaker-3.9, still has it, so its upgrade leaves the element as it is).
Neither upgrade renames master-max or the roles.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from lxml import etree

from livemig.check.model import LAYER_PACEMAKER, CheckResult, Fix, fail, ok, warn
from livemig.pacemaker.cib import DrbdClone, effective_meta, node_names, own_meta

#: today's name -> the deprecated one Pacemaker still reads when today's is unset
LEGACY_NAMES = {"promoted-max": "master-max", "promoted-node-max": "master-node-max"}
LEGACY_ROLES = {"Master": "Promoted", "Slave": "Unpromoted"}
_STRTOLL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def pacemaker_int(text: str) -> int:
    """``text`` as Pacemaker reads a clone limit (strtoll, then at least 0)."""
    match = _STRTOLL.match(text)
    return max(0, int(match.group(1))) if match else 0


@dataclass(frozen=True)
class Limit:
    """One clone limit: the attribute Pacemaker reads (None: unset, default), its value, what it hides."""

    name: str
    attribute: Optional[str]
    raw: Optional[str]
    value: int
    ignored: Optional[Tuple[str, str]] = None  # a master-* that promoted-* overrides

    def describe(self) -> str:
        if self.attribute is None:
            return f"{self.name} not set ({self.value})"
        text = f"{self.attribute}={self.raw}"
        if self.raw is not None and str(self.value) != self.raw.strip():
            text += f" (read as {self.value})"
        if self.ignored:
            text += f" (over {self.ignored[0]}={self.ignored[1]}: {self.name} wins)"
        return text


def read_limit(meta: Dict[str, str], name: str, default: int) -> Limit:
    legacy = LEGACY_NAMES.get(name)
    if name in meta:
        ignored = (legacy, meta[legacy]) if legacy and legacy in meta else None
        return Limit(name, name, meta[name], pacemaker_int(meta[name]), ignored)
    if legacy and legacy in meta:
        return Limit(name, legacy, meta[legacy], pacemaker_int(meta[legacy]))
    return Limit(name, None, None, default)


def _quote(value: str) -> str:
    return shlex.quote(value)


def check_promotion(cib: etree._Element, clone: DrbdClone) -> List[CheckResult]:
    """The ``promoted-max`` and ``clone-limits`` rows of one promotable clone."""
    assert clone.element is not None  # nosec B101 # a promotable clone has its element
    cid = clone.clone_id or "?"
    res = clone.drbd_resource
    meta = effective_meta(clone.element, cib)
    promoted = read_limit(meta, "promoted-max", 1)
    found = f"{cid}: {promoted.describe()}"
    primitive = clone.element.find("primitive")
    unread = sorted((k, v) for k, v in own_meta(primitive).items()
                    if k in ("promoted-max", "master-max")) if primitive is not None else []
    if unread:
        found += "; " + ", ".join(f"{k}={v}" for k, v in unread) + \
            f" on the primitive {clone.primitive_id}, where Pacemaker does not read it"
    rows: List[CheckResult] = []
    if promoted.value >= 2:
        rows.append(ok(LAYER_PACEMAKER, "promoted-max", found, res))
    else:
        crm = f"crm resource meta {_quote(cid)} set promoted-max 2"
        pcs = f"pcs resource meta {_quote(cid)} promoted-max=2"
        if "master-max" in own_meta(clone.element):
            crm += f"; crm resource meta {_quote(cid)} delete master-max"
            pcs += " master-max="
        rows.append(fail(LAYER_PACEMAKER, "promoted-max",
                         f"{found}; Pacemaker promotes {promoted.value} instance(s): dual-primary needs 2",
                         Fix(crm=crm, pcs=pcs), res))
    nodes = len(node_names(cib))  # a CIB file without nodes is judged as a two-node cluster
    limits = [read_limit(meta, "clone-max", nodes or 2), read_limit(meta, "clone-node-max", 1),
              read_limit(meta, "promoted-node-max", 1)]
    text = f"{cid}: " + ", ".join(limit.describe() for limit in limits)
    low = [limit for limit, need in zip(limits, (2, 1, 1)) if limit.value < need]
    if not low:
        rows.append(ok(LAYER_PACEMAKER, "clone-limits", text, res))
    else:
        crm = "; ".join(f"crm resource meta {_quote(cid)} set {limit.name} {2 if limit.name == 'clone-max' else 1}"
                        for limit in low)
        pcs = f"pcs resource meta {_quote(cid)} " + " ".join(
            f"{limit.name}={2 if limit.name == 'clone-max' else 1}" for limit in low)
        rows.append(fail(LAYER_PACEMAKER, "clone-limits",
                         f"{text}; DRBD cannot be promoted on two nodes (clone-max 2 or more, clone-node-max "
                         "and promoted-node-max 1 or more needed)", Fix(crm=crm, pcs=pcs), res))
    return rows


def _element_text(tag: str, **attrs: str) -> str:
    return etree.tostring(etree.Element(tag, attrib=attrs), encoding="unicode")


def _modify(tag: str, eid: str, **attrs: str) -> str:
    return "cibadmin --modify --xml-text " + _quote(_element_text(tag, id=eid, **attrs))


def _delete(tag: str, eid: str) -> str:
    return "cibadmin --delete --xml-text " + _quote(_element_text(tag, id=eid))


class _Findings:
    def __init__(self) -> None:
        self.items: List[str] = []
        self.commands: List[str] = []
        self.by_hand: List[str] = []

    def add(self, item: str, command: Optional[str], element: etree._Element) -> None:
        self.items.append(item)
        if command and element.get("id"):
            self.commands.append(command)
        else:
            self.by_hand.append(item)


def _legacy_names(where: str, owner: etree._Element, winners: Dict[str, str], found: _Findings) -> None:
    for pair in owner.iterfind("meta_attributes/nvpair"):
        name, eid = pair.get("name") or "", pair.get("id") or ""
        today = next((new for new, old in LEGACY_NAMES.items() if old == name), None)
        if today is None:
            continue
        if today in winners:  # today's name is read: the old one only goes
            found.add(f"{name}={pair.get('value')} on {where} (delete it: {today} is set)", _delete("nvpair", eid),
                      pair)
        else:
            found.add(f"{name}={pair.get('value')} on {where} (rename it {today})",
                      _modify("nvpair", eid, name=today), pair)


def _legacy_roles(cib: etree._Element, clone: DrbdClone, found: _Findings) -> None:
    assert clone.element is not None  # nosec B101 # a promotable clone has its element
    cid = clone.clone_id or "?"
    primitive = clone.element.find("primitive")
    for op in primitive.iterfind("operations/op") if primitive is not None else []:
        role = op.get("role") or ""
        if role in LEGACY_ROLES:
            found.add(f"role={role} in {clone.primitive_id}'s {op.get('name')} op",
                      _modify("op", op.get("id") or "", role=LEGACY_ROLES[role]), op)
    for owner in [e for e in (clone.element, primitive) if e is not None]:
        for pair in owner.iterfind("meta_attributes/nvpair"):
            value = pair.get("value") or ""
            if pair.get("name") == "target-role" and value in LEGACY_ROLES:
                found.add(f"target-role={value} on {owner.get('id')}",
                          _modify("nvpair", pair.get("id") or "", value=LEGACY_ROLES[value]), pair)
    for constraint in cib.iterfind("configuration/constraints/*"):
        names = {constraint.get(a) for a in ("rsc", "with-rsc")}
        names |= {r.get("id") for r in constraint.iterfind(".//resource_ref")}
        if cid not in names:
            continue
        for element in constraint.iter():
            for attr in ("role", "rsc-role", "with-rsc-role"):
                value = element.get(attr) or ""
                if value in LEGACY_ROLES:
                    found.add(f"{attr}={value} in {element.tag} {element.get('id')}",
                              _modify(element.tag, element.get("id") or "", **{attr: LEGACY_ROLES[value]}),
                              element)


def _clone_statement(clone: DrbdClone) -> str:
    assert clone.element is not None  # nosec B101 # a promotable clone has its element
    meta = own_meta(clone.element)
    words = ["promotable=true"]
    for name, value in meta.items():
        today = next((new for new, old in LEGACY_NAMES.items() if old == name), name)
        if name == "promotable" or (today != name and today in meta):
            continue
        words.append(_quote(f"{today}={value}"))
    return f"clone {_quote(clone.clone_id or '?')} {_quote(clone.primitive_id)} meta {' '.join(words)}"


def check_syntax(cib: etree._Element, clone: DrbdClone) -> CheckResult:
    """The ``promotable-syntax`` row: ok in today's terms, else WARN with the conversion."""
    assert clone.element is not None  # nosec B101 # a promotable clone has its element
    cid = clone.clone_id or "?"
    found = _Findings()
    if clone.legacy:
        found.items.append("a <master> element (crmsh's ms)")
    _legacy_names(cid, clone.element, effective_meta(clone.element, cib), found)
    primitive = clone.element.find("primitive")
    if primitive is not None:
        _legacy_names(clone.primitive_id, primitive, effective_meta(primitive, cib), found)
    for defaults in cib.iterfind("configuration/rsc_defaults"):
        _legacy_names("rsc_defaults", defaults, {k: v for k, v in own_meta(defaults).items()}, found)
    _legacy_roles(cib, clone, found)
    if not found.items:
        return ok(LAYER_PACEMAKER, "promotable-syntax",
                  f"{cid}: <clone promotable=true>, promoted-max, roles Promoted/Unpromoted", clone.drbd_resource)
    crm = list(found.commands)
    pcs = list(found.commands)
    text = ("cibadmin --modify renames in place (Pacemaker 2.1 and 3.0)")
    if clone.legacy:
        crm.append(f"echo {_quote(_clone_statement(clone))} | crm configure load update -")
        pcs.append("cibadmin --upgrade --force")
        text += ("; the <master> becomes <clone promotable=true> by crmsh's load update (crmsh 4.4 and 5), or by "
                 "cibadmin --upgrade --force on Pacemaker 3.0 only (Pacemaker 2.1's newest schema, pacemaker-3.9, "
                 "keeps <master>; neither upgrade renames master-max or the roles)")
    if found.by_hand:
        text += "; by hand (crm configure edit): " + ", ".join(found.by_hand)
    return warn(LAYER_PACEMAKER, "promotable-syntax",
                f"{cid}: deprecated syntax: {'; '.join(found.items)}. Pacemaker 3.0 warns it will be removed; "
                "crmsh 5 refuses ms and every commit while it remains", Fix(crm="; ".join(crm), pcs="; ".join(pcs),
                                                                          text=text + "; convert before moving to "
                                                                          "crmsh 5"), clone.drbd_resource)
