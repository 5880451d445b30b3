"""DRBD 9 quorum: would this node keep quorum if its connection to one peer broke?

A live migration's source must keep quorum if the link to the target breaks
while the migration runs (else its I/O freezes or fails, ``on-no-quorum``).
:func:`survives_without` counts the votes as DRBD 9's ``calc_quorum()``
(``drbd/drbd_state.c``) does, from what this node's ``drbdsetup status`` and
``drbdsetup show`` say, with the target taken as lost:

- voters: this node and every diskful peer (connected or not); an
  intentionally diskless peer (a client, ``peer-client``) is no voter but a
  tiebreaker; a peer whose connection has ``allow-remote-read no`` is left
  out altogether, as DRBD leaves it out;
- votes: this node (diskful) and every diskful peer whose replication is up
  (``replication-state`` not ``Off``); ``up_to_date`` counts the UpToDate ones;
- ``quorum majority``: voters // 2 + 1 votes; ``all``: every voter; a number N:
  N votes; ``quorum-minimum-redundancy`` (same words, ``off`` 0): that many
  UpToDate votes as well;
- the diskless tiebreaker: an even number of voters, one vote short, quorum
  held now, and a majority of the diskless peers (connected or not) connected.

Where the state does not say which kind a peer is (no ``peer-client`` for a
Diskless or unknown disk, a contradiction), the peer counts the way that
makes quorum hardest: a voter without a vote, and a missing tiebreaker.
Every missing peer counts as a voter (DRBD leaves outdated peers out only
when no peer is unknown, and the lost target is unknown). What the state
cannot show (nodes known only to the metadata, the ``quorumless`` members of
the newest DRBD) is not counted; see docs/drbd-guard.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from livemig.drbd.health import volume_label
from livemig.drbd.state import DrbdResourceState, PeerState, PeerVolumeState, VolumeState
from livemig.drbd.status9 import ShowConnection, ShowResource

#: Disk states of a node that has a disk (everything but Diskless and unknown).
DISKFUL_STATES = frozenset({"Attaching", "Detaching", "Failed", "Negotiating", "Inconsistent", "Outdated",
                            "Consistent", "UpToDate"})


@dataclass(frozen=True)
class Survival:
    """The quorum-survival check of one resource."""

    ok: bool
    detail: str
    #: False when the settings or state could not be read (an undecided refusal).
    decided: bool = True
    #: The resource has no node besides this one and the target (only a tiebreaker would save it).
    two_node: bool = False


def quorum_needed(setting: str, voters: int) -> int:
    """DRBD's ``calc_quorum_at()``: votes needed for ``setting`` among ``voters``."""
    if setting == "majority":
        return voters // 2 + 1
    if setting == "all":
        return voters
    if setting in ("off", "absent"):
        return 0
    return int(setting)


