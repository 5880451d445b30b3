"""Folding a ``drbdsetup events2`` stream into the state it ends in.

Each line is ``<verb> <object> key:value ...`` (``exists``, ``create``,
``change``, ``destroy`` on ``resource``, ``device``, ``connection``,
``peer-device``, ``path``, ``helper``); ``exists -`` ends the initial dump.
With ``--timestamps`` each line starts with a timestamp, which is skipped.
A ``change`` updates only the keys it names.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from livemig.drbd.state import DrbdResourceState, PeerState, PeerVolumeState, VolumeState

Fields = Dict[str, str]
_VERBS = ("exists", "create", "change", "destroy")


def _int(value: Optional[str]) -> Optional[int]:
    return int(value) if value is not None and value.isdigit() else None


def _yes_no(value: Optional[str]) -> Optional[bool]:
    return {"yes": True, "no": False}.get(value or "")


_KEYS: Dict[str, Tuple[str, ...]] = {
    "resource": ("name",),
    "device": ("name", "volume"),
    "connection": ("name", "peer-node-id"),
    "peer-device": ("name", "peer-node-id", "volume"),
}
Table = Dict[Tuple[str, ...], Fields]


def parse_events2(text: str) -> Tuple[DrbdResourceState, ...]:
    tables: Dict[str, Table] = {kind: {} for kind in _KEYS}
    for line in text.splitlines():
        words = line.split()
        if words and words[0] not in _VERBS and len(words) > 1 and words[1] in _VERBS:
            words = words[1:]  # --timestamps
        if len(words) < 2 or words[0] not in _VERBS or words[1] not in _KEYS:
            continue
        verb, kind = words[0], words[1]
        fields: Fields = {}
        for word in words[2:]:
            key, sep, value = word.partition(":")
            if sep:
                fields[key] = value
        if "name" not in fields:
            continue
        ident = tuple(fields.get(k, "") for k in _KEYS[kind])
        if verb == "destroy":
            tables[kind].pop(ident, None)
        else:
            tables[kind].setdefault(ident, {}).update(fields)
    return tuple(_resource(ident[0], fields, tables) for ident, fields in tables["resource"].items())


def _resource(name: str, fields: Fields, tables: Dict[str, Table]) -> DrbdResourceState:
    suspended = fields.get("suspended")
    peers: List[PeerState] = []
    for (res, node_id), conn in tables["connection"].items():
        if res != name:
            continue
        peers.append(PeerState(
            name=conn.get("conn-name"),
            node_id=_int(node_id),
            connection=conn.get("connection"),
            role=conn.get("role"),
            volumes=tuple(
                PeerVolumeState(volume=_int(pd.get("volume")), replication=pd.get("replication"),
                                disk=pd.get("peer-disk"), out_of_sync_kib=_int(pd.get("out-of-sync")))
                for (pres, pnode, _vol), pd in tables["peer-device"].items() if pres == name and pnode == node_id
            ),
        ))
    return DrbdResourceState(
        name=name,
        role=fields.get("role"),
        suspended=None if suspended is None else suspended != "no",
        volumes=tuple(
            VolumeState(volume=_int(d.get("volume")), minor=_int(d.get("minor")), disk=d.get("disk"),
                        quorum=_yes_no(d.get("quorum")))
            for (res, _vol), d in tables["device"].items() if res == name
        ),
        peers=tuple(peers),
    )
