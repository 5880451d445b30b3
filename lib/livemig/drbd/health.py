"""The one local health rule: what is wrong with a DRBD resource on this node.

A VM may use a resource here only when it is up with every volume DRBD's
configuration gives this node, Primary, with I/O not suspended, every volume
``UpToDate`` and (DRBD 9) quorum held. :func:`local_checks` says so for one
resource of a :class:`~livemig.drbd.state.DrbdStatus` read with
:meth:`~livemig.drbd.tools.DrbdReader.read_resources`; the migration guard
reports every check, the agent's start, deep monitor and migrate_from act on
the first failed one (:func:`first_problem`).

Each check carries two wordings of the same fact: ``detail`` as the guard
prints it (``local role is Secondary; needs Primary``) and ``statement`` for an
exit reason (``DRBD resource r0 is Secondary``), to which the caller adds where
(``on this node``, ``under the running domain``) and its own advice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from livemig.drbd.state import DrbdResourceState, DrbdStatus


@dataclass(frozen=True)
class LocalCheck:
    """One local condition on one resource."""

    resource: str
    check: str
    ok: bool
    #: What was seen (and, if failed, what is needed), as the guard reports it.
    detail: str
    #: The same as a sentence for an exit reason, without where ("on this node").
    statement: str
    #: False when the state could not be read (the verdict is undecided).
    decided: bool = True

    def sentence(self, where: str) -> str:
        """``statement`` placed (``where``: "on this node", "under the running domain")."""
        return f"{self.statement} {where}" if self.decided and where else self.statement


def where(entry: DrbdResourceState, generation: Optional[int]) -> str:
    """" (minor N)" for 8.x, where each minor is its own entry."""
    if generation == 9 or not entry.volumes:
        return ""
    return f" (minor {entry.volumes[0].minor})"


def volume_label(volume: Optional[int], minor: Optional[int]) -> str:
    if volume is not None:
        return f"volume {volume}"
    return f"minor {minor}" if minor is not None else "volume ?"


def local_checks(name: str, status: DrbdStatus) -> List[LocalCheck]:
    """Every local check of resource ``name`` (passed and failed, in a fixed order)."""
    entries = status.resource(name)
    res = f"DRBD resource {name}"
    if not entries:
        return [LocalCheck(name, "present", False, "resource is not up on this node; needs: up and Primary",
                           f"{res} is not up")]
    checks: List[LocalCheck] = []
    for entry in entries:
        at = where(entry, status.generation)
        if entry.unreadable is not None:
            checks.append(LocalCheck(name, "drbd-state", False, f"could not read DRBD state: {entry.unreadable}",
                                     f"{res}: could not read its DRBD state: {entry.unreadable}", decided=False))
            continue
        if entry.absent is not None:
            checks.append(LocalCheck(name, "present", False,
                                     f"{entry.absent}; needs every volume of the resource up (drbdadm up {name})",
                                     f"{res}: {entry.absent}"))
            continue
        checks.extend(_entry_checks(name, entry, at, status.generation))
    return checks


def _entry_checks(name: str, entry: DrbdResourceState, at: str, generation: Optional[int]) -> List[LocalCheck]:
    res = f"DRBD resource {name}"
    checks = []
    role = entry.role
    if role == "Primary":
        checks.append(LocalCheck(name, "local-role", True, f"local role Primary{at}", f"{res}{at} is Primary"))
    else:
        checks.append(LocalCheck(name, "local-role", False, f"local role is {role or 'unknown'}{at}; needs Primary",
                                 f"{res}{at} is {role or 'in an unknown role'}"))
    if entry.suspended is False:
        checks.append(LocalCheck(name, "local-io", True, f"local I/O not suspended{at}",
                                 f"{res}{at}: I/O not suspended"))
    else:
        seen = "suspended" if entry.suspended else "of unknown state (suspended or not)"
        checks.append(LocalCheck(name, "local-io", False, f"local I/O is {seen}{at}; needs running I/O",
                                 f"{res}{at}: I/O is {seen}"))
    if not entry.volumes:
        checks.append(LocalCheck(name, "local-disk", False, "no local volume reported; needs every volume UpToDate",
                                 f"{res}: no local volume reported"))
    for vol in entry.volumes:
        label = volume_label(vol.volume, vol.minor)
        if vol.disk == "UpToDate":
            checks.append(LocalCheck(name, "local-disk", True, f"{label}: local disk UpToDate",
                                     f"{res} {label}: local disk UpToDate"))
        else:
            checks.append(LocalCheck(name, "local-disk", False,
                                     f"{label}: local disk is {vol.disk or 'unknown'}; needs UpToDate",
                                     f"{res} {label}: local disk is {vol.disk or 'unknown'}, not UpToDate"))
        if generation == 9:
            if vol.quorum is True:
                checks.append(LocalCheck(name, "local-quorum", True, f"{label}: quorum held",
                                         f"{res} {label}: quorum held"))
            else:
                seen = "lost" if vol.quorum is False else "unknown"
                checks.append(LocalCheck(name, "local-quorum", False, f"{label}: quorum is {seen}; needs quorum",
                                         f"{res} {label}: quorum is {seen}"))
    return checks


def first_problem(names: Sequence[str], status: DrbdStatus) -> Optional[LocalCheck]:
    """The first failed local check over ``names`` (in order), ``None`` if all pass."""
    for name in names:
        for check in local_checks(name, status):
            if not check.ok:
                return check
    return None
