"""start: the domain the config file describes, created (or restored from its saved state) and
tagged for this resource, running before the deadline; monitor scripts passing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Optional

from livemig.agents.virtualdomain import images
from livemig.agents.virtualdomain.context import FS_BOUND, AgentContext
from livemig.agents.virtualdomain.monitor import await_monitor_scripts
from livemig.ocf.errors import GenericError
from livemig.virt import identity
from livemig.virt.connection import Hypervisor, HypervisorError, HypervisorUnreachable, JobTimeout
from livemig.virt.domains import wait_until
from livemig.virt.states import classify

if TYPE_CHECKING:
    from livemig.domain_xml import DomainConfig

#: what a long job (create, restore) leaves of the deadline for the steps after it
JOB_RESERVE = 2.0

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
            state_file = snapshot_path(values, name)
            if state_file and _saved_state_exists(ctx, state_file):
                ctx.log.info("restoring %s from its saved state %s", name, state_file)
                hv.restore(state_file, max(0.0, ctx.deadline.remaining() - JOB_RESERVE))
                _remove_saved_state(ctx, state_file)
                _ensure_tagged(ctx, hv, name)
            else:
                # heartbeat's copy-on-write mode: backingfile's overlay (re)created, copyindirs copied in
                images.prepare_disk(values, name, ctx.runner, ctx.deadline, ctx.log)
                hv.create(identity.tag_domain_xml(xml_text, ctx.owner) if ctx.owner else xml_text,
                          max(0.0, ctx.deadline.remaining() - JOB_RESERVE))
            if not wait_until(hv, name, True, ctx.deadline, ctx.deadline):
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
        dom = hv.lookup(name)  # a transient domain is gone once destroyed: nothing left to undefine
        if dom is None:
            return False
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


def snapshot_path(values: Mapping[str, Any], name: str) -> Optional[str]:
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
