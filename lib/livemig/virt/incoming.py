"""migrate_from's side of a live migration (kept apart so that migrate_from, a process of its
own, does not import the planning of URIs, options and flags): wait, bounded, until the domain
has arrived and runs here."""

from __future__ import annotations

from typing import Any, Dict, Mapping

from livemig.ocf.errors import GenericError
from livemig.virt.connection import Hypervisor, HypervisorError, HypervisorUnreachable
from livemig.virt.states import PAUSED, PAUSED_MIGRATION, PAUSED_POSTCOPY, RUNNING, classify

RUNNING_POSTCOPY = 10  # VIR_DOMAIN_RUNNING_POSTCOPY: running on the target, pages still pulled
MIB = 1024 * 1024


def describe_completed(stats: Mapping[str, Any]) -> str:
    parts = []
    if "time_elapsed" in stats:
        parts.append(f"total time {int(stats['time_elapsed'])} ms")
    if "downtime" in stats:
        parts.append(f"downtime {int(stats['downtime'])} ms")
    if "data_processed" in stats:
        parts.append(f"data {int(stats['data_processed']) / MIB:.0f} MiB")
    if "memory_iteration" in stats:
        parts.append(f"iterations {stats['memory_iteration']}")
    return ", ".join(parts) or "no statistics"


def await_incoming(ctx: Any, name: str, values: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """migrate_from: wait until ``name`` runs here, not paused by the migration.

    Returns the completed job statistics (may be empty). GenericError at the deadline.
    With the local libvirtd unreachable or not answering, the QEMU process of
    ``name`` in /proc is the answer (as for monitor): migrate_to only succeeded
    because libvirt on both sides completed the switch-over, so failing here
    would only make Pacemaker restart a VM that runs.
    """
    hv = Hypervisor(values["hypervisor"], ctx.deadline)
    seen = "not present"
    try:
        try:
            hv.open()
        except HypervisorUnreachable as exc:
            return _arrived_by_proc(ctx, name, values, source, exc)
        while True:
            try:
                dom = hv.lookup(name)
                status = hv.status(dom) if dom is not None else None
            except HypervisorUnreachable as exc:
                return _arrived_by_proc(ctx, name, values, source, exc)
            except HypervisorError as exc:
                raise GenericError(f"migrate_from {source}: {exc}") from None
            if status is not None:
                health = classify(status.state, status.reason)
                migrating = is_incoming(status.state, status.reason)
                if health.failed:
                    raise GenericError(f"{name} arrived from {source} but is {health.detail}")
                if health.running and not migrating:
                    try:
                        return hv.job_stats(dom, completed=True)
                    except HypervisorError:
                        return {}
                seen = "still migrating" if migrating else health.detail
            if ctx.deadline.remaining() < 0.5:
                raise GenericError(f"{name} did not arrive running from {source} before the deadline "
                                   f"(last seen here: {seen})")
            ctx.deadline.sleep(0.25)
    finally:
        hv.close()


def is_incoming(state: int, reason: int) -> bool:
    """The target's domain while the migration still runs: paused by it, or running in post-copy."""
    return (state == PAUSED and reason in (PAUSED_MIGRATION, PAUSED_POSTCOPY)) or \
        (state == RUNNING and reason == RUNNING_POSTCOPY)


def _arrived_by_proc(ctx: Any, name: str, values: Mapping[str, Any], source: str,
                     problem: HypervisorError) -> Dict[str, Any]:
    from livemig.virt.qemu_proc import local_qemu_pids

    pids = local_qemu_pids(name, values["hypervisor"])
    if not pids:
        raise GenericError(f"migrate_from {source}: no QEMU process of {name} here, and {problem}") from None
    ctx.log.warning("migrate_from %s: %s; QEMU process %d of %s runs here (read from /proc): arrived",
                    source, problem, pids[0], name)
    ctx.notice = f"{name} arrived: its QEMU (pid {pids[0]}) runs here (from /proc); {problem}"
    return {}
