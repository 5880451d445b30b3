"""The migration guard: is it safe to live-migrate a VM whose disks are on DRBD?

A live migration is safe only when the target already sees exactly the data
the source writes. :func:`evaluate_guard` reads the state of every DRBD
resource behind the VM and returns a :class:`GuardVerdict`: one
:class:`GuardCheck` per condition, each saying what it saw and, when it failed,
what it needs. Anything not read, not understood, missing or late is a
refusal (``decided=False``); nothing is assumed healthy.

Mode ``dual-primary``, for every resource:

1. the local health rule (:mod:`livemig.drbd.health`): up with every volume
   DRBD's configuration gives this node (8.x: every minor ``drbdadm sh-minor``
   names is in ``/proc/drbd`` and configured), local role Primary, I/O not
   suspended, every local volume UpToDate (DRBD 9: and quorum held);
2. the connection to the target Connected (8.x: ``cs:Connected`` exactly, so a
   running resync (SyncSource, ...) fails);
3. the target's role Primary;
4. every volume on the target UpToDate, replication Established (DRBD 9), and
   out-of-sync 0 (a missing count is unreadable, except on 8.0 to 8.2, which
   print none); the target reports no volume this node does not have;
5. no fence constraint of DRBD's fence-peer handler for the resource in the CIB
   (:func:`livemig.pacemaker.cib.fence_constraint_ids`).

Mode ``auto-promote`` (DRBD 9 only) accepts a Secondary target, but then the
connection must allow two primaries at runtime and the resource must have
auto-promote on, so that the target's QEMU can open the device.

Mode ``migration-window`` (DRBD 9 only, ``drbd_two_primaries=migration``):
as dual-primary, but with ``phase="before"`` the target must be Secondary
(Primary is two primaries outside a migration) and the connection to it must
not allow two primaries at runtime yet (a leftover allowance is a refusal);
with ``phase="during"`` (the watch while libvirt's job runs) the target may be
Secondary or Primary and the allowance is not looked at.

Quorum survival (DRBD 9, on in the window mode, ``check_quorum=True`` in any
mode): for a resource with quorum configured (``drbdsetup show``), this node
must keep quorum without the target (:mod:`livemig.drbd.quorum`); a two-node
resource cannot, unless ``allow_two_node_quorum``. A diskless target (DRBD 9)
is refused unless ``allow_diskless_target``: then this node's disk must be
UpToDate, since the target's I/O is served from it.

The target is the connection named like the Pacemaker node (full or short
name), or the DRBD name ``peer_names`` maps the node to. It is never guessed:
a peer with another name, or whose name is unknown, is not the target. On 8.x
the peer's name is its host section in DRBD's configuration
(``drbdadm -v dump-xml``), since ``/proc/drbd`` does not show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from livemig.drbd.health import local_checks, volume_label, where
from livemig.drbd.modes import ALL_MODES, PHASE_BEFORE, PHASES
from livemig.drbd.modes import MODE_AUTO_PROMOTE as MODE_AUTO_PROMOTE  # re-exported
from livemig.drbd.modes import MODE_DUAL_PRIMARY as MODE_DUAL_PRIMARY
from livemig.drbd.modes import MODE_WINDOW as MODE_WINDOW
from livemig.drbd.modes import MODES as MODES
from livemig.drbd.quorum import survives_without
from livemig.drbd.state import (
    DrbdResourceState,
    DrbdStateError,
    DrbdStatus,
    PeerState,
    PeerVolumeState,
    VolumeState,
)
from livemig.drbd.status9 import ShowResource
from livemig.drbd.target import select_target_peer as select_target_peer
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.ocf.logs import get_logger
from livemig.pacemaker.cib import CibError, fence_constraint_ids, parse_cib, read_cib_xml
from livemig.run import CommandRunner

log = get_logger(__name__)


#: Connection (8.x) or replication (9) states of a resync that will end by itself.
RESYNC_STATES = frozenset({
    "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT",
    "WFBitMapS", "WFBitMapT", "WFSyncUUID", "StartingSyncS", "StartingSyncT",
})
#: How often state is read again while waiting for a transitional state.
POLL_INTERVAL = 1.0
#: While waiting, stop this long before the deadline so one last reading still fits.
WAIT_RESERVE = 2.0

CibReader = Callable[[Deadline], str]


@dataclass(frozen=True)
class GuardCheck:
    """One condition on one resource. ``detail`` says what was seen (and, if failed, what is needed)."""

    resource: str
    check: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class GuardVerdict:
    """All checks. ``decided`` is False when some state could not be read: a refusal."""

    checks: Tuple[GuardCheck, ...]
    decided: bool

    @property
    def allowed(self) -> bool:
        return self.decided and bool(self.checks) and all(c.ok for c in self.checks)

    def reasons(self) -> List[str]:
        """One line per failed check, naming the resource/volume, what it saw, what it needs."""
        lines = [f"{c.resource}: {c.detail}" for c in self.checks if not c.ok]
        if not self.checks:
            lines.append("no DRBD resource to check: nothing shows that the migration is safe")
        return lines

    def as_json(self) -> Dict[str, Any]:
        """The ``livemig guard --json`` document."""
        return {
            "allowed": self.allowed,
            "checks": [
                {"resource": c.resource, "check": c.check, "ok": c.ok, "detail": c.detail}
                for c in self.checks
            ],
        }


@dataclass
class _Findings:
    """Checks as they are collected, with what waiting could fix."""

    checks: List[GuardCheck] = field(default_factory=list)
    transitional: List[GuardCheck] = field(default_factory=list)
    decided: bool = True

    def add(self, resource: str, check: str, ok: bool, detail: str, transitional: bool = False) -> None:
        item = GuardCheck(resource=resource, check=check, ok=ok, detail=detail)
        self.checks.append(item)
        if not ok and transitional:
            self.transitional.append(item)

    def unreadable(self, resource: str, check: str, detail: str) -> None:
        self.add(resource, check, False, detail)
        self.decided = False

    def verdict(self) -> GuardVerdict:
        return GuardVerdict(checks=tuple(self.checks), decided=self.decided)

    def only_transitional_failures(self) -> bool:
        failed = [c for c in self.checks if not c.ok]
        return self.decided and bool(failed) and all(c in self.transitional for c in failed)


def evaluate_guard(
    resources: Sequence[str],
    target: str,
    mode: str = MODE_DUAL_PRIMARY,
    *,
    runner: CommandRunner,
    deadline: Deadline,
    peer_names: Optional[Mapping[str, str]] = None,
    cib_reader: Optional[CibReader] = None,
    wait: float = 0.0,
    reader: Optional[DrbdReader] = None,
    sleep: Optional[Callable[[float], None]] = None,
    check_cib: bool = True,
    phase: str = PHASE_BEFORE,
    allow_diskless_target: bool = False,
    allow_two_node_quorum: bool = False,
    check_quorum: Optional[bool] = None,
) -> GuardVerdict:
    """The verdict on migrating to node ``target`` a VM on DRBD ``resources``.

    ``cib_reader(deadline)`` returns the CIB's XML (default: ``cibadmin
    --query`` through ``runner``). With ``wait`` > 0, while the only failures
    are transitional (target promoting, resync running), state is read again
    until they clear or ``wait`` seconds pass, never past ``deadline``.
    ``check_cib=False`` leaves the CIB out (the re-checks during a migration:
    DRBD's own state shows a lost peer before its fence-peer handler writes
    the constraint). ``phase`` is the window mode's (``before``, ``during``);
    ``check_quorum`` (default: on in the window mode only) adds the quorum
    survival check; ``allow_diskless_target`` and ``allow_two_node_quorum``
    are the operator's permissions. Never raises for DRBD or CIB trouble:
    that is in the verdict.
    """
    names = list(dict.fromkeys(r.strip() for r in resources if r and r.strip()))
    if mode not in ALL_MODES or phase not in PHASES:
        findings = _Findings()
        findings.unreadable(", ".join(names) or "-", "mode",
                            f"unknown guard mode {mode!r}; needs one of {', '.join(ALL_MODES)}"
                            if mode not in ALL_MODES else f"unknown phase {phase!r}; needs one of {', '.join(PHASES)}")
        return findings.verdict()
    if not target:
        findings = _Findings()
        findings.unreadable(", ".join(names) or "-", "peer", "no target node given")
        return findings.verdict()
    if not names:
        return GuardVerdict(checks=(), decided=True)
    reader = reader or DrbdReader(runner, deadline)
    read_cib: Optional[CibReader] = None
    if check_cib:
        read_cib = cib_reader or (lambda d: read_cib_xml(runner, d))
    pause = sleep or deadline.sleep
    started = deadline.elapsed()
    ask = _Ask(mode, phase, allow_diskless_target, allow_two_node_quorum,
               mode == MODE_WINDOW if check_quorum is None else check_quorum)
    while True:
        findings = _evaluate_once(names, target, ask, reader, read_cib, deadline, peer_names or {})
        if wait <= 0 or not findings.only_transitional_failures():
            return findings.verdict()
        waited = deadline.elapsed() - started
        step = min(POLL_INTERVAL, wait - waited, deadline.remaining() - WAIT_RESERVE)
        if step <= 0:
            log.info("gave up waiting after %.1fs: %s", waited,
                     "; ".join(f"{c.resource}: {c.detail}" for c in findings.transitional))
            return findings.verdict()
        log.info("waiting (%.1fs of %.1fs) for: %s", waited, wait,
                 "; ".join(f"{c.resource}: {c.detail}" for c in findings.transitional))
        pause(step)


@dataclass(frozen=True)
class _Ask:
    """How the guard was asked: the mode, its phase, the operator's permissions."""

    mode: str
    phase: str
    diskless_target: bool
    two_node_quorum: bool
    quorum: bool


