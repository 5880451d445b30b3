"""DRBD 9 state from ``drbdsetup status --json`` and ``drbdsetup show --json``.

The key sets differ between drbd-utils versions (``quorum`` arrived with DRBD
9.0.7-ish, ``suspended-user`` and friends later). A key that is missing or has
the wrong type is read as ``None`` (unknown); it is never filled in with a
healthy default. ``out-of-sync`` is printed for every peer device in every
version of drbdsetup's JSON, so a peer device without it is unreadable, not
"not reported". Any ``suspended-*`` key (a freeze reason, known or of a later
version) that is there but neither false nor "no" makes the I/O state
suspended or unknown. JSON that does not parse, that repeats a key in one
object (which one would count is not known), whose shape is not a list of
objects at every level (the resources, their ``devices`` and ``connections``,
each connection's ``peer_devices``), that has a resource or connection
without a name, or that lists one resource, volume or connection twice,
raises :class:`~livemig.drbd.state.DrbdStateError`: no entry is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from livemig.drbd.state import (
    DrbdResourceState,
    DrbdStateError,
    PeerState,
    PeerVolumeState,
    VolumeState,
)

# The specific freeze reasons newer drbd-utils print next to "suspended" ("suspended-user",
# "-no-data", "-fencing", "-quorum"); a reason of a later version counts the same way.
_SUSPEND_REASON_PREFIX = "suspended-"


def json_int(value: Any) -> Optional[int]:
    """An integer, or ``None`` (``bool`` is not an integer here)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def json_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def json_volume(value: Any) -> Optional[int]:
    """A volume number (a non-negative integer), or ``None``."""
    number = json_int(value)
    return number if number is not None and number >= 0 else None


def _name(doc: Mapping[str, Any], key: str, what: str) -> Optional[str]:
    """The string under ``key`` (``None`` if empty); :class:`DrbdStateError` if it is missing or no string.

    drbdsetup names every resource and connection: one without a name could
    be any of them, so it is not skipped.
    """
    value = doc.get(key)
    if not isinstance(value, str):
        raise DrbdStateError(f"{what}: an entry whose {key!r} is {'missing' if key not in doc else 'not a string'}")
    return value or None


#: The words drbd-utils writes for a flag where it writes it as a string (``"resync-suspended": "no"``).
_BOOLEAN_WORDS = {"yes": True, "no": False, "true": True, "false": False}


