"""Starting, stopping and monitoring one domain, each bounded by the operation deadline.

These functions raise :mod:`livemig.ocf.errors` exceptions with exit reasons
an operator can act on; they never wait past ``ctx.deadline``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Protocol

from livemig.ocf.codes import OCFCode
from livemig.ocf.deadline import Deadline
from livemig.ocf.environment import OCFEnvironment
from livemig.ocf.errors import GenericError
from livemig.ocf.statefile import StateFile
from livemig.run import CommandError, CommandRunner
from livemig.virt.connection import Hypervisor, HypervisorError, HypervisorUnreachable
from livemig.virt.options import is_local_qemu, shutdown_flags
from livemig.virt.qemu_proc import find_qemu_pids
from livemig.virt.states import SHUTOFF_CRASHED, DomainHealth, classify

if TYPE_CHECKING:
    import logging

POLL_INTERVAL = 0.5
SHUTDOWN_REPEAT = 5.0  # seconds between repeated shutdown requests


class AgentContext(Protocol):
    env: OCFEnvironment
    log: logging.Logger
    deadline: Deadline
    state: StateFile
    runner: CommandRunner
    notice: Optional[str]


def _health(hv: Hypervisor, name: str) -> Optional[DomainHealth]:
    """The domain's health, or None when it does not exist."""
    dom = hv.lookup(name)
    if dom is None:
        return None
    status = hv.status(dom)
    if status is None:
        return None
    return classify(status.state, status.reason)


def _wait_until(ctx: AgentContext, hv: Hypervisor, name: str, want_running: bool,
                until: Deadline) -> bool:
    """Wait until the domain runs (or is gone/off); False when ``until`` passes first.

    Event-driven where the connection delivers lifecycle events (see
    :meth:`Hypervisor.watch`): the state is read again as soon as libvirt reports
    a change, and every POLL_INTERVAL anyway. Otherwise a plain poll.
    """
    hv.watch()
    while True:
        hv.mark()  # before reading: a change that lands after the read wakes the wait below
        health = _health(hv, name)
        done = (health is not None and health.running) if want_running else (health is None or health.stopped)
        if done:
            return True
        # Stop while a last libvirt call still has time to answer within the operation deadline.
        if until.remaining() < POLL_INTERVAL or ctx.deadline.remaining() < POLL_INTERVAL:
            return False
        hv.wait_for_change(until.bound(POLL_INTERVAL))


# -- start -------------------------------------------------------------------------------


def start_domain(ctx: AgentContext, name: str, values: Mapping[str, Any]) -> None:
    from livemig.virt.domain_xml import load_domain_config

    uri = values["hypervisor"]
    hv = Hypervisor(uri, ctx.deadline)
    try:
        try:
            hv.open()
        except HypervisorUnreachable as exc:
            raise GenericError(f"cannot start {name}: {exc}") from None
        try:
            dom = hv.lookup(name)
            if dom is not None:
                status = hv.status(dom)
                health = classify(status.state, status.reason) if status else None
                if health is not None and health.running:
                    ctx.log.info("domain %s is already running (%s)", name, health.detail)
                    await_monitor_scripts(ctx, values)
                    return
                if health is not None and health.failed:
                    ctx.log.warning("domain %s is %s; destroying it before starting again", name, health.detail)
                    hv.destroy(dom)
                if status is not None and hv.is_persistent(dom):
                    # heartbeat semantics: the agent runs transient domains from its config file.
                    ctx.log.info("removing the stale persistent definition of %s (config file %s is kept)",
                                 name, values["config"])
                    hv.undefine(dom)
            if values["start_resources"]:
                cfg, _ = load_domain_config(values["config"])
                for net in cfg.networks:
                    if hv.start_network(net):
                        ctx.log.info("started libvirt network %s", net)
                for pool in cfg.pools:
                    if hv.start_pool(pool):
                        ctx.log.info("started libvirt storage pool %s", pool)
            state_file = _snapshot_path(values, name)
            if state_file and os.path.exists(state_file):
                ctx.log.info("restoring %s from its saved state %s", name, state_file)
                hv.restore(state_file)
                os.unlink(state_file)
            else:
                _, xml = load_domain_config(values["config"])
                hv.create(xml)
            if not _wait_until(ctx, hv, name, True, ctx.deadline):
                raise GenericError(f"domain {name} was created but is not running before the start deadline")
        except HypervisorUnreachable as exc:
            raise GenericError(f"start of {name} did not complete: {exc}") from None
        except HypervisorError as exc:
            raise GenericError(f"failed to start domain {name}: {exc}") from None
    finally:
        hv.close()
    ctx.log.info("domain %s started", name)
    await_monitor_scripts(ctx, values)