def _evaluate_once(
    names: List[str],
    target: str,
    ask: _Ask,
    reader: DrbdReader,
    read_cib: Optional[CibReader],
    deadline: Deadline,
    peer_names: Mapping[str, str],
) -> _Findings:
    findings = _Findings()
    status: Optional[DrbdStatus] = None
    try:
        status = reader.read_resources(names, peers=True)
    except DrbdStateError as exc:
        for name in names:
            findings.unreadable(name, "drbd-state", f"could not read DRBD state: {exc}")
    show: Optional[Tuple[ShowResource, ...]] = None
    if status is not None and status.generation == 9 and (ask.mode != MODE_DUAL_PRIMARY or ask.quorum):
        try:
            show = reader.show9()
        except DrbdStateError as exc:
            for name in names:
                findings.unreadable(name, "drbd-settings", f"could not read DRBD runtime settings: {exc}")
    if status is not None:
        for name in names:
            _check_resource(findings, name, status, target, ask, peer_names, show)
    if read_cib is not None:
        _check_cib(findings, names, read_cib, deadline)
    return findings


def _check_resource(
    findings: _Findings,
    name: str,
    status: DrbdStatus,
    target: str,
    ask: _Ask,
    peer_names: Mapping[str, str],
    show: Optional[Tuple[ShowResource, ...]],
) -> None:
    entries = status.resource(name)
    if entries and ask.mode != MODE_DUAL_PRIMARY and status.generation != 9:
        findings.add(name, "mode", False, f"{ask.mode} mode needs DRBD 9; this node runs DRBD "
                                          f"{status.drbd_version or '8.x'}; use dual-primary")
        return
    for check in local_checks(name, status):
        if check.decided:
            findings.add(name, check.check, check.ok, check.detail)
        else:
            findings.unreadable(name, check.check, check.detail)
    for entry in entries:
        if entry.absent is not None or entry.unreadable is not None:
            continue  # the local checks said why; there is no state to check the peer on
        peer, why = select_target_peer(entry.peers, target, peer_names)
        if peer is None:
            findings.add(name, "peer", False, why)
            continue
        _check_peer(findings, name, entry, peer, status.generation, ask)
        settings = [s for s in show or () if s.name == name]
        if ask.mode == MODE_AUTO_PROMOTE:
            _check_auto_promote(findings, name, peer, settings)
        elif ask.mode == MODE_WINDOW and ask.phase == PHASE_BEFORE:
            _check_no_allowance(findings, name, peer, settings)
        if ask.quorum and status.generation == 9:
            _check_quorum(findings, name, entry, peer, settings, ask)


