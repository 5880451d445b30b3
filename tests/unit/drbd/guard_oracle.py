"""An oracle for the migration guard, written apart from livemig's DRBD parsers.

:func:`judge` reads a :class:`~tests.unit.drbd.guard_world.World` (the
``/proc/drbd`` text, the commands' answers, the by-res links) with its own
strict reading of the formats and answers only "provably safe" or "not
provably safe". It imports nothing from ``livemig``: no parser, no
dataclass, no constant of the guard.

Provably safe means: for every resource asked, and every one of its minors
(8.x: as ``drbdadm sh-minor`` lists them) or volumes (9: as drbdsetup lists
its devices), each condition of the guard's contract is stated exactly once,
in the form the DRBD tools print, with nothing contradicting it:

8.x, from ``/proc/drbd`` (line grammar of DRBD 8.0 to 8.4)::

    version: 8.4.11-1 (api:1/proto:86-101)          (8.0-8.2 print no oos:)
     1: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-----
        ns:524236 nr:0 ... ep:1 wo:f oos:0           (exactly one statistics line)

- one line per minor (a line starting ``N:`` that is no minor line counts as an
  unreadable one); after ``N:`` exactly the tokens ``cs:Connected``,
  ``ro:`` (8.0: ``st:``) ``Primary/Primary``, ``ds:UpToDate/UpToDate``, a
  protocol letter (at most once: it is no condition) and the I/O flags (4 to 6
  of ``[-a-z]``, the first ``r``: I/O running; the 8.3.1 kernel's NUL padding
  may end them), each once; no NUL or control character elsewhere on the line;
- one statistics line (the indented line with ``ns:`` or ``oos:``) carrying
  ``oos:0`` exactly once; both required unless the version line says 8.0-8.2,
  whose kernels do not print oos: (a missing or unreadable version line: required);
  no resync progress line (``[===>...] sync'ed:``, ``finish:``); other indented
  lines (8.0's ``resync:``/``act_log:``, junk) and unindented lines that are
  no minor line (the header, junk) state no condition and are ignored;
- the version line, if repeated, the same version each time;
- ``drbdadm sh-minor RES`` answers a non-empty list of distinct minors, and
  udev's by-res links do not contradict it: no configured minor linked as RES
  that sh-minor does not list, none of its minors linked as another resource
  (``drbdadm sh-resource`` is not weighed against ``sh-minor``: the same
  configuration answers both);
- ``drbdadm -v dump-xml RES`` describes RES with exactly two hosts: this node
  and the target (full or short name, or the DRBD name ``peer_names`` gives).

9, from ``drbdsetup status --json --verbose --statistics`` (key set as
drbd-utils' drbdsetup.c prints it): the document is a list of objects each
with one string ``name``; exactly one is RES; its keys consulted appear
exactly once: ``role`` "Primary", ``suspended`` false and every
``suspended-*`` false, ``devices`` a non-empty list of objects with distinct
int ``volume``, ``disk-state`` "UpToDate", ``quorum`` true; ``connections``
objects with one string ``name`` each, exactly one naming the target, that one
``connection-state`` "Connected", ``peer-role`` "Primary" (auto-promote:
or "Secondary"), ``peer_devices`` objects covering exactly the local volumes,
each ``replication-state`` "Established", ``peer-disk-state`` "UpToDate",
``out-of-sync`` 0 (drbdsetup always prints it in JSON). Auto-promote: in
``drbdsetup show --json``, RES's ``options.auto-promote`` true and the
connection with the target's ``_peer_node_id`` ``net.allow-two-primaries``
true. Flags (``suspended*``, ``quorum``, ``auto-promote``,
``allow-two-primaries``) are JSON booleans or the words yes/no/true/false.

The CIB (``cibadmin --query``): a ``<cib>`` with one ``<configuration>`` and no
``rsc_location`` whose id is ``drbd-fence-by-handler-RES-...`` or
``drbd-fence-by-handler-<clone>`` for a clone/master holding a primitive
with ``drbd_resource`` = RES (the id older crm-fence-peer.sh scripts write).

Anything else, including any tool failing, hanging or printing something
else, is "not provably safe".
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET  # noqa: N817
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from tests.unit.drbd.guard_world import CIB_QUERY, SHOW9, STATUS9, Answer, World, dump_xml, sh_minor

DUAL_PRIMARY = "dual-primary"
AUTO_PROMOTE = "auto-promote"


@dataclass(frozen=True)
class Verdict:
    safe: bool
    why: str


class _NotProven(Exception):
    pass


def _need(condition: bool, why: str) -> None:
    if not condition:
        raise _NotProven(why)


def judge(world: World) -> Verdict:
    """Provably safe (``safe=True``) or not, and why not."""
    try:
        _judge(world)
    except _NotProven as exc:
        return Verdict(False, str(exc))
    return Verdict(True, "every condition stated once, in the tools' form")


def _judge(world: World) -> None:
    _need(world.mode in (DUAL_PRIMARY, AUTO_PROMOTE), f"mode {world.mode!r}")
    _need(bool(world.target), "no target node")
    names = list(dict.fromkeys(r.strip() for r in world.resources if r and r.strip()))
    _need(bool(names), "no resource asked")
    _need(world.proc is not None, "/proc/drbd absent: DRBD not loaded")
    assert world.proc is not None
    proc = _Proc(world.proc)
    wanted = _peer_wanted(world)
    if proc.generation == 9:
        for name in names:
            _check9(world, name, wanted)
    else:
        _need(world.mode == DUAL_PRIMARY, "auto-promote needs DRBD 9")
        for name in names:
            _check8(world, proc, name, wanted)
    for name in names:
        _check_cib(world, name)


def same_node(a: str, b: str) -> bool:
    """Node names match in full or by their first label."""
    return bool(a) and bool(b) and a.split(".", 1)[0] == b.split(".", 1)[0]


def _peer_wanted(world: World) -> str:
    mapping = dict(world.peer_names)
    return mapping.get(world.target) or mapping.get(world.target.split(".", 1)[0]) or world.target


def _ok_stdout(answer: Optional[Answer], what: str) -> str:
    _need(answer is not None, f"{what}: not answered")
    assert answer is not None
    _need(not answer.timeout, f"{what}: hung")
    _need(not answer.missing, f"{what}: not installed")
    _need(answer.code == 0, f"{what}: exit {answer.code}")
    return answer.stdout


# -- /proc/drbd ----------------------------------------------------------------------------------

_MINOR_LINE = re.compile(r"^[ \t]*([0-9]+):[ \t]+cs:(.*)$")
_MINOR_LIKE = re.compile(r"^[ \t]*([0-9]+):")
_PROGRESS = re.compile(r"^[ \t]+(\[|finish:|sync'ed:)")
_VERSION = re.compile(r"^version: ([0-9]+)(?:\.([0-9]+))?(?![0-9A-Za-z])")
_PRINTABLE = re.compile(r"^[\t -~]*$")
_ROLES = re.compile(r"^(?:ro|st):([A-Za-z]+)/([A-Za-z]+)$")
_DISKS = re.compile(r"^ds:([A-Za-z]+)/([A-Za-z]+)$")
_FLAGS = re.compile(r"^([rs])([-a-z]{3,5})\x00*$")
_FLAG_LETTERS = ("-a", "-p", "-u", "-abcdefghijklmnopqrstuvwxyz", "-s")


@dataclass
class _Block:
    line: str
    rest: List[str]
    readable: bool = True


class _Proc:
    """/proc/drbd cut into its header and one block (minor line + continuation lines) per minor line."""

    def __init__(self, text: str) -> None:
        self.versions: List[str] = []
        self.blocks: Dict[int, List[_Block]] = {}
        current: Optional[_Block] = None
        for line in text.split("\n"):
            if line.strip(" \t") == "":
                continue
            found = _MINOR_LINE.match(line) or _MINOR_LIKE.match(line)
            if found:  # a minor line, or what is left of one: a statement about that minor
                current = _Block(line, [], readable=_MINOR_LINE.match(line) is not None)
                self.blocks.setdefault(int(found.group(1)), []).append(current)
            elif line.startswith("version:"):
                self.versions.append(line)
            elif current is not None and line[:1] in (" ", "\t"):
                current.rest.append(line)  # an indented line belongs to the minor above it
            # any other line (the header, or junk between minors) states nothing about a minor
        self.generation, self.oos_required = self._generation()

    def _generation(self) -> Tuple[int, bool]:
        parsed: Set[Optional[Tuple[int, Optional[int]]]] = set()
        for line in self.versions:
            found = _VERSION.match(line)
            parsed.add((int(found.group(1)), int(found.group(2)) if found.group(2) else None) if found else None)
        _need(len(parsed) <= 1, "/proc/drbd has version lines that disagree")
        version = parsed.pop() if parsed else None
        major, minor = version if version is not None else (None, None)
        if any(b.readable for blocks in self.blocks.values() for b in blocks):
            _need(major is None or major == 8, "/proc/drbd lists minors under a version that is not 8.x")
            return 8, not (major == 8 and minor is not None and minor < 3)
        _need(major is not None and major >= 9, "/proc/drbd lists no minor and no DRBD 9 version")
        return 9, False

    def minor_state(self, minor: int) -> None:
        """Raise unless ``minor`` is listed once, healthy, stated in the kernel's form."""
        blocks = self.blocks.get(minor, [])
        _need(len(blocks) == 1, f"minor {minor} listed {len(blocks)} times in /proc/drbd")
        block = blocks[0]
        line = block.line
        _need(block.readable, f"minor {minor}: line {line!r}")
        _need("\0" not in line.rstrip("\0"), f"minor {minor}: NUL inside its line")
        _need(_PRINTABLE.match(line.replace("\0", "")) is not None, f"minor {minor}: control characters")
        tokens = line.split()
        _need(tokens[1] == "cs:Connected", f"minor {minor}: {tokens[1]}")
        roles = [t for t in tokens[2:] if _ROLES.match(t)]
        disks = [t for t in tokens[2:] if _DISKS.match(t)]
        protocols = [t for t in tokens[2:] if t in ("A", "B", "C")]
        flags = [t for t in tokens[2:] if _FLAGS.match(t)]
        _need(len(tokens) == 2 + len(roles) + len(disks) + len(protocols) + len(flags),
              f"minor {minor}: unexpected token in {line!r}")
        _need(len(roles) == 1 and len(disks) == 1 and len(protocols) <= 1 and len(flags) == 1,
              f"minor {minor}: each of ro, ds, flags exactly once (and a protocol at most once): {line!r}")
        found = _ROLES.match(roles[0])
        assert found
        _need(found.groups() == ("Primary", "Primary"), f"minor {minor}: roles {roles[0]}")
        found = _DISKS.match(disks[0])
        assert found
        _need(found.groups() == ("UpToDate", "UpToDate"), f"minor {minor}: disks {disks[0]}")
        found = _FLAGS.match(flags[0])
        assert found
        _need(found.group(1) == "r", f"minor {minor}: I/O suspended ({flags[0]!r})")
        _need(all(ch in _FLAG_LETTERS[i] for i, ch in enumerate(found.group(2))),
              f"minor {minor}: flags {flags[0]!r} not as the kernel prints them")
        stats = 0
        oos: List[str] = []
        for extra in block.rest:
            words = extra.split()
            _need(_PROGRESS.match(extra) is None, f"minor {minor}: a resync progress line {extra!r}")
            if words[0].startswith("ns:") or any(w.startswith("oos:") for w in words):
                stats += 1  # the statistics line: only its oos: is a condition
                oos += [w[4:] for w in words if w.startswith("oos:")]
            # other indented lines (8.0's resync:/act_log:, junk) state no condition
        _need(stats == 1 or not self.oos_required, f"minor {minor}: {stats} statistics lines")
        _need(len(oos) <= 1, f"minor {minor}: oos: {len(oos)} times")
        _need(bool(oos) or not self.oos_required, f"minor {minor}: no oos: where this version prints it")
        _need(not oos or re.match(r"^[0-9]+$", oos[0]) is not None and int(oos[0]) == 0,
              f"minor {minor}: oos:{oos[0] if oos else ''}")

    def configured(self) -> List[int]:
        return [m for m, blocks in self.blocks.items()
                if any(b.readable and not b.line.split("cs:", 1)[1].startswith("Unconfigured") for b in blocks)]


