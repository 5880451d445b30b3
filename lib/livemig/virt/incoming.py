"""migrate_from's side of a live migration (kept apart so that migrate_from, a process of its
own, does not import the planning of URIs, options and flags): wait, bounded, until the domain
has arrived and runs here."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from livemig.virt.connection import Hypervisor, HypervisorError, HypervisorUnreachable
from livemig.virt.errors import OperationFailed
from livemig.virt.states import PAUSED, PAUSED_MIGRATION, PAUSED_POSTCOPY, RUNNING, RUNNING_POSTCOPY, classify

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


def await_incoming(ctx: Any, name: Optional[str], values: Mapping[str, Any],
                   source: str) -> Tuple[str, Dict[str, Any]]:
    """migrate_from: wait until this resource's domain runs here, not paused by the migration.

    ``name`` is the domain the config file (or the state file) names, None when
    neither can be read on this node: then the domain is the one that arrives
    tagged for ``ctx.owner`` (:mod:`livemig.virt.identity`), as it is when
    ``name`` never shows up but a tagged domain does (a config that names
    another domain here). Returns the arrived domain's name and its completed
    job statistics (may be empty). OperationFailed at the deadline, except for a
    domain that runs here in post-copy: it has arrived, and its remaining memory
    follows. With the local libvirtd unreachable or not answering, the QEMU
    process in /proc is the answer (as for monitor): migrate_to only succeeded
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
                found, dom = _incoming_domain(ctx, hv, name)
                status = hv.status(dom) if dom is not None else None
            except HypervisorUnreachable as exc:
                return _arrived_by_proc(ctx, name, values, source, exc)
            except HypervisorError as exc:
                raise OperationFailed(f"migrate_from {source}: {exc}") from None
            if status is not None and found is not None:
                health = classify(status.state, status.reason)
                migrating = is_incoming(status.state, status.reason)
                if health.failed:
                    raise OperationFailed(f"{found} arrived from {source} but is {health.detail}")
                if health.running and not migrating:
                    try:
                        return found, hv.job_stats(dom, completed=True)
                    except HypervisorError:
                        return found, {}
                seen = "still migrating" if migrating else health.detail
                if ctx.deadline.remaining() < 0.5 and status.state == RUNNING and status.reason == RUNNING_POSTCOPY:
                    ctx.log.warning("%s runs here in post-copy: its remaining memory is still coming from %s",
                                    found, source)
                    ctx.notice = f"{found} runs here; its post-copy migration from {source} is still completing"
                    return found, {}
            if ctx.deadline.remaining() < 0.5:
                what = name or f"a domain of {ctx.owner or 'this resource'}"
                raise OperationFailed(f"{what} did not arrive running from {source} before the deadline "
                                   f"(last seen here: {seen})")
            ctx.deadline.sleep(0.25)
    finally:
        hv.close()


def _incoming_domain(ctx: Any, hv: Hypervisor, name: Optional[str]) -> Tuple[Optional[str], Any]:
    """The domain that is arriving: ``name``'s, else the one tagged for this resource (if exactly one)."""
    dom = hv.lookup(name) if name else None
    if dom is not None or not ctx.owner:
        return name, dom
    from livemig.virt.identity import domains_owned_by

    tagged = domains_owned_by(hv, ctx.owner)
    if len(tagged) == 1:
        return str(tagged[0].name()), tagged[0]
    if len(tagged) > 1:
        raise OperationFailed(f"more than one domain tagged for {ctx.owner} is here: "
                           f"{', '.join(str(d.name()) for d in tagged)}")
    return name, None


def is_incoming(state: int, reason: int) -> bool:
    """The target's domain while the migration still runs: paused by it, or running in post-copy."""
    return (state == PAUSED and reason in (PAUSED_MIGRATION, PAUSED_POSTCOPY)) or \
        (state == RUNNING and reason == RUNNING_POSTCOPY)


def _arrived_by_proc(ctx: Any, name: Optional[str], values: Mapping[str, Any], source: str,
                     problem: HypervisorError) -> Tuple[str, Dict[str, Any]]:
    from livemig.virt.identity import running_names_from_status
    from livemig.virt.options import is_local_qemu
    from livemig.virt.qemu_proc import local_qemu_pids

    names = [name] if name else []
    if ctx.owner and is_local_qemu(values["hypervisor"]):
        names = list(dict.fromkeys(names + running_names_from_status(ctx.owner)))
    for candidate in names:
        pids = local_qemu_pids(candidate, values["hypervisor"])
        if pids:
            ctx.log.warning("migrate_from %s: %s; QEMU process %d of %s runs here (read from /proc): arrived",
                            source, problem, pids[0], candidate)
            ctx.notice = f"{candidate} arrived: its QEMU (pid {pids[0]}) runs here (from /proc); {problem}"
            return candidate, {}
    raise OperationFailed(f"migrate_from {source}: no QEMU process of {name or 'this resource'} here, "
                       f"and {problem}") from None