def _check_peer(findings: _Findings, name: str, entry: DrbdResourceState, peer: PeerState,
                generation: Optional[int], ask: _Ask) -> None:
    at = where(entry, generation)
    who = peer.name or "the peer"
    resyncing = peer.connection in RESYNC_STATES or any(pv.replication in RESYNC_STATES for pv in peer.volumes)
    connected = peer.connection == "Connected"
    findings.add(name, "connection", connected,
                 f"connection to {who} Connected{at}" if connected
                 else f"connection to {who} is {peer.connection or 'unknown'}{at}; needs Connected",
                 transitional=resyncing)
    if ask.mode == MODE_WINDOW and ask.phase == PHASE_BEFORE:
        role_ok = peer.role == "Secondary"
        findings.add(name, "peer-role", role_ok, f"{who} role Secondary" if role_ok
                     else f"{who} is already Primary: two primaries outside a migration; needs {who} Secondary"
                     if peer.role == "Primary" else f"{who} role is {peer.role or 'unknown'}; needs Secondary")
    else:
        wanted_roles = ("Primary",) if ask.mode == MODE_DUAL_PRIMARY else ("Primary", "Secondary")
        role_ok = peer.role in wanted_roles
        findings.add(name, "peer-role", role_ok,
                     f"{who} role {peer.role}{at}" if role_ok
                     else f"{who} role is {peer.role or 'unknown'}{at}; needs {' or '.join(wanted_roles)}",
                     transitional=connected and peer.role == "Secondary" and ask.mode == MODE_DUAL_PRIMARY)

    def same_volume(pv: PeerVolumeState, vol: VolumeState) -> bool:
        return ((pv.volume == vol.volume and vol.volume is not None)
                or (generation != 9 and pv.minor == vol.minor and vol.minor is not None))

    for pv in peer.volumes:
        if not any(same_volume(pv, vol) for vol in entry.volumes):
            label = volume_label(pv.volume, pv.minor)
            findings.add(name, "peer-disk", False,
                         f"{label}: {who} reports this volume, which this node does not have; needs the same "
                         "volumes on both nodes")
    for vol in entry.volumes:
        label = volume_label(vol.volume, vol.minor)
        match = [pv for pv in peer.volumes if same_volume(pv, vol)]
        if len(match) != 1:
            findings.add(name, "peer-disk", False, f"{label}: {who} reports no state for this volume; "
                                                   "needs UpToDate")
            continue
        pv = match[0]
        if pv.disk == "Diskless" or pv.peer_client is True:
            findings.add(name, "peer-disk", *_diskless_target(label, who, vol, pv, generation, ask))
        else:
            ok = pv.disk == "UpToDate"
            findings.add(name, "peer-disk", ok, f"{label}: {who} disk UpToDate" if ok
                         else f"{label}: {who} disk is {pv.disk or 'unknown'}; needs UpToDate", transitional=resyncing)
        if generation == 9:
            ok = pv.replication == "Established"
            findings.add(name, "replication", ok, f"{label}: replication to {who} Established" if ok
                         else f"{label}: replication to {who} is {pv.replication or 'unknown'}; needs Established",
                         transitional=resyncing)
        if pv.out_of_sync_unreadable:
            findings.add(name, "out-of-sync", False, f"{label}: out-of-sync with {who} is unreadable; needs 0")
        elif pv.out_of_sync_kib is None:
            findings.add(name, "out-of-sync", True, f"{label}: out-of-sync not reported")
        else:
            ok = pv.out_of_sync_kib == 0
            findings.add(name, "out-of-sync", ok, f"{label}: nothing out of sync with {who}" if ok
                         else f"{label}: {pv.out_of_sync_kib} KiB out of sync with {who}; needs 0",
                         transitional=resyncing)


