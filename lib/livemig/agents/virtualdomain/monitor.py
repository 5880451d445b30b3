"""monitor (and the questions stop and migrate_to ask about this resource's domains here): is a
domain of this resource running, which ones are tagged for it, what does it run as; from libvirt,
from /proc when libvirtd does not answer. Monitor scripts, and Pacemaker's utilization from what
the domain runs with."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from livemig.agents.virtualdomain.context import AgentContext
from livemig.ocf.codes import OCFCode
from livemig.ocf.errors import GenericError
from livemig.run import CommandError
from livemig.virt import identity, qemu_proc
from livemig.virt.connection import Hypervisor, HypervisorError, HypervisorUnreachable
from livemig.virt.domains import health_of, occupies, status_of
from livemig.virt.options import is_local_qemu
from livemig.virt.states import SHUTOFF_CRASHED, classify


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
        health = health_of(hv.open(), name)
        return health is not None and not health.stopped
    except HypervisorError:
        return not is_local_qemu(values["hypervisor"]) or bool(qemu_proc.find_qemu_pids(name))
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
            status = status_of(hv, name) if name else None
            running = [n for n in earlier if n != name and occupies(status_of(hv, n))]
            if not occupies(status):
                tagged = [dom.name() for dom in identity.domains_owned_by(hv, ctx.owner)] if ctx.owner else []
                running += [n for n in tagged if n != name and n not in running]
                if len(running) == 1:
                    found = running.pop()
                    status = status_of(hv, found)
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
        both = ", ".join([n for n in [name] if n and occupies(status)] + running)
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


def _monitor_without_libvirt(ctx: AgentContext, names: List[str], uri: Optional[str],
                             problem: str) -> Tuple[OCFCode, Optional[str]]:
    if not is_local_qemu(uri):
        raise GenericError(f"cannot monitor {names[0] if names else 'this resource'}: {problem}")
    if ctx.owner:
        names = list(dict.fromkeys(names + identity.running_names_from_status(ctx.owner)))
    found = [(n, pids) for n, pids in ((n, qemu_proc.find_qemu_pids(n)) for n in names) if pids]
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