# -- DRBD 8.x ------------------------------------------------------------------------------------

_DEV = re.compile(r"^/dev/drbd([0-9]+)$")


def _link_names(world: World) -> Dict[int, Set[str]]:
    names: Dict[int, Set[str]] = {}
    for entry in world.by_res or ():
        if entry.kind != "link":
            continue
        if len(entry.path) == 2 and not re.match(r"^[0-9]+$", entry.path[1]):
            continue
        found = _DEV.match(entry.target)
        if found and len(entry.path) in (1, 2):
            names.setdefault(int(found.group(1)), set()).add(entry.path[0])
    return names


def _minors8(world: World, name: str) -> List[int]:
    out = _ok_stdout(world.answer(sh_minor(name)), f"drbdadm sh-minor {name}")
    lines = [line.strip() for line in out.split("\n") if line.strip()]
    _need(bool(lines), f"drbdadm sh-minor {name}: no minor")
    _need(all(re.match(r"^[0-9]+$", line) for line in lines), f"drbdadm sh-minor {name}: {out!r}")
    minors = [int(line) for line in lines]
    _need(len(set(minors)) == len(minors), f"drbdadm sh-minor {name}: a minor twice")
    return minors


def _check8(world: World, proc: _Proc, name: str, wanted: str) -> None:
    minors = _minors8(world, name)
    links = _link_names(world)
    for minor in set(proc.configured()) | set(minors):
        named = links.get(minor, set())
        if minor in minors:
            _need(named <= {name}, f"minor {minor} of {name} is also named {sorted(named - {name})}")
        else:
            _need(name not in named, f"minor {minor} is named {name} but drbdadm sh-minor does not list it")
    for minor in minors:
        proc.minor_state(minor)
    _check_hosts8(world, name, wanted)


