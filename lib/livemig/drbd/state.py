"""Typed DRBD state, the same for every DRBD generation.

Every field is ``None`` when the source did not say: a missing key, a value of
the wrong type, a field that generation does not have. ``None`` means
*unknown*, and the guard treats unknown as unsafe. State names (roles, disk,
connection and replication states) are kept exactly as DRBD writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


class DrbdStateError(Exception):
    """DRBD state could not be read or understood (tool missing, failed, hung, garbage).

    The guard turns this into an undecided verdict: a refusal.
    """


@dataclass(frozen=True)
class VolumeState:
    """One local volume (a DRBD device) of a resource."""

    volume: Optional[int]
    minor: Optional[int]
    disk: Optional[str]
    quorum: Optional[bool] = None
    #: This node is an intentionally diskless DRBD client for this volume (drbdsetup's ``client``).
    client: Optional[bool] = None


@dataclass(frozen=True)
class PeerVolumeState:
    """What this node knows about one volume on one peer."""

    volume: Optional[int]
    replication: Optional[str]
    disk: Optional[str]
    out_of_sync_kib: Optional[int] = None
    # 8.x has no volume numbers in /proc/drbd; the minor tells volumes apart there.
    minor: Optional[int] = None
    #: The source printed an out-of-sync value that is not a count: unknown, and not "not reported".
    out_of_sync_unreadable: bool = False
    #: The peer is an intentionally diskless DRBD client for this volume (drbdsetup's ``peer-client``).
    peer_client: Optional[bool] = None


@dataclass(frozen=True)
class PeerState:
    """One connection of a resource, as seen from this node."""

    name: Optional[str]
    node_id: Optional[int]
    connection: Optional[str]
    role: Optional[str]
    volumes: Tuple[PeerVolumeState, ...] = ()


@dataclass(frozen=True)
class DrbdResourceState:
    """A resource as seen from this node.

    For DRBD 8.x each minor of ``/proc/drbd`` is one of these, with exactly
    one peer whose ``connection`` is the raw ``cs:`` value (named from DRBD's
    configuration when the reader was asked for the peer, else unnamed).

    Two reasons replace the state when it is not there to read:

    - ``absent``: DRBD's configuration gives this node the volume, but the kernel
      does not have it (8.x: the minor is not in ``/proc/drbd``, or is
      ``Unconfigured``): a known state, the resource is (partly) down here;
    - ``unreadable``: the state could not be read or understood (the tool that
      names the resource's minors failed, the minor's line is garbled).
    """

    name: Optional[str]
    role: Optional[str]
    suspended: Optional[bool]
    volumes: Tuple[VolumeState, ...] = ()
    peers: Tuple[PeerState, ...] = ()
    absent: Optional[str] = None
    unreadable: Optional[str] = None


@dataclass(frozen=True)
class DrbdStatus:
    """Everything read in one go: the kernel's DRBD version and its resources.

    ``generation`` is 8 or 9 (``None`` if it could not be told).
    """

    drbd_version: Optional[str]
    generation: Optional[int]
    resources: Tuple[DrbdResourceState, ...] = field(default_factory=tuple)

    def resource(self, name: str) -> List[DrbdResourceState]:
        """The entries for resource ``name`` (8.x: one per minor; 9: at most one)."""
        return [r for r in self.resources if r.name == name]


def generation_of(version: Optional[str]) -> Optional[int]:
    """8 for ``8.x``, 9 for ``9.x`` and later, ``None`` if the version says nothing."""
    if not version:
        return None
    head = version.split(".", 1)[0]
    if not head.isdigit():
        return None
    major = int(head)
    if major == 8:
        return 8
    if major >= 9:
        return 9
    return None


def status_as_json(status: DrbdStatus) -> Dict[str, Any]:
    """The ``livemig drbd status --json`` document: every key always present."""
    return {
        "drbd_version": status.drbd_version,
        "resources": [resource_as_json(r) for r in status.resources],
    }


def resource_as_json(resource: DrbdResourceState) -> Dict[str, Any]:
    return {
        "name": resource.name,
        "role": resource.role,
        "suspended": resource.suspended,
        "volumes": [
            {"volume": v.volume, "minor": v.minor, "disk": v.disk, "quorum": v.quorum}
            for v in resource.volumes
        ],
        "peers": [
            {
                "name": p.name,
                "node_id": p.node_id,
                "connection": p.connection,
                "role": p.role,
                "volumes": [
                    {
                        "volume": pv.volume,
                        "replication": pv.replication,
                        "disk": pv.disk,
                        "out_of_sync_kib": pv.out_of_sync_kib,
                    }
                    for pv in p.volumes
                ],
            }
            for p in resource.peers
        ],
    }
