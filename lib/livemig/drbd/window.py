"""Two primaries for the length of one live migration (``drbd_two_primaries=migration``, DRBD 9).

The one owner of every change livemig makes to DRBD: this node's role for a
VM's resources, and the runtime ``allow-two-primaries`` of one connection.
What the window is and why each step is where it is: docs/two-primaries.md.

On the source, for each resource R behind the VM and the connection c to the
target T (node id from ``drbdsetup status``):

- **open**: a marker file first (the links and the protocol each ran before),
  then ``drbdsetup net-options R <T id> --allow-two-primaries=yes
  --protocol=C``, verified in ``drbdsetup show --json``. DRBD copies the two
  settings to T's side of c while it is Connected (P_PROTOCOL_UPDATE), where
  the libvirt hook (:mod:`livemig.hook`) reads them before it promotes T.
- **close**: once this node is Secondary, or T is (both Primary: DRBD refuses,
  code 164), the same call with ``no`` and the protocol of before, verified;
  then the marker goes.

:func:`find_leftovers` and :meth:`TwoPrimaries.clear` are what every other
action runs first: an allowance with no migration behind it is closed where
DRBD lets it be, and reported where both nodes are Primary.

Every call goes through :class:`~livemig.drbd.tools.DrbdReader` (bounded by
its deadline); DRBD's code is read from ``(<n>)`` in the tool's message, never
from its text.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from livemig.drbd.state import DrbdResourceState, DrbdStateError
from livemig.ocf.deadline import Deadline

if TYPE_CHECKING:
    import logging

    from livemig.drbd.status9 import ShowResource
    from livemig.drbd.tools import DrbdReader
    from livemig.run import CommandResult

#: DRBD's state-change result for "Device is held open by someone" (drbdsetup exits 11)
SS_DEVICE_IN_USE = -12
#: how often a role or a peer's role is read again while waiting for it to change
POLL = 0.25
_CODE = re.compile(r"\((-?[0-9]{1,4})\)")


class WindowError(Exception):
    """DRBD refused a change, or it could not be made or verified in time; the message says which."""


@dataclass(frozen=True)
class Link:
    """The connection of ``resource`` to the peer with ``peer_node_id``, and its protocol outside the window."""

    resource: str
    peer_node_id: int
    peer: str
    protocol: str


@dataclass(frozen=True)
class Leftover:
    """A runtime ``allow-two-primaries`` found where no migration of this node is running."""

    link: Link
    #: this node and the peer are both Primary on a Connected connection: DRBD will not let it close
    both_primary: bool


def drbd_code(result: CommandResult) -> Optional[int]:
    """DRBD's result code in a refusal (``R: State change failed: (-12) ...``, ``R: Failure: (164) ...``)."""
    found = _CODE.search(result.stderr)
    return int(found.group(1)) if found else None


def _message(result: CommandResult) -> str:
    return " ".join(line.strip() for line in result.stderr.strip().splitlines()) or result.describe()