def _snapshot_path(values: Mapping[str, Any], name: str) -> Optional[str]:
    directory = values.get("snapshot") or ""
    return os.path.join(directory, f"{name}.state") if directory else None


def await_monitor_scripts(ctx: AgentContext, values: Mapping[str, Any]) -> None:
    """start completes only once every monitor script passes (bounded by the deadline)."""
    scripts = (values.get("monitor_scripts") or "").split()
    if not scripts:
        return
    last = ""
    while True:
        failure = run_monitor_scripts(ctx, scripts)
        if failure is None:
            return
        if failure != last:
            ctx.log.info("waiting for monitor scripts: %s", failure)
            last = failure
        if ctx.deadline.remaining() < 1.0:
            raise GenericError(f"domain started but monitor scripts did not pass in time: {failure}")
        ctx.deadline.sleep(1.0)


def run_monitor_scripts(ctx: AgentContext, scripts: List[str]) -> Optional[str]:
    """None when all pass, else a one-line description of the first failure."""
    for script in scripts:
        try:
            result = ctx.runner.run([script], timeout=ctx.deadline.bound(ctx.deadline.remaining()))
        except CommandError as exc:
            return f"monitor script {script}: {exc}"
        if not result.ok:
            return f"monitor script {result.describe()}"
    return None


def domain_is_running(ctx: AgentContext, name: str, values: Mapping[str, Any]) -> bool:
    """Whether ``name`` runs here; True when that cannot be told (the safe answer for stop)."""
    hv = Hypervisor(values["hypervisor"], ctx.deadline, call_cap=max(1.0, ctx.deadline.remaining() * 0.5))
    try:
        health = _health(hv.open(), name)
        return health is not None and not health.stopped
    except HypervisorError:
        return not is_local_qemu(values["hypervisor"]) or bool(find_qemu_pids(name))
    finally:
        hv.close()


# -- stop --------------------------------------------------------------------------------


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

    state_file = _snapshot_path(values, name)
    if state_file:
        try:
            hv.save(dom, state_file)
            ctx.log.info("saved the state of %s to %s", name, state_file)
        except HypervisorError as exc:
            if isinstance(exc, HypervisorUnreachable):
                raise
            ctx.log.warning("could not save %s to %s (%s); shutting it down instead", name, state_file, exc)
        else:
            if _wait_until(ctx, hv, name, False, ctx.deadline):
                return

    if values.get("force_stop"):
        _destroy(ctx, hv, name, dom)
        return

    # Keep time for destroy after the graceful attempt: a quarter of what is left, 3 to 30 s.
    left = ctx.deadline.remaining()
    reserve = min(30.0, max(3.0, left * 0.25))
    graceful = Deadline(max(0.0, left - reserve))
    flags = shutdown_flags(values.get("shutdown_mode") or "")
    try:
        hv.shutdown(dom, flags)
        ctx.log.info("asked %s to shut down; waiting up to %.0fs", name, graceful.remaining())
        # A guest still booting misses a single ACPI event: ask again every few seconds.
        while not graceful.expired():
            if _wait_until(ctx, hv, name, False, graceful.sub(1.0) if graceful.remaining() < SHUTDOWN_REPEAT
                           else Deadline(SHUTDOWN_REPEAT)):
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


def _destroy(ctx: AgentContext, hv: Hypervisor, name: str, dom: Any) -> None:
    if dom is None:
        return
    try:
        hv.destroy(dom)
    except HypervisorUnreachable:
        raise
    except HypervisorError as exc:
        if not hv.is_no_domain(exc):
            health = _health(hv, name)
            if health is not None and not health.stopped:
                raise GenericError(f"could not destroy domain {name}: {exc}") from None
    if not _wait_until(ctx, hv, name, False, ctx.deadline):
        raise GenericError(f"domain {name} is still running after destroy")
    ctx.log.info("domain %s destroyed", name)