def json_bool(value: Any) -> Optional[bool]:
    """``true``/``false``, or one of the words yes/no/true/false as drbd-utils writes them; else unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _BOOLEAN_WORDS.get(value)
    return None


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """A JSON object, or :class:`_RepeatedKey` if it names a key twice (json.loads would keep the last)."""
    found: Dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKey(key)
        found[key] = value
    return found


def load_json_list(text: str, what: str) -> List[Mapping[str, Any]]:
    """The top-level list of objects drbdsetup prints, or :class:`DrbdStateError`."""
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise DrbdStateError(f"{what}: an object gives the key {exc.args[0]!r} twice") from None
    except (ValueError, RecursionError) as exc:
        raise DrbdStateError(f"{what}: output is not valid JSON ({exc})") from None
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise DrbdStateError(f"{what}: expected a JSON list of objects")
    return document


def _objects(doc: Mapping[str, Any], key: str, what: str, required: bool = True) -> List[Mapping[str, Any]]:
    """The list of objects under ``key``; :class:`DrbdStateError` for anything else (nothing is skipped).

    A key that is not there is an error when ``required`` (``drbdsetup
    status`` always prints it), else an empty list.
    """
    if key not in doc and not required:
        return []
    value = doc.get(key)
    if not isinstance(value, list):
        raise DrbdStateError(f"{what}: {key!r} is {'missing' if key not in doc else 'not a list'}")
    if not all(isinstance(item, dict) for item in value):
        raise DrbdStateError(f"{what}: {key!r} holds an entry that is not an object")
    return value


def _no_repeats(keys: Iterable[Any], what: str) -> None:
    """:class:`DrbdStateError` if a (known) key occurs twice: which entry would count is not known."""
    seen = set()
    for key in keys:
        if key is None:
            continue  # unknown: its own checks fail
        if key in seen:
            raise DrbdStateError(f"{what} lists {key!r} twice")
        seen.add(key)


def parse_status_json(text: str) -> Tuple[DrbdResourceState, ...]:
    """Parse ``drbdsetup status --json [--verbose --statistics]``."""
    resources = tuple(_resource(doc) for doc in load_json_list(text, "drbdsetup status --json"))
    _no_repeats((r.name for r in resources), "drbdsetup status --json: the resource list")
    return resources


def _resource(doc: Mapping[str, Any]) -> DrbdResourceState:
    name = _name(doc, "name", "drbdsetup status --json: the resource list")
    what = f"drbdsetup status --json: resource {name or '?'}"
    volumes = tuple(
        VolumeState(
            volume=json_volume(dev.get("volume")),
            minor=json_int(dev.get("minor")),
            disk=json_str(dev.get("disk-state")),
            quorum=json_bool(dev.get("quorum")),
            client=json_bool(dev.get("client")),
        )
        for dev in _objects(doc, "devices", what)
    )
    _no_repeats((v.volume for v in volumes), f"{what}: devices")
    peers = tuple(_peer(conn, what) for conn in _objects(doc, "connections", what))
    _no_repeats((p.node_id for p in peers), f"{what}: connections (peer-node-id)")
    _no_repeats((p.name for p in peers), f"{what}: connections (name)")
    return DrbdResourceState(
        name=name,
        role=json_str(doc.get("role")),
        suspended=_suspended(doc),
        volumes=volumes,
        peers=peers,
    )


def _suspended(doc: Mapping[str, Any]) -> Optional[bool]:
    """Suspended if any reason says so; unknown if ``suspended`` or a reason present is not a boolean."""
    reasons = [json_bool(value) for key, value in doc.items() if key.startswith(_SUSPEND_REASON_PREFIX)]
    overall = json_bool(doc.get("suspended"))
    if overall is True or True in reasons:
        return True
    if overall is None or None in reasons:
        return None
    return False


def _peer(conn: Mapping[str, Any], what: str) -> PeerState:
    name = _name(conn, "name", f"{what}: connections")
    where = f"{what}: connection {name or '?'}"
    volumes = tuple(
        PeerVolumeState(
            volume=json_volume(pd.get("volume")),
            replication=json_str(pd.get("replication-state")),
            disk=json_str(pd.get("peer-disk-state")),
            out_of_sync_kib=json_int(pd.get("out-of-sync")),
            out_of_sync_unreadable=json_int(pd.get("out-of-sync")) is None,  # always printed: missing is unknown
            peer_client=json_bool(pd.get("peer-client")),
        )
        for pd in _objects(conn, "peer_devices", where)
    )
    _no_repeats((v.volume for v in volumes), f"{where}: peer_devices")
    return PeerState(
        name=name,
        node_id=json_int(conn.get("peer-node-id")),
        connection=json_str(conn.get("connection-state")),
        role=json_str(conn.get("peer-role")),
        volumes=volumes,
    )


@dataclass(frozen=True)
class ShowConnection:
    """A connection's runtime settings from ``drbdsetup show --json``."""

    peer_node_id: Optional[int]
    name: Optional[str]
    cstate: Optional[str]
    allow_two_primaries: Optional[bool]
    #: ``net.allow-remote-read`` (absent: True, DRBD's default; a peer with ``no`` has no quorum vote).
    allow_remote_read: Optional[bool] = True
    #: the wire protocol (A, B or C); None when not shown (plain ``show`` omits C, the default)
    protocol: Optional[str] = None