@dataclass
class _Count:
    voters: int = 0
    votes: int = 0
    up_to_date: int = 0
    diskless: int = 0
    missing_diskless: int = 0

    def add_self(self, vol: VolumeState) -> None:
        if vol.disk == "UpToDate":
            self.voters, self.votes, self.up_to_date = self.voters + 1, self.votes + 1, self.up_to_date + 1
        elif vol.disk in DISKFUL_STATES:
            self.voters, self.votes = self.voters + 1, self.votes + 1
        elif vol.disk == "Diskless" and vol.client is True:
            self.diskless += 1
        else:
            self.voters += 1  # unknown to DRBD: a voter without a vote

    def add_peer(self, pv: Optional[PeerVolumeState], up: bool) -> None:
        kind = _kind(pv)
        if kind == "client":
            if up:
                self.diskless += 1
            else:
                self.missing_diskless += 1
        elif kind == "diskful":
            self.voters += 1
            if up:
                self.votes += 1
                self.up_to_date += pv is not None and pv.disk == "UpToDate"
        else:  # which kind it is cannot be told: the hardest way
            self.voters += 1
            self.missing_diskless += 1

    def has_quorum(self, setting: str, redundancy: str, quorum_now: bool) -> Tuple[bool, int]:
        needed = quorum_needed(setting, self.voters)
        redundant = self.up_to_date >= quorum_needed(redundancy, self.voters)
        if self.votes >= needed and redundant:
            return True, needed
        tiebreaker = (self.voters != 0 and self.voters % 2 == 0 and self.votes == needed - 1 and redundant
                      and quorum_now and self.diskless >= (self.diskless + self.missing_diskless) // 2 + 1)
        return tiebreaker, needed


def _kind(pv: Optional[PeerVolumeState]) -> str:
    """"client", "diskful", or "unknown" (no state, or one that does not say)."""
    if pv is None:
        return "unknown"
    if pv.peer_client is True:
        return "client" if pv.disk in ("Diskless", "DUnknown") else "unknown"
    if pv.disk in DISKFUL_STATES:
        return "diskful"
    return "unknown"


def _up(peer: PeerState, pv: Optional[PeerVolumeState]) -> bool:
    return (peer.connection == "Connected" and pv is not None and pv.replication is not None
            and pv.replication != "Off")


def survives_without(entry: DrbdResourceState, target: PeerState, show: ShowResource) -> Survival:
    """Whether this node keeps quorum on every volume of ``entry`` if ``target`` is lost (DRBD 9)."""
    setting, redundancy = show.quorum, show.quorum_minimum_redundancy
    if setting is None or redundancy is None:
        return Survival(False, "the resource's quorum options are unreadable (drbdsetup show: options quorum, "
                               "quorum-minimum-redundancy); needs them read", decided=False)
    if setting in ("absent", "off"):
        return Survival(True, f"quorum not configured (options quorum {setting}): no quorum to lose")
    who = target.name or "the target"
    counted: List[PeerState] = []
    for peer in entry.peers:
        conn = show.connection_to(peer.node_id)
        if conn is None or conn.allow_remote_read is None:
            what = "has no settings" if conn is None else "has an unreadable allow-remote-read"
            return Survival(False, f"drbdsetup show {what} for the connection to {peer.name or '?'} (node-id "
                                   f"{peer.node_id}); needs every connection's settings", decided=False)
        if conn.allow_remote_read:
            counted.append(peer)
    unknown = [c for c in show.connections if not _in_status(c, entry.peers)]
    if unknown:
        return Survival(False, f"drbdsetup show has a connection to node-id {unknown[0].peer_node_id} that "
                               "drbdsetup status does not list; needs both to agree", decided=False)
    two_node = not [p for p in entry.peers if p is not target]
    for vol in entry.volumes:
        count = _Count()
        count.add_self(vol)
        for peer in counted:
            match = [pv for pv in peer.volumes if pv.volume == vol.volume and vol.volume is not None]
            pv = match[0] if len(match) == 1 else None
            count.add_peer(pv, up=peer is not target and _up(peer, pv))
        kept, needed = count.has_quorum(setting, redundancy, vol.quorum is True)
        if not kept:
            label = volume_label(vol.volume, vol.minor)
            seen = (f"{label}: without {who} this node would have {count.votes} of {count.voters} votes "
                    f"({count.up_to_date} UpToDate), needs {needed} (quorum {setting}")
            seen += f", quorum-minimum-redundancy {redundancy})" if redundancy not in ("absent", "off") else ")"
            if two_node:
                return Survival(False, f"{seen}: the resource has no node besides this one and {who}, so if the "
                                       f"link to {who} breaks during the migration this node loses quorum; needs "
                                       "a third node as tiebreaker (a diskless node is enough), or the operator's "
                                       "allow_two_node_quorum", two_node=True)
            return Survival(False, f"{seen}, so if the link to {who} breaks during the migration this node loses "
                                   "quorum; needs the other peers connected")
    return Survival(True, f"quorum {setting} kept without {who} on every volume", two_node=two_node)


def _in_status(conn: ShowConnection, peers: Tuple[PeerState, ...]) -> bool:
    return any(p.node_id == conn.peer_node_id for p in peers)
