"""Names livemig hands to DRBD's tools or compares with DRBD's: the one check, and the one ``NODE=HOST`` parser.

A DRBD resource name, a DRBD host name and a Pacemaker node name, as livemig
accepts them: ASCII letters, digits and ``_ . + -``, at most 128 characters,
never a leading ``-`` (a resource name goes into ``drbdadm``'s argv, where it
would read as an option).

``NODE=HOST`` maps a Pacemaker node name to the host name DRBD's configuration
gives that node, where they differ: the agent's ``drbd_peer_names``
(``node1=host1 node2=host2``, or comma-separated) and the ``livemig``
command's ``--peer-name`` (one per option) are read by :func:`parse_peer_names`.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Tuple

DRBD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


class PeerNameError(ValueError):
    """An item is not ``NODE=HOST`` with two acceptable names; ``item`` is the item as given."""

    def __init__(self, item: str) -> None:
        super().__init__(f"{item!r} is not NODE=HOST")
        self.item = item


def is_drbd_name(name: str) -> bool:
    """Whether ``name`` is a resource, host or node name livemig accepts."""
    return bool(DRBD_NAME.match(name))


def parse_peer_name(item: str) -> Tuple[str, str]:
    """``NODE=HOST`` (blanks around either name ignored) into ``(node, host)``, or :class:`PeerNameError`."""
    node, sep, host = item.partition("=")
    node, host = node.strip(), host.strip()
    if not sep or not is_drbd_name(node) or not is_drbd_name(host):
        raise PeerNameError(item)
    return node, host


def parse_peer_names(items: Iterable[str]) -> Dict[str, str]:
    """Every ``NODE=HOST`` of ``items`` into a mapping (a later item for a node wins)."""
    return dict(parse_peer_name(item) for item in items)


def split_peer_names(value: str) -> Dict[str, str]:
    """A ``drbd_peer_names`` value: ``NODE=HOST`` items separated by blanks or commas."""
    return parse_peer_names(value.replace(",", " ").split())