def _xml(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise _NotProven(f"{what}: not XML ({exc})") from None


def _check_hosts8(world: World, name: str, wanted: str) -> None:
    what = f"drbdadm -v dump-xml {name}"
    text = _ok_stdout(world.answer(dump_xml(name)), what)
    body = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    root = _xml(f"<config>{body}</config>", what)
    resources = [el for el in root if el.tag == "resource"]
    _need(len(resources) == 1 and resources[0].get("name") == name, f"{what}: does not describe {name} alone")
    hosts = [el.get("name") or "" for el in resources[0] if el.tag == "host"]
    _need(len(hosts) == 2 and all(hosts) and hosts[0] != hosts[1], f"{what}: hosts {hosts}")
    _need(hosts.count(world.local_node) == 1, f"{what}: this node {world.local_node!r} not among {hosts}")
    peer = hosts[1] if hosts[0] == world.local_node else hosts[0]
    _need(same_node(peer, wanted), f"{what}: the peer is {peer!r}, the target is {wanted!r}")


# -- DRBD 9 --------------------------------------------------------------------------------------


class _Obj:
    """A JSON object with its keys in order, duplicates kept."""

    def __init__(self, pairs: List[Tuple[str, Any]]) -> None:
        self.pairs = pairs

    def all(self, key: str) -> List[Any]:
        return [v for k, v in self.pairs if k == key]

    def one(self, key: str, what: str) -> Any:
        values = self.all(key)
        _need(len(values) == 1, f"{what}: {key!r} stated {len(values)} times")
        return values[0]


def _no_constant(name: str) -> Any:
    raise _NotProven(f"JSON constant {name}")


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_Obj, parse_constant=_no_constant)
    except ValueError as exc:
        raise _NotProven(f"{what}: not JSON ({exc})") from None


