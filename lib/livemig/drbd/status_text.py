"""DRBD 9 state from the text of ``drbdsetup status --verbose --statistics``.

For drbd-utils whose ``drbdsetup status`` has no ``--json`` (it came with
8.9.8; some builds, and some older 9.x packages, still refuse it). The layout
is drbdsetup's own (tests/fixtures/drbd/drbd84-status-verbose-ug84-home.txt)::

    <resource> node-id:1 role:Primary suspended:no
        write-ordering:flush                         <- the resource, continued (+4)
      volume:0 minor:5 disk:UpToDate quorum:yes      <- a local device (2)
          size:307152 read:0 ...                     <- the device, continued (+4)
      <peer> node-id:2 connection:Connected role:Secondary congested:no   <- a connection (2)
        volume:0 replication:Established peer-disk:UpToDate               <- a peer device (4)
            received:0 sent:0 out-of-sync:0 ...      <- the peer device, continued (+4)

Resources are separated by empty lines. The result is the same
:class:`~livemig.drbd.state.DrbdResourceState` the JSON reader makes, with the
same rules: a value missing or not understood is ``None`` (unknown), never a
healthy default; ``out-of-sync`` is printed with ``--statistics``, so a peer
device without it is unreadable. Fails closed: a line at an indentation the
layout does not have, a word that is no ``key:value``, a key given twice in one
entry, a resource, volume or connection listed twice, colour escapes, anything
else not in that layout, raise :class:`~livemig.drbd.state.DrbdStateError`.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from livemig.drbd.state import DrbdResourceState, DrbdStateError, PeerState, PeerVolumeState, VolumeState

WHAT = "drbdsetup status --verbose --statistics"
_NAME = re.compile(r"^[A-Za-z0-9_.+-][^\s:]*$")
_WORDS = {"yes": True, "no": False}

Fields = Dict[str, str]


class _Entry:
    def __init__(self, name: Optional[str], fields: Fields, line: int) -> None:
        self.name = name
        self.fields = fields
        self.line = line
        self.children: List[_Entry] = []


def _fields(words: List[str], into: Fields, line: int) -> None:
    for word in words:
        key, sep, value = word.partition(":")
        if not sep or not key or not value:
            raise DrbdStateError(f"{WHAT}: line {line}: {word!r} is not key:value")
        if key in into:
            raise DrbdStateError(f"{WHAT}: line {line}: {key!r} given twice for one entry")
        into[key] = value


def _tree(text: str) -> List[_Entry]:
    if "\x1b" in text:
        raise DrbdStateError(f"{WHAT}: output has colour escapes")
    resources: List[_Entry] = []
    resource: Optional[_Entry] = None
    last: Optional[_Entry] = None      # what a continuation line continues
    connection: Optional[_Entry] = None
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip()
        if not line:
            resource = last = connection = None
            continue
        indent = len(line) - len(line.lstrip(" "))
        words = line.split()
        if "\t" in line:
            raise DrbdStateError(f"{WHAT}: line {number}: a tab")
        if indent == 0:
            if resource is not None:
                raise DrbdStateError(f"{WHAT}: line {number}: a resource line without an empty line before it")
            if not _NAME.match(words[0]):
                raise DrbdStateError(f"{WHAT}: line {number}: {words[0]!r} is no resource name")
            resource = _Entry(words[0], {}, number)
            _fields(words[1:], resource.fields, number)
            resources.append(resource)
            last, connection = resource, None
            continue
        if resource is None or last is None:
            raise DrbdStateError(f"{WHAT}: line {number}: indented, but no resource line before it")
        if indent == last_indent(last, resource, connection) + 4 and ":" in words[0]:
            _fields(words, last.fields, number)  # the entry continued
        elif indent == 2 and words[0].startswith(("volume:", "disk:")):
            if connection is not None:
                raise DrbdStateError(f"{WHAT}: line {number}: a local device after a connection")
            last = _Entry(None, {}, number)
            _fields(words, last.fields, number)
            resource.children.append(last)
        elif indent == 2 and ":" not in words[0]:
            if not _NAME.match(words[0]):
                raise DrbdStateError(f"{WHAT}: line {number}: {words[0]!r} is no connection name")
            connection = last = _Entry(words[0], {}, number)
            _fields(words[1:], connection.fields, number)
            resource.children.append(connection)
        elif indent == 4 and connection is not None and ":" in words[0]:
            last = _Entry(None, {}, number)
            _fields(words, last.fields, number)
            connection.children.append(last)
        else:
            raise DrbdStateError(f"{WHAT}: line {number}: not in drbdsetup's layout: {line.strip()!r}")
    return resources


def last_indent(last: _Entry, resource: _Entry, connection: Optional[_Entry]) -> int:
    """The indentation of ``last``'s own line: resource 0, device or connection 2, peer device 4."""
    if last is resource:
        return 0
    if connection is not None and last is not connection and last in connection.children:
        return 4
    return 2


