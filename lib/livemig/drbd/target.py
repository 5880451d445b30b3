"""Which of a resource's connections is the migration's target node. Never a guess."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

from livemig.drbd.state import PeerState


def select_target_peer(peers: Sequence[PeerState], target: str,
                       peer_names: Mapping[str, str]) -> Tuple[Optional[PeerState], str]:
    """The connection to node ``target``, or ``None`` and why not. Never a guess.

    The connection must be named like ``target`` (full or short name, either
    way round), or like the DRBD name ``peer_names`` gives the node (which then
    must match). A connection whose name is unknown is never the target.
    """
    mapped = peer_names.get(target) or peer_names.get(_short(target))
    if mapped:
        matches = [p for p in peers if p.name is not None and (p.name == mapped or _short(p.name) == _short(mapped))]
        if len(matches) == 1:
            return matches[0], ""
        return None, (f"no single connection named {mapped} (the DRBD name given for node {target}); "
                      f"connections: {_peer_list(peers)}")
    wanted = {target, _short(target)}
    matches = [p for p in peers if p.name is not None and (p.name in wanted or _short(p.name) in wanted)]
    if len(matches) == 1:
        return matches[0], ""
    if len(matches) > 1:
        return None, f"more than one connection matches node {target}: {_peer_list(matches)}"
    if not peers:
        return None, f"no connection to {target} (the resource has no peer); needs a Connected peer"
    if all(p.name is None for p in peers):
        return None, (f"the peer's name is not known, so it cannot be shown to be node {target}; "
                      "needs the peer named (DRBD 9 names it; 8.x: from DRBD's configuration)")
    return None, (f"no connection is named {target} among {_peer_list(peers)}; if one of them is that node, "
                  f"map it: drbd_peer_names={_short(target)}=<DRBD host name> (livemig guard --peer-name)")


def _short(name: str) -> str:
    return name.split(".", 1)[0]


def _peer_list(peers: Sequence[PeerState]) -> str:
    return ", ".join(p.name or "(unnamed)" for p in peers) or "none"