def _diskless_target(label: str, who: str, vol: VolumeState, pv: PeerVolumeState, generation: Optional[int],
                     ask: _Ask) -> Tuple[bool, str]:
    """The peer-disk check of a diskless target: allowed only on DRBD 9, by the operator, over an UpToDate disk here."""
    seen = f"{label}: {who} is diskless (disk {pv.disk or 'unknown'}{', a DRBD client' if pv.peer_client else ''})"
    if not ask.diskless_target or generation != 9:
        return False, (f"{seen}; needs UpToDate (a diskless target only on DRBD 9 and where the operator allows "
                       "it: allow_diskless_target)")
    if pv.disk != "Diskless":
        return False, f"{seen}: a client whose disk is not Diskless; needs Diskless or UpToDate"
    if vol.disk != "UpToDate":
        return False, f"{seen}, and this node's disk is {vol.disk or 'unknown'}; needs this node UpToDate to serve it"
    return True, f"{seen}: its I/O is served by this node's UpToDate disk (diskless target allowed)"


def _check_no_allowance(findings: _Findings, name: str, peer: PeerState, settings: List[ShowResource]) -> None:
    """Window mode, before: the connection to the target must not allow two primaries yet."""
    conn = settings[0].connection_to(peer.node_id) if len(settings) == 1 else None
    allowed = conn.allow_two_primaries if conn is not None else None
    who = peer.name or "the peer"
    if allowed is False:
        findings.add(name, "allow-two-primaries", True, f"connection to {who} does not allow two primaries")
    elif allowed is True:
        findings.add(name, "allow-two-primaries", False,
                     f"connection to {who} allows two primaries at runtime: a leftover allowance from an earlier "
                     f"migration: clear it with drbdsetup net-options {name} {peer.node_id} "
                     "--allow-two-primaries=no; needs no")
    else:
        findings.unreadable(name, "allow-two-primaries", f"connection to {who}: allow-two-primaries not reported "
                                                         "by drbdsetup show (unknown); needs no")


