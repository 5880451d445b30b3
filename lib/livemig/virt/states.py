"""Mapping libvirt domain states and reasons to what Pacemaker needs to know.

The rule for probes: anything that still occupies the node (running,
blocked, paused for any reason, shutting down, suspended, crashed with its
process around) is never reported as stopped. Only "shut off" and "absent"
are stopped.
"""

from __future__ import annotations

from typing import NamedTuple

# Numeric values of libvirt's virDomainState / virDomainPausedReason, stable ABI.
NOSTATE, RUNNING, BLOCKED, PAUSED, SHUTDOWN, SHUTOFF, CRASHED, PMSUSPENDED = range(8)

_STATE_NAMES = {
    NOSTATE: "no state", RUNNING: "running", BLOCKED: "blocked", PAUSED: "paused",
    SHUTDOWN: "in shutdown", SHUTOFF: "shut off", CRASHED: "crashed", PMSUSPENDED: "pm-suspended",
}

# virDomainPausedReason values that mean the guest is unhealthy.
PAUSED_IOERROR = 5
PAUSED_WATCHDOG = 6
PAUSED_CRASHED = 10
PAUSED_POSTCOPY_FAILED = 13
PAUSED_API_ERROR = 14  # libvirt >= 10.x
_PAUSED_FAILED = {
    PAUSED_IOERROR: "paused on an I/O error (check the storage behind its disks)",
    PAUSED_WATCHDOG: "paused by its watchdog",
    PAUSED_CRASHED: "paused after a guest crash",
    PAUSED_POSTCOPY_FAILED: "paused after a failed post-copy migration",
    PAUSED_API_ERROR: "paused after a libvirt API error",
}
PAUSED_MIGRATION = 2
SHUTOFF_CRASHED = 3  # virDomainShutoffReason: QEMU died
PAUSED_POSTCOPY = 12
RUNNING_POSTCOPY = 10  # virDomainRunningReason: running on the target, pages still pulled from the source
RUNNING_POSTCOPY_FAILED = 11  # virDomainRunningReason (libvirt >= 8.5): post-copy failed, vCPUs still running
_PAUSED_NAMES = {
    0: "unknown", 1: "user", 2: "migration", 3: "save", 4: "dump", 7: "from snapshot",
    8: "shutting down", 9: "snapshot", 11: "starting up", 12: "post-copy",
}


class DomainHealth(NamedTuple):
    """What the agent reports: running (0), failed (1, with ``detail``) or stopped (7)."""

    running: bool
    failed: bool
    detail: str

    @property
    def stopped(self) -> bool:
        return not self.running and not self.failed


def describe_state(state: int, reason: int) -> str:
    name = _STATE_NAMES.get(state, f"state {state}")
    if state == PAUSED:
        why = _PAUSED_FAILED.get(reason) or f"paused ({_PAUSED_NAMES.get(reason, reason)})"
        return why
    return name


def in_postcopy(state: int, reason: int) -> bool:
    """A domain whose memory is split between two nodes by a post-copy migration.

    The source's domain is paused (post-copy) while the target's runs and pulls
    the pages it lacks; once post-copy has failed both keep their half, waiting
    for a recovery (``virsh migrate --postcopy --postcopy-resume``). Destroying
    either side loses the guest.
    """
    if state == PAUSED:
        return reason in (PAUSED_POSTCOPY, PAUSED_POSTCOPY_FAILED)
    return state == RUNNING and reason in (RUNNING_POSTCOPY, RUNNING_POSTCOPY_FAILED)


def classify(state: int, reason: int) -> DomainHealth:
    if state == SHUTOFF:
        return DomainHealth(running=False, failed=False, detail="shut off")
    if state == CRASHED:
        return DomainHealth(running=False, failed=True, detail="crashed")
    if state == PAUSED and reason in _PAUSED_FAILED:
        return DomainHealth(running=False, failed=True, detail=_PAUSED_FAILED[reason])
    # running, blocked, paused by the user or a migration, shutting down, pm-suspended,
    # no state (a hypervisor that does not say): all still occupy this node.
    return DomainHealth(running=True, failed=False, detail=describe_state(state, reason))