def _objects(value: Any, what: str) -> List[_Obj]:
    _need(isinstance(value, list), f"{what}: not a list")
    _need(all(isinstance(item, _Obj) for item in value), f"{what}: an entry is not an object")
    return list(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_is(obj: _Obj, key: str, allowed: Sequence[str], what: str) -> str:
    value = obj.one(key, what)
    _need(isinstance(value, str) and value in allowed, f"{what}: {key} is {value!r}")
    return str(value)


#: drbd-utils writes some flags as words ("resync-suspended": "no" in the real salt sample) and the
#: key sets differ between versions, so a flag written as one of these words is a real format; a
#: string that is not one of them stays unknown, so this cannot make an unsafe state provable.
_BOOLEAN_WORDS = {"yes": True, "true": True, "no": False, "false": False}


def _bool_is(obj: _Obj, key: str, expected: bool, what: str) -> None:
    value = obj.one(key, what)
    stated = _BOOLEAN_WORDS.get(value) if isinstance(value, str) else value
    _need(stated is expected, f"{what}: {key} is {value!r}")


def _check9(world: World, name: str, wanted: str) -> None:
    what = "drbdsetup status --json"
    doc = _objects(_json(_ok_stdout(world.answer(STATUS9), what), what), what)
    found = []
    for entry in doc:
        entry_name = entry.one("name", f"{what}: an entry")
        _need(isinstance(entry_name, str), f"{what}: a name is {entry_name!r}")
        if entry_name == name:
            found.append(entry)
    _need(len(found) == 1, f"{what}: {name} listed {len(found)} times")
    res = found[0]
    where = f"{name}"
    _str_is(res, "role", ["Primary"], where)
    _bool_is(res, "suspended", False, where)
    for key in dict.fromkeys(k for k, _v in res.pairs if k.startswith("suspended-")):
        _bool_is(res, key, False, where)
    devices = _objects(res.one("devices", where), f"{where} devices")
    _need(bool(devices), f"{where}: no device")
    volumes: List[int] = []
    for dev in devices:
        volume = dev.one("volume", f"{where} device")
        _need(_is_int(volume) and volume >= 0 and volume not in volumes, f"{where}: device volume {volume!r}")
        _str_is(dev, "disk-state", ["UpToDate"], f"{where} volume {volume}")
        _bool_is(dev, "quorum", True, f"{where} volume {volume}")
        volumes.append(volume)
    connections = _objects(res.one("connections", where), f"{where} connections")
    targets = []
    for conn in connections:
        conn_name = conn.one("name", f"{where} connection")
        _need(isinstance(conn_name, str), f"{where}: a connection name is {conn_name!r}")
        if same_node(conn_name, wanted):
            targets.append(conn)
    _need(len(targets) == 1, f"{where}: {len(targets)} connections to {wanted!r}")
    peer = targets[0]
    there = f"{where} connection to {wanted}"
    _str_is(peer, "connection-state", ["Connected"], there)
    roles = ["Primary"] if world.mode == DUAL_PRIMARY else ["Primary", "Secondary"]
    _str_is(peer, "peer-role", roles, there)
    peer_volumes: List[int] = []
    for pd in _objects(peer.one("peer_devices", there), f"{there} peer_devices"):
        volume = pd.one("volume", f"{there} peer device")
        _need(_is_int(volume) and volume not in peer_volumes, f"{there}: peer device volume {volume!r}")
        _str_is(pd, "replication-state", ["Established"], f"{there} volume {volume}")
        _str_is(pd, "peer-disk-state", ["UpToDate"], f"{there} volume {volume}")
        oos = pd.one("out-of-sync", f"{there} volume {volume}")
        _need(_is_int(oos) and oos == 0, f"{there} volume {volume}: out-of-sync {oos!r}")
        peer_volumes.append(volume)
    _need(sorted(peer_volumes) == sorted(volumes), f"{there}: peer volumes {peer_volumes}, local {volumes}")
    if world.mode == AUTO_PROMOTE:
        node_id = peer.one("peer-node-id", there)
        _need(_is_int(node_id), f"{there}: peer-node-id {node_id!r}")
        _check_show9(world, name, node_id)


def _check_show9(world: World, name: str, node_id: int) -> None:
    what = "drbdsetup show --json"
    doc = _objects(_json(_ok_stdout(world.answer(SHOW9), what), what), what)
    found = []
    for entry in doc:
        entry_name = entry.one("resource", f"{what}: an entry")
        _need(isinstance(entry_name, str), f"{what}: a resource is {entry_name!r}")
        if entry_name == name:
            found.append(entry)
    _need(len(found) == 1, f"{what}: {name} listed {len(found)} times")
    res = found[0]
    options = res.one("options", f"{what} {name}")
    _need(isinstance(options, _Obj), f"{what} {name}: options is not an object")
    _bool_is(options, "auto-promote", True, f"{what} {name} options")
    matches = []
    for conn in _objects(res.one("connections", f"{what} {name}"), f"{what} {name} connections"):
        peer = conn.one("_peer_node_id", f"{what} {name} connection")
        _need(_is_int(peer), f"{what} {name}: _peer_node_id {peer!r}")
        if peer == node_id:
            matches.append(conn)
    _need(len(matches) == 1, f"{what} {name}: {len(matches)} connections to node id {node_id}")
    net = matches[0].one("net", f"{what} {name} connection")
    _need(isinstance(net, _Obj), f"{what} {name}: net is not an object")
    _bool_is(net, "allow-two-primaries", True, f"{what} {name} net")


# -- the CIB ---------------------------------------------------------------------------------------


def _check_cib(world: World, name: str) -> None:
    what = "cibadmin --query"
    root = _xml(_ok_stdout(world.answer(CIB_QUERY), what), what)
    _need(root.tag == "cib", f"{what}: root <{root.tag}>")
    _need(len([el for el in root if el.tag == "configuration"]) == 1, f"{what}: not one <configuration>")
    clones = set()
    for el in root.iter():
        if el.tag in ("clone", "master"):
            for nv in el.iter("nvpair"):
                if nv.get("name") == "drbd_resource" and nv.get("value") == name:
                    clones.add(el.get("id") or "")
    fenced = {f"drbd-fence-by-handler-{clone}" for clone in clones if clone}
    for loc in root.iter("rsc_location"):
        ident = loc.get("id") or ""
        _need(not ident.startswith(f"drbd-fence-by-handler-{name}-") and ident not in fenced,
              f"{what}: fence constraint {ident}")
