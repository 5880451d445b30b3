"""Starting, stopping and monitoring one domain, each bounded by the operation deadline.

These functions raise :mod:`livemig.ocf.errors` exceptions with exit reasons
an operator can act on; they never wait past ``ctx.deadline``.

A resource's domains on this node are the one its config file names, the
names it had before (remembered in the state file) and every running domain
tagged for the resource (``ctx.owner``) in its libvirt metadata
(:mod:`livemig.virt.identity`): start writes the tag, migrations carry it, so
that stop, monitor and migrate_from find the domain on a node whose config
file is missing, different or unreadable.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from livemig.ocf.codes import OCFCode
from livemig.ocf.deadline import Deadline
from livemig.ocf.environment import OCFEnvironment
from livemig.ocf.errors import GenericError
from livemig.ocf.statefile import StateFile
from livemig.run import CommandError, CommandRunner
from livemig.virt import identity
from livemig.virt.connection import DomainStatus, Hypervisor, HypervisorError, HypervisorUnreachable, JobTimeout
from livemig.virt.options import is_local_qemu, shutdown_flags
from livemig.virt.qemu_proc import find_qemu_pids
from livemig.virt.states import SHUTOFF_CRASHED, DomainHealth, classify, describe_state, in_postcopy

if TYPE_CHECKING:
    import logging

    from livemig.domain_xml import DomainConfig

POLL_INTERVAL = 0.5
SHUTDOWN_REPEAT = 5.0  # seconds between repeated shutdown requests
#: what a long job (create, restore, save) leaves of the deadline for the steps after it
JOB_RESERVE = 2.0
#: bound for one file-system call (stat, unlink) that a hung mount could block
FS_BOUND = 5.0


class AgentContext(Protocol):
    env: OCFEnvironment
    log: logging.Logger
    deadline: Deadline
    state: StateFile
    runner: CommandRunner
    notice: Optional[str]
    #: the resource a domain's identity tag names (None: not called for a resource)
    owner: Optional[str]


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


def start_domain(ctx: AgentContext, cfg: DomainConfig, xml_text: str, values: Mapping[str, Any]) -> None:
    """Start the domain ``cfg`` describes (``xml_text``: the config file's text), tagged for ``ctx.owner``."""
    name = cfg.name
    uri = values["hypervisor"]
    hv = Hypervisor(uri, ctx.deadline)
    try:
        try:
            hv.open()
        except HypervisorUnreachable as exc:
            raise GenericError(f"cannot start {name}: {exc}") from None
        try:
            if _start_existing(ctx, hv, name, values):
                return
            if values["start_resources"]:
                for net in cfg.networks:
                    if hv.start_network(net):
                        ctx.log.info("started libvirt network %s", net)
                for pool in cfg.pools:
                    if hv.start_pool(pool):
                        ctx.log.info("started libvirt storage pool %s", pool)
            state_file = _snapshot_path(values, name)
            if state_file and _saved_state_exists(ctx, state_file):
                ctx.log.info("restoring %s from its saved state %s", name, state_file)
                hv.restore(state_file, max(0.0, ctx.deadline.remaining() - JOB_RESERVE))
                _remove_saved_state(ctx, state_file)
                _ensure_tagged(ctx, hv, name)
            else:
                prepare_disk = getattr(ctx, "prepare_disk", None)  # hook (issue 16.5): backingfile's overlay
                if prepare_disk is not None:  # hook (issue 16.5)
                    prepare_disk(name, values)  # hook (issue 16.5)
                job_time = max(0.0, ctx.deadline.remaining() - JOB_RESERVE)
                hv.create(identity.tag_domain_xml(xml_text, ctx.owner) if ctx.owner else xml_text, job_time)
            if not _wait_until(ctx, hv, name, True, ctx.deadline):
                raise GenericError(f"domain {name} was created but is not running before the start deadline")
        except JobTimeout as exc:
            raise GenericError(f"start of {name} did not complete before the start deadline ({exc}): raise "
                               "the start timeout for a guest this large") from None
        except HypervisorUnreachable as exc:
            raise GenericError(f"start of {name} did not complete: {exc}") from None
        except HypervisorError as exc:
            raise GenericError(f"failed to start domain {name}: {exc}") from None
    finally:
        hv.close()
    ctx.log.info("domain %s started", name)
    await_monitor_scripts(ctx, values)


def _start_existing(ctx: AgentContext, hv: Hypervisor, name: str, values: Mapping[str, Any]) -> bool:
    """A domain of that name already exists here: True when it runs as this resource's (start is done)."""
    dom = hv.lookup(name)
    if dom is None:
        return False
    status = hv.status(dom)
    health = classify(status.state, status.reason) if status else None
    owner = identity.owner_of(hv, dom) if status is not None and ctx.owner else None
    if owner is not None and owner != ctx.owner:
        raise GenericError(f"domain {name} here belongs to resource {owner}, not {ctx.owner}: two resources "
                           "must not manage the same domain")
    if health is not None and health.running:
        ctx.log.info("domain %s is already running (%s)", name, health.detail)
        _ensure_tagged(ctx, hv, name)
        await_monitor_scripts(ctx, values)
        return True
    if health is not None and health.failed:
        ctx.log.warning("domain %s is %s; destroying it before starting again", name, health.detail)
        hv.destroy(dom)
    if status is not None and hv.is_persistent(dom):
        # heartbeat semantics: the agent runs transient domains from its config file. A
        # definition that holds state of its own is not thrown away with it.
        kept = hv.keeps_state(dom)
        if kept:
            raise GenericError(
                f"domain {name} is defined here with {' and '.join(kept)}, which starting it from "
                f"{values['config']} would discard: remove them (virsh managedsave-remove, virsh "
                "snapshot-delete) or undefine the domain yourself, then clean up the resource")
        ctx.log.info("removing the stale persistent definition of %s (config file %s is kept)",
                     name, values["config"])
        hv.undefine(dom)
    return False


def _ensure_tagged(ctx: AgentContext, hv: Hypervisor, name: str) -> None:
    """Tag a running domain that lacks this resource's tag (started before livemig tagged, restored)."""
    if not ctx.owner:
        return
    dom = hv.lookup(name)
    if dom is None or identity.owner_of(hv, dom) == ctx.owner:
        return
    try:
        identity.tag(hv, dom, ctx.owner)
        ctx.log.info("tagged domain %s as resource %s's", name, ctx.owner)
    except HypervisorUnreachable:
        raise
    except HypervisorError as exc:
        ctx.log.warning("could not tag domain %s as resource %s's: %s", name, ctx.owner, exc)


def _snapshot_path(values: Mapping[str, Any], name: str) -> Optional[str]:
    directory = values.get("snapshot") or ""
    return os.path.join(directory, f"{name}.state") if directory else None


def _saved_state_exists(ctx: AgentContext, path: str) -> bool:
    from livemig.files import FileUnreadable, stat_file

    try:
        return stat_file(path, ctx.deadline.bound(FS_BOUND)) is not None
    except FileUnreadable as exc:
        raise GenericError(f"cannot tell whether a saved state exists: {exc}") from None


def _remove_saved_state(ctx: AgentContext, path: str) -> None:
    """The state was restored: its file must not be restored a second time."""
    from livemig.bounded import CallTimeout, bounded_call

    try:
        bounded_call(f"unlink {path}", ctx.deadline.bound(FS_BOUND), os.unlink, path)
    except (OSError, CallTimeout) as exc:
        ctx.log.warning("restored from %s but could not remove it (%s): remove it before the next start", path, exc)


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


def owned_domains(ctx: AgentContext, values: Mapping[str, Any]) -> List[str]:
    """Names of the running domains tagged for ``ctx.owner`` here.

    From libvirt; when libvirtd does not answer, from the QEMU driver's status
    files (local QEMU only). GenericError when neither can tell.
    """
    if not ctx.owner:
        return []
    hv = Hypervisor(values["hypervisor"], ctx.deadline, call_cap=max(1.0, ctx.deadline.remaining() * 0.3))
    try:
        return [dom.name() for dom in identity.domains_owned_by(hv.open(), ctx.owner)]
    except HypervisorError as exc:
        if not is_local_qemu(values["hypervisor"]):
            raise GenericError(f"cannot tell which domains of {ctx.owner} run here: {exc}") from None
        return identity.running_names_from_status(ctx.owner)
    finally:
        hv.close()


def live_domain_xml(ctx: AgentContext, name: str, values: Mapping[str, Any]) -> str:
    """The running domain's live XML (what libvirt migrates: hot-plugged disks included)."""
    hv = Hypervisor(values["hypervisor"], ctx.deadline, call_cap=max(1.0, ctx.deadline.remaining() * 0.3))
    try:
        dom = hv.open().lookup(name)
        if dom is None:
            raise GenericError(f"domain {name} does not exist here")
        return hv.live_xml(dom)
    except HypervisorError as exc:
        raise GenericError(f"cannot read the running definition of {name}: {exc}") from None
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

    state_file = _snapshot_path(values, name)
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
    return _wait_until(ctx, hv, name, False, ctx.deadline)


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
            health = _health(hv, name)
            if health is not None and not health.stopped:
                raise GenericError(f"could not destroy domain {name}: {exc}") from None
    if not _wait_until(ctx, hv, name, False, ctx.deadline):
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
    config_saved = getattr(ctx, "config_saved", None)  # hook (issue 16.5): sync_config_on_stop's csync2 -x
    if config_saved is not None:  # hook (issue 16.5)
        config_saved(values)  # hook (issue 16.5)


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


def monitor_domain(ctx: AgentContext, name: Optional[str], values: Mapping[str, Any],
                   earlier: Sequence[str] = ()) -> Tuple[OCFCode, Optional[str]]:
    """Is this resource's domain running here? The code, and the name of the domain found running.

    ``name`` is the domain the config names (or the remembered name; None when
    neither is known), ``earlier`` the names the resource had before. When
    ``name`` does not run, the domains tagged for the resource are looked for
    too (a node whose config file is missing or names another domain): 7 means
    that no domain of this resource runs here. Two of them running is a failure.
    """
    uri = values["hypervisor"]
    hv = Hypervisor(uri, ctx.deadline, call_cap=max(1.0, ctx.deadline.remaining() * 0.5))
    try:
        try:
            hv.open()
            status = _status_of(hv, name) if name else None
            running = [n for n in earlier if n != name and _occupies(_status_of(hv, n))]
            if not _occupies(status):
                tagged = [dom.name() for dom in identity.domains_owned_by(hv, ctx.owner)] if ctx.owner else []
                running += [n for n in tagged if n != name and n not in running]
                if len(running) == 1:
                    found = running.pop()
                    status = _status_of(hv, found)
                    ctx.log.warning("domain %s of this resource runs here (%s)", found,
                                    f"config names {name}" if name else "its config file is unreadable")
                    ctx.notice = f"domain {found} of this resource runs here, " + \
                        (f"not {name} as its config names" if name else "config unreadable")
                    name = found
        except HypervisorUnreachable as exc:
            return _monitor_without_libvirt(ctx, [n for n in [name, *earlier] if n], uri, str(exc))
        except HypervisorError as exc:
            raise GenericError(f"cannot query domain {name or 'of this resource'}: {exc}") from None
    finally:
        hv.close()
    if running:
        both = ", ".join([n for n in [name] if n and _occupies(status)] + running)
        raise GenericError(f"more than one domain of this resource runs here ({both}): stop the resource, "
                           "which stops them all")
    if status is None or name is None:
        return OCFCode.NOT_RUNNING, None
    health = classify(status.state, status.reason)
    if health.stopped:
        if status.reason == SHUTOFF_CRASHED and not ctx.env.is_probe:
            raise GenericError(f"domain {name} is shut off after a crash (its QEMU process died)")
        return OCFCode.NOT_RUNNING, None
    if health.failed:
        raise GenericError(f"domain {name} is {health.detail}")
    if not ctx.env.is_probe:
        scripts = (values.get("monitor_scripts") or "").split()
        if scripts:
            failure = run_monitor_scripts(ctx, scripts)
            if failure:
                raise GenericError(f"domain {name} runs but {failure}")
        _update_utilization(ctx, values, status.vcpus, status.max_memory_kib)
    return OCFCode.SUCCESS, name


def _status_of(hv: Hypervisor, name: str) -> Optional[DomainStatus]:
    dom = hv.lookup(name)
    return hv.status(dom) if dom is not None else None


def _occupies(status: Optional[DomainStatus]) -> bool:
    """The domain is on this node in some form: not absent, not shut off."""
    return status is not None and not classify(status.state, status.reason).stopped


def _monitor_without_libvirt(ctx: AgentContext, names: List[str], uri: Optional[str],
                             problem: str) -> Tuple[OCFCode, Optional[str]]:
    if not is_local_qemu(uri):
        raise GenericError(f"cannot monitor {names[0] if names else 'this resource'}: {problem}")
    if ctx.owner:
        names = list(dict.fromkeys(names + identity.running_names_from_status(ctx.owner)))
    found = [(n, pids) for n, pids in ((n, find_qemu_pids(n)) for n in names) if pids]
    if len(found) > 1:
        raise GenericError(f"{problem}; QEMU processes of more than one domain of this resource run here "
                           f"({', '.join(n for n, _ in found)})")
    if found:
        name, pids = found[0]
        ctx.log.warning("%s; QEMU process %d of domain %s is running (read from /proc): reporting running",
                        problem, pids[0], name)
        ctx.notice = f"QEMU process {pids[0]} of {name} runs (from /proc); {problem}"
        return OCFCode.SUCCESS, name
    shown = ", ".join(names) or "this resource"
    ctx.log.warning("%s; no QEMU process of %s in /proc: reporting not running", problem, shown)
    ctx.notice = f"no QEMU process of {shown} in /proc; {problem}"
    return OCFCode.NOT_RUNNING, None


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
