"""stop: no domain of this resource left running on this node, within the deadline.

Graceful shutdown (repeated, a guest still booting misses one ACPI event), then destroy, with a
reserve kept for destroy; ``snapshot=`` saves the state instead; a domain in post-copy is waited
for, never destroyed; libvirtd not answering: its QEMU processes terminated from /proc, success
only once none is left. save_config_on_stop writes the running definition back to the config file.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, Optional

from livemig.agents.virtualdomain import images
from livemig.agents.virtualdomain.context import FS_BOUND, AgentContext
from livemig.agents.virtualdomain.start import snapshot_path
from livemig.ocf.deadline import Deadline
from livemig.ocf.errors import GenericError
from livemig.virt import qemu_proc
from livemig.virt.connection import Hypervisor, HypervisorError, HypervisorUnreachable, JobTimeout
from livemig.virt.domains import POLL_INTERVAL, health_of, wait_until
from livemig.virt.options import is_local_qemu, shutdown_flags
from livemig.virt.states import classify, describe_state, in_postcopy

SHUTDOWN_REPEAT = 5.0  # seconds between repeated shutdown requests


def stop_domain(ctx: AgentContext, name: str, values: Mapping[str, Any]) -> None:
    uri = values["hypervisor"]
    # events: the guest's power-off is seen when libvirt reports it, not at the next poll.
    hv = Hypervisor(uri, ctx.deadline, events=True)
    try:
        try:
            hv.open(cap=ctx.deadline.remaining() * 0.5)
        except HypervisorUnreachable as exc:
            _stop_without_libvirt(ctx, name, uri, str(exc))
            return
        try:
            _stop_with_libvirt(ctx, hv, name, values)
        except HypervisorUnreachable as exc:
            _stop_without_libvirt(ctx, name, uri, str(exc))
        except HypervisorError as exc:
            raise GenericError(f"failed to stop domain {name}: {exc}") from None
    finally:
        hv.close()


def _stop_with_libvirt(ctx: AgentContext, hv: Hypervisor, name: str, values: Mapping[str, Any]) -> None:
    dom = hv.lookup(name)
    status = hv.status(dom) if dom is not None else None
    if status is None:
        ctx.log.info("domain %s is not defined here: already stopped", name)
        return
    if in_postcopy(status.state, status.reason):
        status = _await_postcopy_end(ctx, hv, name)
        if status is None:
            ctx.log.info("domain %s left this node as its post-copy migration ended", name)
            return
    health = classify(status.state, status.reason)
    if health.stopped:
        ctx.log.info("domain %s is already shut off", name)
        return
    if health.failed:
        ctx.log.warning("domain %s is %s: destroying it", name, health.detail)
        _destroy(ctx, hv, name, dom)
        return

    if values.get("save_config_on_stop"):
        _save_config(ctx, hv, dom, name, values)

    state_file = snapshot_path(values, name)
    if state_file and _save(ctx, hv, dom, name, state_file):
        return

    if values.get("force_stop"):
        _destroy(ctx, hv, name, dom)
        return

    # Keep time for destroy after the graceful attempt: a quarter of what is left, 3 to 30 s.
    left = ctx.deadline.remaining()
    reserve = _destroy_reserve(left)
    graceful = Deadline(max(0.0, left - reserve))
    flags = shutdown_flags(values.get("shutdown_mode") or "")
    try:
        hv.shutdown(dom, flags)
        ctx.log.info("asked %s to shut down; waiting up to %.0fs", name, graceful.remaining())
        # A guest still booting misses a single ACPI event: ask again every few seconds.
        while not graceful.expired():
            step = graceful.sub(1.0) if graceful.remaining() < SHUTDOWN_REPEAT else Deadline(SHUTDOWN_REPEAT)
            if wait_until(hv, name, False, step, ctx.deadline):
                ctx.log.info("domain %s shut down gracefully", name)
                return
            if graceful.remaining() > POLL_INTERVAL:
                hv.shutdown(dom, flags)
        ctx.log.warning("domain %s did not shut down within %.0fs: destroying it", name, graceful.total)
    except HypervisorUnreachable:
        raise
    except HypervisorError as exc:
        ctx.log.warning("graceful shutdown of %s failed (%s): destroying it", name, exc)
    _destroy(ctx, hv, name, hv.lookup(name))


def _destroy_reserve(left: float) -> float:
    """What a stop keeps for destroy after its gentler attempt: a quarter of what is left, 3 to 30 s."""
    return min(30.0, max(3.0, left * 0.25))


def _save(ctx: AgentContext, hv: Hypervisor, dom: Any, name: str, state_file: str) -> bool:
    """``snapshot=``: save the domain's state; True once it is saved and gone.

    The save gets the deadline but the destroy reserve: a large guest takes as
    long as it takes. A save still running then is aborted (the guest runs on)
    and the stop goes on as a shutdown; if the abort cannot be confirmed, the
    stop fails rather than kill QEMU in the middle of writing its state.
    """
    seconds = max(0.0, ctx.deadline.remaining() - _destroy_reserve(ctx.deadline.remaining()))
    try:
        hv.save(dom, state_file, seconds)
    except JobTimeout as exc:
        ctx.log.warning("saving %s to %s did not finish within %.0fs (%s): aborting the save", name,
                        state_file, seconds, exc)
        try:
            hv.abort_job(dom, cap=min(10.0, ctx.deadline.remaining()))
        except HypervisorError as abort_exc:
            raise GenericError(f"saving {name} to {state_file} did not finish within {seconds:.0f}s and could not "
                               f"be aborted ({abort_exc}): not killing QEMU mid-save; raise the stop timeout") from None
        if not _wait_job_end(ctx, hv, dom):
            raise GenericError(f"saving {name} to {state_file} did not finish within {seconds:.0f}s and is still "
                               "running after its abort: not killing QEMU mid-save; raise the stop timeout") from None
        ctx.log.warning("save of %s aborted; shutting it down instead", name)
        return False
    except HypervisorUnreachable:
        raise
    except HypervisorError as exc:
        ctx.log.warning("could not save %s to %s (%s); shutting it down instead", name, state_file, exc)
        return False
    ctx.log.info("saved the state of %s to %s", name, state_file)
    return wait_until(hv, name, False, ctx.deadline, ctx.deadline)


def _wait_job_end(ctx: AgentContext, hv: Hypervisor, dom: Any) -> bool:
    """After an abort: True once the domain has no job any more (bounded by the deadline)."""
    while True:
        try:
            if hv.job_type(dom, cap=min(5.0, ctx.deadline.remaining())) == 0:
                return True
        except HypervisorError as exc:
            if hv.is_no_domain(exc):
                return True
            if isinstance(exc, HypervisorUnreachable):
                raise
        if ctx.deadline.remaining() < POLL_INTERVAL * 2:
            return False
        ctx.deadline.sleep(POLL_INTERVAL)


def _await_postcopy_end(ctx: AgentContext, hv: Hypervisor, name: str) -> Any:
    """A post-copy migration holds half of the guest's memory here: wait for it to end, never destroy.

    Returns the domain's status once it has left post-copy (None: the domain
    left this node). GenericError when it is still in post-copy at the deadline.
    """
    hv.watch()
    while True:
        hv.mark()
        dom = hv.lookup(name)
        status = hv.status(dom) if dom is not None else None
        if status is None or not in_postcopy(status.state, status.reason):
            return status
        if ctx.deadline.remaining() < POLL_INTERVAL * 2:
            raise GenericError(
                f"domain {name} is {describe_state(status.state, status.reason)} in a post-copy migration: its "
                "memory is split between this node and its peer, and destroying it would lose the guest; wait "
                "for the migration (virsh domjobinfo), or recover it (virsh migrate --postcopy --postcopy-resume)")
        hv.wait_for_change(ctx.deadline.bound(POLL_INTERVAL))


def _destroy(ctx: AgentContext, hv: Hypervisor, name: str, dom: Any) -> None:
    if dom is None:
        return
    try:
        hv.destroy(dom)
    except HypervisorUnreachable:
        raise
    except HypervisorError as exc:
        if not hv.is_no_domain(exc):
            health = health_of(hv, name)
            if health is not None and not health.stopped:
                raise GenericError(f"could not destroy domain {name}: {exc}") from None
    if not wait_until(hv, name, False, ctx.deadline, ctx.deadline):
        raise GenericError(f"domain {name} is still running after destroy")
    ctx.log.info("domain %s destroyed", name)


def _save_config(ctx: AgentContext, hv: Hypervisor, dom: Any, name: str, values: Mapping[str, Any]) -> None:
    from livemig.bounded import CallTimeout, bounded_call
    from livemig.domain_xml import parse_domain_xml

    xml = hv.xml_desc(dom, inactive=True)
    parse_domain_xml(xml, origin=f"definition of running domain {name}")
    try:
        bounded_call(f"write {values['config']}", ctx.deadline.bound(FS_BOUND * 2), _write_config,
                     values["config"], xml)
    except (OSError, CallTimeout) as exc:
        ctx.log.warning("could not save the configuration of %s to %s: %s", name, values["config"], exc)
        return
    ctx.log.info("saved the configuration of %s to %s", name, values["config"])
    images.sync_config(values, ctx.runner, ctx.deadline, ctx.log)  # sync_config_on_stop: csync2 -x


def save_config(ctx: AgentContext, name: str, values: Mapping[str, Any]) -> None:
    """save_config_on_stop after an incoming migration: the running definition into ``config``."""
    hv = Hypervisor(values["hypervisor"], ctx.deadline)
    try:
        dom = hv.open().lookup(name)
        if dom is not None:
            _save_config(ctx, hv, dom, name, values)
    except HypervisorError as exc:
        ctx.log.warning("could not save the configuration of %s: %s", name, exc)
    finally:
        hv.close()


def _write_config(path: str, xml: str) -> None:
    """Replace the config file atomically, keeping its permissions."""
    from livemig.files import replace_file

    mode = 0o644
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    replace_file(path, xml, mode)


def _stop_without_libvirt(ctx: AgentContext, name: str, uri: Optional[str], problem: str) -> None:
    """libvirtd does not answer: stop the domain's QEMU process ourselves, or fail.

    Success is only reported once no QEMU process of the domain remains.
    Killing QEMU is what destroy does; it spares the node from being fenced
    for a stop failure caused by a stuck libvirtd.
    """
    if not is_local_qemu(uri):
        raise GenericError(f"cannot stop {name}: {problem}")
    pids = qemu_proc.find_qemu_pids(name)
    if not pids:
        ctx.log.warning("%s; no QEMU process of %s runs here: it is stopped", problem, name)
        ctx.notice = f"{problem}; no QEMU process of {name} in /proc: stopped"
        return
    ctx.log.warning("%s; terminating QEMU process(es) %s of domain %s directly",
                    problem, ", ".join(map(str, pids)), name)
    import signal

    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except OSError as exc:
                raise GenericError(f"cannot stop {name}: {problem}; kill {pid}: {exc.strerror}") from None
        until = ctx.deadline.sub(1.0)
        end = time.monotonic() + min(grace, until.remaining())
        while time.monotonic() < end and qemu_proc.find_qemu_pids(name):
            ctx.deadline.sleep(0.2)
        pids = qemu_proc.find_qemu_pids(name)
        if not pids:
            ctx.log.info("QEMU process of %s is gone", name)
            ctx.notice = f"{problem}; stopped {name} by terminating its QEMU process"
            return
    raise GenericError(f"cannot stop {name}: {problem}; its QEMU process {pids[0]} survived SIGKILL")