def _save_config(ctx: AgentContext, hv: Hypervisor, dom: Any, name: str, values: Mapping[str, Any]) -> None:
    from livemig.virt.domain_xml import parse_domain_xml

    xml = hv.xml_desc(dom, inactive=True)
    parse_domain_xml(xml, origin=f"definition of running domain {name}")
    _write_config(values["config"], xml)
    ctx.log.info("saved the configuration of %s to %s", name, values["config"])


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
    directory = os.path.dirname(path)
    mode = 0o644
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".livemig-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(xml)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _stop_without_libvirt(ctx: AgentContext, name: str, uri: Optional[str], problem: str) -> None:
    """libvirtd does not answer: stop the domain's QEMU process ourselves, or fail.

    Success is only reported once no QEMU process of the domain remains.
    Killing QEMU is what destroy does; it spares the node from being fenced
    for a stop failure caused by a stuck libvirtd.
    """
    if not is_local_qemu(uri):
        raise GenericError(f"cannot stop {name}: {problem}")
    pids = find_qemu_pids(name)
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
        while time.monotonic() < end and find_qemu_pids(name):
            ctx.deadline.sleep(0.2)
        pids = find_qemu_pids(name)
        if not pids:
            ctx.log.info("QEMU process of %s is gone", name)
            ctx.notice = f"{problem}; stopped {name} by terminating its QEMU process"
            return
    raise GenericError(f"cannot stop {name}: {problem}; its QEMU process {pids[0]} survived SIGKILL")


# -- monitor -----------------------------------------------------------------------------


def monitor_domain(ctx: AgentContext, name: str, values: Mapping[str, Any]) -> OCFCode:
    uri = values["hypervisor"]
    hv = Hypervisor(uri, ctx.deadline, call_cap=max(1.0, ctx.deadline.remaining() * 0.5))
    try:
        try:
            hv.open()
            dom = hv.lookup(name)
            status = hv.status(dom) if dom is not None else None
        except HypervisorUnreachable as exc:
            return _monitor_without_libvirt(ctx, name, uri, str(exc))
        except HypervisorError as exc:
            raise GenericError(f"cannot query domain {name}: {exc}") from None
    finally:
        hv.close()
    if status is None:
        return OCFCode.NOT_RUNNING
    health = classify(status.state, status.reason)
    if health.stopped:
        if status.reason == SHUTOFF_CRASHED and not ctx.env.is_probe:
            raise GenericError(f"domain {name} is shut off after a crash (its QEMU process died)")
        return OCFCode.NOT_RUNNING
    if health.failed:
        raise GenericError(f"domain {name} is {health.detail}")
    if not ctx.env.is_probe:
        scripts = (values.get("monitor_scripts") or "").split()
        if scripts:
            failure = run_monitor_scripts(ctx, scripts)
            if failure:
                raise GenericError(f"domain {name} runs but {failure}")
        _update_utilization(ctx, values, status.vcpus, status.max_memory_kib)
    return OCFCode.SUCCESS


def _monitor_without_libvirt(ctx: AgentContext, name: str, uri: Optional[str], problem: str) -> OCFCode:
    if not is_local_qemu(uri):
        raise GenericError(f"cannot monitor {name}: {problem}")
    pids = find_qemu_pids(name)
    if pids:
        ctx.log.warning("%s; QEMU process %d of domain %s is running (read from /proc): reporting running",
                        problem, pids[0], name)
        ctx.notice = f"{problem}; QEMU process {pids[0]} of {name} runs (from /proc)"
        return OCFCode.SUCCESS
    ctx.log.warning("%s; no QEMU process of domain %s in /proc: reporting not running", problem, name)
    ctx.notice = f"{problem}; no QEMU process of {name} in /proc"
    return OCFCode.NOT_RUNNING


def _update_utilization(ctx: AgentContext, values: Mapping[str, Any], vcpus: int, max_kib: int) -> None:
    wanted: Dict[str, Optional[str]] = {}
    for attr, number in (("cpu", vcpus), ("host_memory", max_kib // 1024), ("hv_memory", max_kib // 1024)):
        if values.get(f"unset_utilization_{attr}"):
            wanted[attr] = None
        elif values.get(f"autoset_utilization_{attr}") and number > 0:
            wanted[attr] = str(number)
    if not wanted or ctx.env.timeout_ms is None or ctx.env.resource_instance in ("", "undef"):
        return  # not called by Pacemaker: there is no resource to annotate
    data = ctx.state.load()
    remembered = dict(data.get("utilization") or {})
    if all(attr in remembered and remembered[attr] == value for attr, value in wanted.items()):
        return  # steady state: fork nothing
    from livemig.pacemaker.utilization import UtilizationWriter

    resource = ctx.env.resource_instance.split(":", 1)[0]
    UtilizationWriter(resource, ctx.runner, ctx.deadline, remembered).apply(wanted)
    data["utilization"] = remembered
    ctx.state.save(data)
