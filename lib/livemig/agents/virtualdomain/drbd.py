"""The DRBD side of ocf:livemig:VirtualDomain: which resources, and the checks per action.

Which resources: those found behind the domain's disks, after the ones named
in ``drbd_resources`` (explicit first, in order, no duplicates). The explicit
list stands for the disks whose backing cannot be traced; it never hides a
resource found on a disk that can be.

The local checks are one rule (:mod:`livemig.drbd.health`: up with every
configured volume, Primary, I/O not suspended, every volume UpToDate, DRBD 9
quorum held), applied by:

- start: in ``dual-primary`` mode (code 1 otherwise: the promotable clone or
  the constraints are not doing their job, or the data is not current);
- monitor at OCF_CHECK_LEVEL >= 10, under the running VM;
- migrate_to: the guard's verdict (:func:`livemig.drbd.guard.evaluate_guard`),
  which adds the target's side, before anything is migrated, and its DRBD
  checks again every second while the job runs (:meth:`DrbdPolicy.watch`): a
  change aborts the migration;
- migrate_from: under the arrived VM.

``drbd_guard=auto`` means dual-primary when any disk is on DRBD, else off.

``drbd_two_primaries=migration`` (DRBD 9): no promotable clone; the agent owns the
VM's DRBD roles here (:mod:`livemig.drbd.window` makes every change): start makes
this node Primary (DRBD refuses while a peer is), stop makes it Secondary again, and
migrate_to opens the two-primaries window on the connection to the target for the
migration only (:meth:`DrbdPolicy.open_window`, :meth:`DrbdPolicy.close_window`).
Every other action clears an allowance no migration holds first.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from livemig.ocf.deadline import Deadline
from livemig.ocf.errors import ConfigurationError, GenericError
from livemig.run import CommandRunner

if TYPE_CHECKING:
    import logging

    from livemig.drbd.health import LocalCheck
    from livemig.drbd.window import Link, TwoPrimaries

GUARD_MODES = ("auto", "dual-primary", "auto-promote", "off")
TWO_PRIMARIES = ("always", "migration")
#: a DRBD resource, host or Pacemaker node name as livemig accepts it: ASCII, no leading '-'
_DRBD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


def parse_resource_list(value: str) -> List[str]:
    names = [n for n in value.replace(",", " ").split() if n]
    for name in names:
        # ASCII only, and never a leading '-': the name goes into drbdadm's argv.
        if not _DRBD_NAME.match(name):
            raise ConfigurationError(f"drbd_resources: {name!r} is not a DRBD resource name")
    return list(dict.fromkeys(names))


def parse_peer_names(value: str) -> Dict[str, str]:
    """``node1=host1 node2=host2`` (or comma-separated) into a mapping (:func:`livemig.names.split_peer_names`)."""
    if not value.strip():
        return {}  # the common case, checked by every monitor: nothing to import
    from livemig.names import PeerNameError, split_peer_names

    try:
        return split_peer_names(value)
    except PeerNameError as exc:
        raise ConfigurationError(f"drbd_peer_names: {exc.item!r} is not NODE=DRBD_HOST") from None


class DrbdPolicy:
    """The DRBD resources behind one VM and the guard mode that applies to them."""

    def __init__(self, values: Mapping[str, Any], xml_text: Optional[str], runner: CommandRunner,
                 deadline: Deadline, log: logging.Logger, marker_path: Optional[str] = None) -> None:
        self.values = values
        self.marker_path = marker_path
        #: ``migration``: two primaries only for the length of a migration (the agent owns the roles)
        self.window_mode = (values.get("drbd_two_primaries") or "always") == "migration"
        #: the links migrate_to opened (set by :meth:`open_window`)
        self.links: List[Link] = []
        self.runner = runner
        self.deadline = deadline
        self.log = log
        self.setting = values.get("drbd_guard") or "auto"
        self.explicit = parse_resource_list(values.get("drbd_resources") or "")
        self.peer_names = parse_peer_names(values.get("drbd_peer_names") or "")
        self.detection_error: Optional[str] = None
        self.resources: List[str] = []
        if self.setting == "off":
            return
        self.resources = list(self.explicit)
        if xml_text is None:
            return
        from livemig.drbd.mapping import resources_from_domain_xml
        from livemig.drbd.state import DrbdStateError

        try:
            # With an explicit list, a disk whose backing cannot be traced is left to it.
            found = resources_from_domain_xml(xml_text, runner, deadline, untraceable_ok=bool(self.explicit))
        except DrbdStateError as exc:
            self.detection_error = str(exc)
            found = []
        self.resources = list(dict.fromkeys(self.explicit + found))

    @property
    def mode(self) -> str:
        """The effective mode: off, dual-primary or auto-promote."""
        if self.setting == "off":
            return "off"
        if self.setting == "auto":
            return "dual-primary" if (self.resources or self.detection_error) else "off"
        return self.setting

    def check_start(self) -> None:
        """Code 1 unless every resource passes the local health rule here (dual-primary mode only).

        In the migration window mode this node is made Primary first (:meth:`_promote_for_start`).
        """
        if self.mode == "off":
            return
        if self.window_mode:
            self._promote_for_start()
        elif self.mode != "dual-primary":
            return
        if self.detection_error:
            self.log.warning("cannot tell which DRBD resources the domain uses (%s); checking only %s before start",
                             self.detection_error, ", ".join(self.resources) or "none")
        problem = self._local_problem("start")
        if problem is not None:
            advice = _START_ADVICE.get(problem.check)
            reason = problem.sentence("on this node")
            raise GenericError(f"{reason}; {advice.format(res=problem.resource)}" if advice else reason)

    def check_monitor(self) -> None:
        """Deep monitor: local DRBD trouble under a running VM is a failure (code 1)."""
        if self.mode == "off":
            return
        if self.detection_error:
            raise GenericError(f"cannot tell which DRBD resources the domain uses: {self.detection_error}")
        if self.window_mode:
            self.clear_leftovers("monitor", fail_if_stuck=False)
        problem = self._local_problem("monitor")
        if problem is not None:
            raise GenericError(problem.sentence("under the running domain"))

    def check_arrived(self, source: str) -> None:
        """migrate_from: the VM runs here now, so this node's DRBD must be what start requires.

        A migration that completed just as the target's disk left UpToDate (or
        lost its Primary role) must not be reported as a success: the code 1
        makes Pacemaker stop the VM on both nodes and start it where the data
        is UpToDate.
        """
        if self.mode == "off" or self.detection_error:
            return  # the guard refused before anything moved; nothing new to learn here
        if self.window_mode:
            self.clear_leftovers("migrate_from", fail_if_stuck=False)
        problem = self._local_problem("migrate_from")
        if problem is not None:
            raise GenericError(f"arrived from {source} but {problem.sentence('under the arrived domain')}: "
                               "it must not run on this node's data")

    def _local_problem(self, action: str) -> Optional[LocalCheck]:
        """The first local check that fails for the plan's resources (the one rule: drbd.health)."""
        if not self.resources:
            return None
        from livemig.drbd.health import first_problem

        return first_problem(self.resources, self._status(action))

    def guard(self, target: str) -> None:
        """Raise GenericError with every failed check unless the guard allows migrating to ``target``."""
        if self.mode == "off":
            self.log.info("DRBD guard off: not checking DRBD before migrating to %s", target)
            return
        if self.detection_error:
            hint = ("every disk that can be traced must be, drbd_resources stands only for those that cannot"
                    if self.explicit else "set drbd_resources, or drbd_guard=off if no disk is on DRBD")
            raise GenericError(f"DRBD guard refused migration to {target}: {self.detection_error} ({hint})")
        from livemig.drbd.guard import evaluate_guard

        wait = float(self.values.get("drbd_wait") or 0)
        verdict = evaluate_guard(self.resources, target, self._guard_mode(), runner=self.runner,
                                 deadline=self.deadline, peer_names=self.peer_names, wait=wait,
                                 **self._guard_options("before"))
        if not verdict.allowed:
            reasons = verdict.reasons() or ["no DRBD check could be made"]
            for line in reasons:
                self.log.error("DRBD guard: %s", line)
            more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
            raise GenericError(f"DRBD guard refused migration to {target}: {reasons[0]}{more}")
        self.log.info("DRBD guard: migrating to %s is safe for %s", target, ", ".join(self.resources))

    def watch(self, target: str, seconds: float) -> Optional[str]:
        """During the migration: None while the guard still allows it, else why not.

        The guard's DRBD checks again (not the CIB's: a lost connection shows in
        DRBD's state first), bounded by ``seconds``; state that cannot be read
        in that time is a reason to stop, as it is before the migration.
        """
        if self.mode == "off" or not self.resources:
            return None
        from livemig.drbd.guard import evaluate_guard

        verdict = evaluate_guard(self.resources, target, self._guard_mode(), runner=self.runner,
                                 deadline=Deadline(seconds), peer_names=self.peer_names, check_cib=False,
                                 **self._guard_options("during"))
        if verdict.allowed:
            return None
        reasons = verdict.reasons() or ["no DRBD check could be made"]
        for line in reasons:
            self.log.error("DRBD during the migration: %s", line)
        return reasons[0]

    def _guard_mode(self) -> str:
        if self.window_mode:
            from livemig.drbd.modes import MODE_WINDOW

            return MODE_WINDOW
        return self.mode

    def _guard_options(self, phase: str) -> Dict[str, Any]:
        # Only what differs from the guard's defaults (today's behaviour) is passed.
        options: Dict[str, Any] = {name: True for name in ("allow_diskless_target", "allow_two_node_quorum")
                                   if self.values.get("drbd_" + name)}
        if self.window_mode:
            options["phase"] = phase
        return options

    # -- the two-primaries window (drbd_two_primaries=migration) ----------------------------

    def _changes(self) -> TwoPrimaries:
        from livemig.drbd.tools import DrbdReader
        from livemig.drbd.window import TwoPrimaries

        return TwoPrimaries(DrbdReader(self.runner, self.deadline), self.deadline, self.log, self.marker_path)

    def _require_drbd9(self, action: str) -> None:
        status = self._status(action)
        if status.generation != 9:
            raise ConfigurationError("drbd_two_primaries=migration needs DRBD 9 (this node runs DRBD "
                                     f"{status.drbd_version or '8'}): use drbd_two_primaries=always")

    def clear_leftovers(self, action: str, fail_if_stuck: bool = True) -> None:
        """Close an allowance no migration holds; both nodes Primary under one: code 1 (or an error logged).

        The VM running here (monitor, migrate_from) is not failed for it: the other Primary has
        no VM, and recovering this one would stop a running VM for a stray role elsewhere.
        """
        from livemig.drbd.state import DrbdStateError
        from livemig.drbd.window import WindowError

        if not self.resources:
            return
        try:
            stuck = self._changes().clear(self._changes().find_leftovers(self.resources))
        except (WindowError, DrbdStateError) as exc:
            raise GenericError(f"{action}: cannot clear a two-primaries allowance left by a migration: {exc}") from None
        if stuck:
            link = stuck[0].link
            reason = (f"two primaries outside a migration: {link.resource} is Primary here and on {link.peer} "
                      f"with allow-two-primaries on; on {link.peer}, where no VM uses it: drbdsetup secondary "
                      f"{link.resource}; then here: drbdsetup net-options {link.resource} {link.peer_node_id} "
                      "--allow-two-primaries=no")
            if fail_if_stuck:
                raise GenericError(reason)
            self.log.error("%s", reason)

    def _promote_for_start(self) -> None:
        from livemig.drbd.window import WindowError

        if self.detection_error:
            raise GenericError(f"cannot tell which DRBD resources the domain uses, so they cannot be made Primary "
                               f"here: {self.detection_error} (set drbd_resources)")
        if not self.resources:
            return
        self._require_drbd9("start")
        self.clear_leftovers("start")
        status = self._status("start")
        for name in self.resources:
            for entry in status.resource(name):
                if entry.role == "Primary":
                    continue
                busy = [p.name or str(p.node_id) for p in entry.peers if p.role == "Primary"]
                if busy:
                    raise GenericError(f"{name} is Primary on {busy[0]}: the VM may be running there; "
                                       "not starting it here")
                try:
                    self._changes().promote(name)
                except WindowError as exc:
                    raise GenericError(str(exc)) from None

    def release_after_stop(self) -> None:
        """stop, once the domain is gone: this node Secondary again, and no allowance left (window mode)."""
        from livemig.drbd.state import DrbdStateError
        from livemig.drbd.window import WindowError

        if not self.window_mode or self.mode == "off" or not self.resources:
            return
        changes = self._changes()
        try:
            for name in self.resources:
                changes.demote(name)
        except (WindowError, DrbdStateError) as exc:
            raise GenericError(f"the domain is stopped but {exc}") from None
        self.clear_leftovers("stop")

    def open_window(self, target: str) -> None:
        """migrate_to, after the guard: allow two primaries on the connection to ``target`` (window mode)."""
        from livemig.drbd.guard import select_target_peer
        from livemig.drbd.state import DrbdStateError
        from livemig.drbd.window import Link, WindowError

        if not self.window_mode or self.mode == "off" or not self.resources:
            return
        self._require_drbd9("migrate_to")
        changes = self._changes()
        try:
            status = self._status("migrate_to")
            shown = {r.name: r for r in changes.reader.show9()}
            links = []
            for name in self.resources:
                for entry in status.resource(name):
                    peer, why = select_target_peer(entry.peers, target, self.peer_names)
                    show = shown.get(name)
                    conn = show.connection_to(peer.node_id) if (peer is not None and show is not None) else None
                    if peer is None or peer.node_id is None or conn is None:
                        raise GenericError(f"cannot open the two-primaries window on {name}: "
                                           f"{why or 'the connection to ' + target + ' is not shown by drbdsetup'}")
                    links.append(Link(name, peer.node_id, peer.name or target, conn.protocol or "C"))
            changes.open(target, links)
        except (WindowError, DrbdStateError) as exc:
            raise GenericError(str(exc)) from None
        self.links = links

    def close_window(self, migrated: bool, until: Deadline) -> None:
        """migrate_to, after the job: the window closed, or code 1 saying what is left open.

        ``migrated``: the VM left this node, so this node goes Secondary (once its QEMU has let
        go of the devices) before the allowance closes. Otherwise the VM still runs here and
        the target must be Secondary again first (its libvirt hook demotes it when its QEMU
        ends).
        """
        from livemig.drbd.state import DrbdStateError
        from livemig.drbd.window import WindowError

        if not self.links:
            return
        changes = self._changes()
        try:
            if migrated:
                for name in dict.fromkeys(link.resource for link in self.links):
                    changes.demote(name, until)
            else:
                still = changes.wait_peers_secondary(self.links, until)
                if still:
                    raise GenericError(f"window left open: {still[0].peer} is still Primary for "
                                       f"{still[0].resource} after the failed migration; the next action "
                                       "on either node closes it")
            changes.close(self.links)
        except (WindowError, DrbdStateError) as exc:
            raise GenericError(f"two-primaries window not closed: {exc}") from None
        self.links = []

    def _status(self, action: str) -> Any:
        from livemig.drbd.state import DrbdStateError
        from livemig.drbd.tools import DrbdReader

        try:
            return DrbdReader(self.runner, self.deadline).read_resources(self.resources)
        except DrbdStateError as exc:
            raise GenericError(f"{action}: cannot read DRBD state: {exc}") from None


#: What start's exit reason adds to the failed local check, so that the operator knows where to look.
_START_ADVICE = {
    "present": "the VM needs it up and Primary here (is the DRBD clone running and promoted on this node?)",
    "local-role": "the VM needs it Primary: check the promotable clone (promoted-max=2) and the colocation "
                  "and order constraints with its Promoted role",
    "local-io": "the VM would hang on its I/O: DRBD suspends I/O while its fence-peer handler runs or when "
                "quorum is lost (see drbdsetup status {res} --verbose, or /proc/drbd on 8.x, and the "
                "handler's messages in the system log)",
    "local-disk": "starting the VM on it would use data that is not current (wait for the resync: "
                  "livemig drbd status {res})",
    "local-quorum": "starting the VM on it would write without quorum: restore the connections to the other "
                    "nodes (drbdadm status {res})",
    "drbd-state": "check that DRBD's tools answer on this node (livemig drbd status {res})",
}