class TwoPrimaries:
    """Roles and the window for the resources of one VM, on this node."""

    def __init__(self, reader: DrbdReader, deadline: Deadline, log: logging.Logger,
                 marker_path: Optional[str] = None) -> None:
        self.reader = reader
        self.deadline = deadline
        self.log = log
        self.marker_path = marker_path

    # -- roles ------------------------------------------------------------------------

    def promote(self, resource: str) -> None:
        """``drbdsetup primary R``: DRBD refuses it while a peer is Primary (-1) or without UpToDate data (-2)."""
        result = self._change(["drbdsetup", "primary", resource])
        if not result.ok:
            raise WindowError(f"{resource}: DRBD refused to make this node Primary: {_message(result)}")
        self.log.info("%s: Primary on this node", resource)

    def demote(self, resource: str, until: Optional[Deadline] = None) -> None:
        """``drbdsetup secondary R`` (0 when already Secondary); held open (-12): again until ``until``."""
        until = until or self.deadline
        while True:
            result = self._change(["drbdsetup", "secondary", resource])
            if result.ok:
                return
            if drbd_code(result) != SS_DEVICE_IN_USE or until.remaining() <= POLL:
                raise WindowError(f"{resource}: cannot make this node Secondary: {_message(result)}")
            time.sleep(POLL)

    # -- the window ---------------------------------------------------------------------

    def open(self, target: str, links: Sequence[Link]) -> None:
        """Allow two primaries on each link (the marker first); on any failure, close what was opened."""
        self.write_marker(target, links)
        opened: List[Link] = []
        try:
            for link in links:
                self._net_options(link, allow=True, protocol="C")
                opened.append(link)
            self._verify(links, allowed=True)
        except (WindowError, DrbdStateError) as exc:
            try:
                self.close(opened)
            except (WindowError, DrbdStateError) as again:
                self.log.error("could not close the two-primaries allowance again: %s", again)
            raise WindowError(f"cannot allow two primaries for the migration to {target}: {exc}") from None
        self.log.info("two primaries allowed for the migration to %s on %s", target,
                      ", ".join(f"{link.resource} (peer {link.peer})" for link in links))

    def close(self, links: Sequence[Link]) -> None:
        """Disallow two primaries on each link, protocol as before; verified; then the marker goes."""
        for link in links:
            self._net_options(link, allow=False, protocol=link.protocol or None)
        self._verify(links, allowed=False)
        self.remove_marker()
        if links:
            self.log.info("two primaries no longer allowed on %s",
                          ", ".join(f"{link.resource} (peer {link.peer})" for link in links))

    def wait_peers_secondary(self, links: Sequence[Link], until: Deadline) -> List[Link]:
        """Wait (bounded) until no peer of ``links`` is Primary as this node sees it; the links still Primary."""
        while True:
            states = self._states([link.resource for link in links])
            primary = [link for link in links if _peer_role(states.get(link.resource), link.peer_node_id) == "Primary"]
            if not primary or until.remaining() <= POLL:
                return primary
            time.sleep(POLL)

    def role(self, resource: str) -> Optional[str]:
        entry = self._states([resource]).get(resource)
        return entry.role if entry is not None else None

    # -- leftovers ----------------------------------------------------------------------

    def find_leftovers(self, resources: Sequence[str]) -> List[Leftover]:
        """Every connection of ``resources`` with a runtime allowance, and whether DRBD would let it close."""
        shown = self._show()
        states = self._states(resources)
        marker = self.read_marker()
        protocols = {(link.resource, link.peer_node_id): link.protocol for link in marker}
        found = []
        for name in resources:
            show = shown.get(name)
            entry = states.get(name)
            if show is None or entry is None:
                continue
            for conn in show.connections:
                if conn.allow_two_primaries is not True or conn.peer_node_id is None:
                    continue
                peer = next((p for p in entry.peers if p.node_id == conn.peer_node_id), None)
                both = (entry.role == "Primary" and peer is not None and peer.role == "Primary"
                        and peer.connection == "Connected")
                link = Link(name, conn.peer_node_id, (peer.name if peer else None) or conn.name or "?",
                            protocols.get((name, conn.peer_node_id), ""))
                found.append(Leftover(link, both))
        return found

    def clear(self, leftovers: Sequence[Leftover]) -> List[Leftover]:
        """Close each leftover DRBD lets close; the ones left (both Primary)."""
        closable = [left.link for left in leftovers if not left.both_primary]
        if closable:
            self.log.warning("closing a two-primaries allowance that no migration holds: %s",
                             ", ".join(f"{link.resource} (peer {link.peer})" for link in closable))
            self.close(closable)
        elif not leftovers:
            self.remove_marker()
        return [left for left in leftovers if left.both_primary]

    # -- the marker ---------------------------------------------------------------------

    def write_marker(self, target: str, links: Sequence[Link]) -> None:
        if self.marker_path is None:
            return
        from livemig.files import replace_file

        doc = {"target": target, "opened": time.time(), "links": [asdict(link) for link in links]}
        replace_file(self.marker_path, json.dumps(doc, sort_keys=True) + "\n", mode=0o600)

    def read_marker(self) -> List[Link]:
        """The links a marker names ([] without one; an unreadable marker names none, it is only a hint)."""
        if self.marker_path is None:
            return []
        try:
            with open(self.marker_path, encoding="utf-8") as fh:
                doc = json.loads(fh.read(65536))
            return [Link(str(d["resource"]), int(d["peer_node_id"]), str(d["peer"]), str(d["protocol"]))
                    for d in doc["links"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log.warning("ignoring the window marker %s: %s", self.marker_path, exc)
            return []

    def remove_marker(self) -> None:
        if self.marker_path is None:
            return
        try:
            os.unlink(self.marker_path)
        except FileNotFoundError:
            pass

    # -- DRBD ---------------------------------------------------------------------------

    def _net_options(self, link: Link, allow: bool, protocol: Optional[str]) -> None:
        argv = ["drbdsetup", "net-options", link.resource, str(link.peer_node_id),
                f"--allow-two-primaries={'yes' if allow else 'no'}"]
        if protocol:
            argv.append(f"--protocol={protocol}")
        result = self._change(argv)
        if not result.ok:
            raise WindowError(f"{link.resource}: DRBD refused {' '.join(argv[2:])}: {_message(result)}")

    def _verify(self, links: Sequence[Link], allowed: bool) -> None:
        if not links:
            return
        shown = self._show()
        for link in links:
            show = shown.get(link.resource)
            conn = show.connection_to(link.peer_node_id) if show is not None else None
            seen = conn.allow_two_primaries if conn is not None else None
            if seen is not allowed:
                raise WindowError(f"{link.resource}: drbdsetup show reports allow-two-primaries "
                                  f"{_word(seen)} on the connection to {link.peer} after setting it "
                                  f"{_word(allowed)}")

    def _show(self) -> Dict[str, ShowResource]:
        return {r.name: r for r in self.reader.show9() if r.name is not None}

    def _states(self, resources: Sequence[str]) -> Dict[str, DrbdResourceState]:
        status = self.reader.read_resources(resources)
        return {r.name: r for r in status.resources if r.name in resources and r.name is not None}

    def _change(self, argv: List[str]) -> CommandResult:
        try:
            return self.reader.change(argv)
        except DrbdStateError as exc:
            raise WindowError(str(exc)) from None


def _peer_role(entry: Optional[DrbdResourceState], node_id: int) -> Optional[str]:
    if entry is None:
        return None
    peer = next((p for p in entry.peers if p.node_id == node_id), None)
    return peer.role if peer is not None else None


def _word(value: Optional[bool]) -> str:
    return "unknown" if value is None else ("yes" if value else "no")
