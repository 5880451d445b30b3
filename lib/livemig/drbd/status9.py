"""DRBD 9 state from ``drbdsetup status --json`` and ``drbdsetup show --json``.

The key sets differ between drbd-utils versions (``quorum`` arrived with DRBD
9.0.7-ish, ``suspended-user`` and friends later, ``out-of-sync`` only with
``--statistics``). A key that is missing or has the wrong type is read as
``None`` (unknown); it is never filled in with a healthy default. JSON that
does not parse, or whose shape is not a list of objects, raises
:class:`~livemig.drbd.state.DrbdStateError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from livemig.drbd.state import (
    DrbdResourceState,
    DrbdStateError,
    PeerState,
    PeerVolumeState,
    VolumeState,
)

# The specific freeze reasons newer drbd-utils print next to "suspended".
_SUSPEND_REASONS = ("suspended-user", "suspended-no-data", "suspended-fencing", "suspended-quorum")


def json_int(value: Any) -> Optional[int]:
    """An integer, or ``None`` (``bool`` is not an integer here)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def json_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def json_bool(value: Any) -> Optional[bool]:
    """``true``/``false``; drbd-utils also writes some flags as ``"yes"``/``"no"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"yes": True, "no": False, "true": True, "false": False}.get(value.lower())
    return None


def load_json_list(text: str, what: str) -> List[Mapping[str, Any]]:
    """The top-level list of objects drbdsetup prints, or :class:`DrbdStateError`."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise DrbdStateError(f"{what}: output is not valid JSON ({exc})") from None
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise DrbdStateError(f"{what}: expected a JSON list of objects")
    return document


def _objects(value: Any) -> List[Mapping[str, Any]]:
    """The objects of a JSON list; anything else reads as an empty list."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def parse_status_json(text: str) -> Tuple[DrbdResourceState, ...]:
    """Parse ``drbdsetup status --json [--verbose --statistics]``."""
    return tuple(_resource(doc) for doc in load_json_list(text, "drbdsetup status --json"))


def _resource(doc: Mapping[str, Any]) -> DrbdResourceState:
    return DrbdResourceState(
        name=json_str(doc.get("name")),
        role=json_str(doc.get("role")),
        suspended=_suspended(doc),
        volumes=tuple(
            VolumeState(
                volume=json_int(dev.get("volume")),
                minor=json_int(dev.get("minor")),
                disk=json_str(dev.get("disk-state")),
                quorum=json_bool(dev.get("quorum")),
            )
            for dev in _objects(doc.get("devices"))
        ),
        peers=tuple(_peer(conn) for conn in _objects(doc.get("connections"))),
    )


def _suspended(doc: Mapping[str, Any]) -> Optional[bool]:
    if any(json_bool(doc.get(key)) is True for key in _SUSPEND_REASONS):
        return True
    return json_bool(doc.get("suspended"))


def _peer(conn: Mapping[str, Any]) -> PeerState:
    return PeerState(
        name=json_str(conn.get("name")),
        node_id=json_int(conn.get("peer-node-id")),
        connection=json_str(conn.get("connection-state")),
        role=json_str(conn.get("peer-role")),
        volumes=tuple(
            PeerVolumeState(
                volume=json_int(pd.get("volume")),
                replication=json_str(pd.get("replication-state")),
                disk=json_str(pd.get("peer-disk-state")),
                out_of_sync_kib=json_int(pd.get("out-of-sync")),
                out_of_sync_unreadable="out-of-sync" in pd and json_int(pd.get("out-of-sync")) is None,
            )
            for pd in _objects(conn.get("peer_devices"))
        ),
    )


@dataclass(frozen=True)
class ShowConnection:
    """A connection's runtime settings from ``drbdsetup show --json``."""

    peer_node_id: Optional[int]
    name: Optional[str]
    cstate: Optional[str]
    allow_two_primaries: Optional[bool]


@dataclass(frozen=True)
class ShowResource:
    """A resource's runtime settings from ``drbdsetup show --json``."""

    name: Optional[str]
    auto_promote: Optional[bool]
    connections: Tuple[ShowConnection, ...]

    def connection_to(self, peer_node_id: Optional[int], peer_name: Optional[str]) -> Optional[ShowConnection]:
        """The connection with this peer node id (or, failing that, this name)."""
        if peer_node_id is not None:
            for conn in self.connections:
                if conn.peer_node_id == peer_node_id:
                    return conn
        if peer_name is not None:
            for conn in self.connections:
                if conn.name == peer_name:
                    return conn
        return None


def parse_show_json(text: str) -> Tuple[ShowResource, ...]:
    """Parse ``drbdsetup show --json [--show-defaults]``.

    Without ``--show-defaults`` drbdsetup omits options left at their
    default, so they read as unknown here; the reader asks for the defaults.
    """
    resources = []
    for doc in load_json_list(text, "drbdsetup show --json"):
        options = doc.get("options")
        auto_promote = json_bool(options.get("auto-promote")) if isinstance(options, dict) else None
        connections = []
        for conn in _objects(doc.get("connections")):
            net = conn.get("net")
            net = net if isinstance(net, dict) else {}
            connections.append(ShowConnection(
                peer_node_id=json_int(conn.get("_peer_node_id")),
                name=json_str(conn.get("_name")) or json_str(net.get("_name")),
                cstate=json_str(conn.get("_cstate")),
                allow_two_primaries=json_bool(net.get("allow-two-primaries")),
            ))
        resources.append(ShowResource(
            name=json_str(doc.get("resource")),
            auto_promote=auto_promote,
            connections=tuple(connections),
        ))
    return tuple(resources)
