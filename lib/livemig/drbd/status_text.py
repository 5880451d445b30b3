"""The text of ``drbdadm status`` / ``drbdsetup status [--verbose --statistics]``.

For people and for diagnosis; the guard reads the JSON form. The layout is
by indentation::

    home role:Secondary suspended:no          resource (column 0)
        write-ordering:flush                  continuation of the resource
      volume:0 minor:0 disk:UpToDate          local device (column 2, key:value first)
          size:5033792 read:0 ...             continuation (deeper)
      peer connection:Connected role:Secondary   connection (column 2, a bare name first)
        volume:0 replication:Established peer-disk:UpToDate   peer device (column 4)

Without ``--verbose`` drbdsetup leaves out what it considers normal (the
connection state when Connected, the volume number of a single volume);
those read as unknown. Early drbd-utils 9 printed a peer's disk as ``disk:``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from livemig.drbd.state import DrbdResourceState, PeerState, PeerVolumeState, VolumeState

Fields = Dict[str, str]


def _fields(words: List[str]) -> Fields:
    out: Fields = {}
    for word in words:
        key, sep, value = word.partition(":")
        if sep:
            out[key] = value
    return out


def _int(value: Optional[str]) -> Optional[int]:
    return int(value) if value is not None and value.isdigit() else None


def _yes_no(value: Optional[str]) -> Optional[bool]:
    return {"yes": True, "no": False}.get(value or "")


class _Resource:
    def __init__(self, name: str, fields: Fields) -> None:
        self.name = name
        self.fields = fields
        self.devices: List[Fields] = []
        self.peers: List[Tuple[str, Fields, List[Fields]]] = []


def parse_status_text(text: str) -> Tuple[DrbdResourceState, ...]:
    resources: List[_Resource] = []
    last: Optional[Fields] = None
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        words = line.split()
        if indent == 0:
            resources.append(_Resource(words[0], _fields(words[1:])))
            last = resources[-1].fields
            continue
        if not resources:
            continue
        res = resources[-1]
        if indent == 2 and ":" in words[0]:
            res.devices.append(_fields(words))
            last = res.devices[-1]
        elif indent == 2:
            res.peers.append((words[0], _fields(words[1:]), []))
            last = res.peers[-1][1]
        elif indent == 4 and res.peers and last is not res.fields:
            res.peers[-1][2].append(_fields(words))
            last = res.peers[-1][2][-1]
        elif last is not None:
            last.update(_fields(words))
    return tuple(_state(r) for r in resources)


def _state(res: _Resource) -> DrbdResourceState:
    suspended = res.fields.get("suspended")
    return DrbdResourceState(
        name=res.name,
        role=res.fields.get("role"),
        suspended=None if suspended is None else suspended != "no",
        volumes=tuple(
            VolumeState(volume=_int(d.get("volume")), minor=_int(d.get("minor")), disk=d.get("disk"),
                        quorum=_yes_no(d.get("quorum")))
            for d in res.devices
        ),
        peers=tuple(
            PeerState(
                name=name,
                node_id=_int(fields.get("node-id")),
                connection=fields.get("connection"),
                role=fields.get("role"),
                volumes=tuple(
                    PeerVolumeState(volume=_int(pd.get("volume")), replication=pd.get("replication"),
                                    disk=pd.get("peer-disk") or pd.get("disk"),
                                    out_of_sync_kib=_int(pd.get("out-of-sync")))
                    for pd in devices
                ),
            )
            for name, fields, devices in res.peers
        ),
    )