def _check_quorum(findings: _Findings, name: str, entry: DrbdResourceState, peer: PeerState,
                  settings: List[ShowResource], ask: _Ask) -> None:
    if len(settings) != 1:
        findings.unreadable(name, "quorum-survival", "runtime settings not reported by drbdsetup show; needs the "
                                                     "resource's quorum options")
        return
    result = survives_without(entry, peer, settings[0])
    if not result.decided:
        findings.unreadable(name, "quorum-survival", result.detail)
    elif not result.ok and result.two_node and ask.two_node_quorum:
        findings.add(name, "quorum-survival", True, f"{result.detail.split(': the resource')[0]}: a two-node "
                                                    "resource, allowed by allow_two_node_quorum")
    else:
        findings.add(name, "quorum-survival", result.ok, result.detail)


def _check_auto_promote(findings: _Findings, name: str, peer: PeerState, settings: List[ShowResource]) -> None:
    if len(settings) != 1:
        findings.add(name, "allow-two-primaries", False,
                     "runtime settings not reported by drbdsetup show; needs allow-two-primaries yes")
        return
    conn = settings[0].connection_to(peer.node_id)
    allowed = conn.allow_two_primaries if conn is not None else None
    who = peer.name or "the peer"
    findings.add(name, "allow-two-primaries", allowed is True,
                 f"connection to {who} allows two primaries" if allowed
                 else f"connection to {who}: allow-two-primaries is "
                      f"{'no' if allowed is False else 'unknown'}; needs yes")
    auto = settings[0].auto_promote
    findings.add(name, "auto-promote", auto is True, "auto-promote on" if auto
                 else f"auto-promote is {'off' if auto is False else 'unknown'}; needs on")


def _check_cib(findings: _Findings, names: List[str], read_cib: CibReader, deadline: Deadline) -> None:
    try:
        cib = parse_cib(read_cib(deadline))
    except CibError as exc:
        for name in names:
            findings.unreadable(name, "fence-constraint", f"could not read the CIB: {exc}")
        return
    for name in names:
        ids = fence_constraint_ids(cib, name)
        resyncing = any(c.resource == name for c in findings.transitional)
        if ids:
            findings.add(name, "fence-constraint", False,
                         f"the CIB holds {ids[0]} (DRBD's fence-peer handler marked the peer's data as not to "
                         f"be trusted); needs it removed, which the after-resync handler does",
                         transitional=resyncing)
        else:
            findings.add(name, "fence-constraint", True, "no drbd-fence-by-handler constraint in the CIB")