def _int(value: Optional[str]) -> Optional[int]:
    return int(value) if value is not None and value.isdigit() and len(value) < 19 else None


def _word(value: Optional[str]) -> Optional[str]:
    return value if value else None


def _suspended(value: Optional[str]) -> Optional[bool]:
    """``no``, or the reasons (``user``, ``no-data``, ``fencing``, ``quorum``, comma-separated): suspended."""
    if value is None:
        return None
    if value == "no":
        return False
    if re.fullmatch(r"[a-z-]+(,[a-z-]+)*", value):
        return True
    return None


def _no_repeats(keys: List[object], what: str) -> None:
    seen = set()
    for key in keys:
        if key is not None and key in seen:
            raise DrbdStateError(f"{WHAT}: {what} lists {key!r} twice")
        seen.add(key)


def parse_status_text(text: str) -> Tuple[DrbdResourceState, ...]:
    """Parse ``drbdsetup status all --verbose --statistics`` (the DRBD 9 layout)."""
    resources = []
    for entry in _tree(text):
        volumes: List[VolumeState] = []
        peers: List[PeerState] = []
        for child in entry.children:
            if child.name is None:
                fields = child.fields
                volumes.append(VolumeState(volume=_int(fields.get("volume")), minor=_int(fields.get("minor")),
                                           disk=_word(fields.get("disk")),
                                           quorum=_WORDS.get(fields.get("quorum", "")),
                                           client=_WORDS.get(fields.get("client", ""))))
                continue
            peer_volumes = []
            for device in child.children:
                fields = device.fields
                out_of_sync = _int(fields.get("out-of-sync"))
                peer_volumes.append(PeerVolumeState(
                    volume=_int(fields.get("volume")), replication=_word(fields.get("replication")),
                    # early drbd-utils 9 print the peer's disk as disk: (drbd9-status-text-ug9-*.txt)
                    disk=_word(fields.get("peer-disk", fields.get("disk"))), out_of_sync_kib=out_of_sync,
                    out_of_sync_unreadable=out_of_sync is None,
                    peer_client=_WORDS.get(fields.get("peer-client", ""))))
            _no_repeats([v.volume for v in peer_volumes], f"resource {entry.name}: connection {child.name}")
            peers.append(PeerState(name=child.name, node_id=_int(child.fields.get("node-id")),
                                   connection=_word(child.fields.get("connection")),
                                   role=_word(child.fields.get("role")), volumes=tuple(peer_volumes)))
        _no_repeats([v.volume for v in volumes], f"resource {entry.name}: devices")
        _no_repeats([p.node_id for p in peers], f"resource {entry.name}: connections (node-id)")
        _no_repeats([p.name for p in peers], f"resource {entry.name}: connections (name)")
        resources.append(DrbdResourceState(name=entry.name, role=_word(entry.fields.get("role")),
                                           suspended=_suspended(entry.fields.get("suspended")),
                                           volumes=tuple(volumes), peers=tuple(peers)))
    _no_repeats([r.name for r in resources], "the resource list")
    return tuple(resources)