@dataclass(frozen=True)
class ShowResource:
    """A resource's runtime settings from ``drbdsetup show --json``."""

    name: Optional[str]
    auto_promote: Optional[bool]
    connections: Tuple[ShowConnection, ...]
    #: ``options.quorum`` as a word: "absent" (not printed), "off", "majority", "all", a number ("2"),
    #: or ``None`` (unknown: no ``options`` object, or a value that is none of these).
    quorum: Optional[str] = "absent"
    #: ``options.quorum-minimum-redundancy``, in the same words.
    quorum_minimum_redundancy: Optional[str] = "absent"

    def connection_to(self, peer_node_id: Optional[int]) -> Optional[ShowConnection]:
        """The connection to the peer with this node id (``drbdsetup status``'s ``peer-node-id``).

        drbdsetup prints the id in both documents; a peer whose id is unknown
        is matched to no connection (never by name alone).
        """
        if peer_node_id is None:
            return None
        for conn in self.connections:
            if conn.peer_node_id == peer_node_id:
                return conn
        return None


def quorum_word(options: Any, key: str) -> Optional[str]:
    """``options[key]`` of ``drbdsetup show --json`` as "absent", "off", "majority", "all" or a number.

    drbdsetup prints the value as a string (``"majority"``, ``"2"``); an
    integer is taken as well, and 0 is "off" (DRBD's ``QOU_OFF``). No
    ``options`` object, or any other value, is ``None`` (unknown).
    """
    if not isinstance(options, dict):
        return None
    if key not in options:
        return "absent"
    value = options[key]
    if isinstance(value, str) and value in ("off", "majority", "all"):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 4:
        value = int(value)
    number = json_int(value)
    if number is None or not 0 <= number <= 32:
        return None
    return "off" if number == 0 else str(number)


def _remote_read(net: Mapping[str, Any]) -> Optional[bool]:
    return True if "allow-remote-read" not in net else json_bool(net.get("allow-remote-read"))


def parse_show_json(text: str) -> Tuple[ShowResource, ...]:
    """Parse ``drbdsetup show --json [--show-defaults]``.

    Without ``--show-defaults`` drbdsetup omits options left at their
    default, so they read as unknown here; the reader asks for the defaults.
    An entry without a ``resource`` name, or a connection without an integer
    ``_peer_node_id`` (or with one another connection of the resource has),
    is :class:`DrbdStateError`: which settings are whose could not be told.
    """
    resources = []
    for doc in load_json_list(text, "drbdsetup show --json"):
        options = doc.get("options")
        auto_promote = json_bool(options.get("auto-promote")) if isinstance(options, dict) else None
        connections = []
        name = _name(doc, "resource", "drbdsetup show --json: the resource list")
        what = f"drbdsetup show --json: resource {name or '?'}"
        for conn in _objects(doc, "connections", what, required=False):
            raw_net = conn.get("net")
            net = raw_net if isinstance(raw_net, dict) else {}
            peer_node_id = json_int(conn.get("_peer_node_id"))
            if peer_node_id is None:
                raise DrbdStateError(f"{what}: a connection without an integer '_peer_node_id'")
            connections.append(ShowConnection(
                peer_node_id=peer_node_id,
                name=json_str(conn.get("_name")) or json_str(net.get("_name")),
                cstate=json_str(conn.get("_cstate")),
                allow_two_primaries=json_bool(net.get("allow-two-primaries")),
                allow_remote_read=_remote_read(net) if isinstance(raw_net, dict) else None,
                protocol=json_str(net.get("protocol")),
            ))
        _no_repeats((c.peer_node_id for c in connections), f"{what}: connections (_peer_node_id)")
        resources.append(ShowResource(
            name=name,
            auto_promote=auto_promote,
            connections=tuple(connections),
            quorum=quorum_word(options, "quorum"),
            quorum_minimum_redundancy=quorum_word(options, "quorum-minimum-redundancy"),
        ))
    return tuple(resources)
