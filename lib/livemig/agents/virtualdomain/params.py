"""The agent's parameters: typed from the environment (meta-data's types), their combinations
checked, and what this node must have for them. ``lenient`` (stop) turns a bad value into its
safe default instead of failing: a failed stop gets the node fenced."""

from __future__ import annotations

import os
import stat as stat_module
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from livemig.agents.virtualdomain import images
from livemig.agents.virtualdomain.context import AgentContext
from livemig.files import FileUnreadable, stat_file
from livemig.ocf.errors import ConfigurationError, NotInstalledError
from livemig.virt.errors import InvalidSetting
from livemig.virt.options import check_uri, shutdown_flags

if TYPE_CHECKING:
    from livemig.domain_xml import DomainDisk


def read_params(agent: AgentContext, lenient: bool) -> Dict[str, Any]:
    """Typed parameters. ``lenient`` (stop): a bad value falls back to its default."""
    raw = agent.env.params
    if not lenient:
        values = agent.metadata.parse_params(raw)
        images.apply_implied(values)  # sync_config_on_stop implies save_config_on_stop
        check_combinations(agent, values)
        return values
    values = {}
    for p in agent.metadata.parameters:
        try:
            values[p.name] = p.parse(raw.get(p.name))
        except (ConfigurationError, ValueError) as exc:
            agent.log.warning("%s; using its default for stop", exc)
            values[p.name] = p.parse(None) if p.name != "config" else raw.get("config")
    lenient_fallbacks(agent, values)
    images.apply_implied(values)
    return values


def lenient_fallbacks(agent: AgentContext, values: Dict[str, Any]) -> None:
    """stop with a value that would fail it: the safe default instead (a failed stop means fencing)."""
    try:
        check_uri(values["hypervisor"])
    except InvalidSetting as exc:
        # No domain can have been started through it: what may run here was started with
        # libvirt's default URI (and if that libvirtd does not answer, /proc tells).
        agent.log.warning("%s; stop uses libvirt's default URI", exc)
        values["hypervisor"] = None
    try:
        shutdown_flags(values["shutdown_mode"] or "")
    except InvalidSetting as exc:
        agent.log.warning("%s; using the hypervisor's default shutdown for stop", exc)
        values["shutdown_mode"] = ""
    snapshot = values["snapshot"]
    if snapshot and not (os.path.isabs(snapshot) and exists(agent, snapshot, "dir")):
        agent.log.warning("snapshot directory %r is not an existing absolute path; stop shuts the domain "
                          "down instead of saving its state", snapshot)
        values["snapshot"] = ""


def check_combinations(agent: AgentContext, values: Dict[str, Any]) -> None:
    config = values["config"]
    if not os.path.isabs(config):
        raise ConfigurationError(f"config={config!r} must be an absolute path")
    shutdown_flags(values["shutdown_mode"] or "")
    images.check_parameters(values, agent.log)  # stateless without backingfile, ...
    from livemig.agents.virtualdomain.drbd import parse_peer_names, parse_resource_list
    if agent.env.action not in ("monitor", "status"):
        # Everything migrate_to would build, checked now with a placeholder target. Not on
        # the monitor path (every 10 s): start, validate-all and migrate_to check it.
        from livemig.virt.migrate_options import POSTCOPY
        from livemig.virt.migration_plan import plan_migration

        plan = plan_migration("validate", "validate-target", values, values["hypervisor"] or "qemu:///system", False)
        if values["drbd_two_primaries"] == "migration" and (plan.convergence == "postcopy-after"
                                                           or plan.flags & POSTCOPY):
            raise ConfigurationError("drbd_two_primaries=migration cannot be used with post-copy: the window "
                                     "closes when the source has let go of the devices, and a post-copy "
                                     "source holds them past the migrate_to that started it")
    if values["drbd_two_primaries"] == "migration" and values["drbd_guard"] == "off":
        raise ConfigurationError("drbd_two_primaries=migration needs the DRBD guard (drbd_guard is off)")
    parse_resource_list(values["drbd_resources"] or "")
    parse_peer_names(values["drbd_peer_names"] or "")
    check_uri(values["hypervisor"])
    if values["snapshot"] and values["force_stop"]:
        raise ConfigurationError("snapshot and force_stop cannot be used together")
    if values["snapshot"] and not os.path.isabs(values["snapshot"]):
        raise ConfigurationError(f"snapshot={values['snapshot']!r} must be an absolute path")
    for script in monitor_scripts(values):
        if not os.path.isabs(script):
            raise ConfigurationError(f"monitor script {script!r} must be an absolute path")


def monitor_scripts(values: Dict[str, Any]) -> List[str]:
    return (values.get("monitor_scripts") or "").split()


def check_local_files(agent: AgentContext, values: Dict[str, Any],
                      disks: Optional[Sequence[DomainDisk]] = None) -> None:
    """What this node must have for the resource (code 5 otherwise); ``disks``: the config's."""
    images.check_node(values, agent.runner, agent.deadline, disks, agent.log)  # tools, backing file
    for script in monitor_scripts(values):
        if not exists(agent, script, "exec"):
            raise NotInstalledError(f"monitor script {script} is missing or not executable")
    if values["snapshot"] and not exists(agent, values["snapshot"], "dir"):
        raise NotInstalledError(f"snapshot directory {values['snapshot']} does not exist")


def exists(agent: AgentContext, path: str, kind: str) -> bool:
    """Whether ``path`` exists as ``kind`` ("dir" or "exec"); False when its mount does not answer."""
    try:
        st = stat_file(path, agent.fs_bound())
    except FileUnreadable as exc:
        agent.log.warning("%s", exc)
        return False
    if st is None:
        return False
    if kind == "dir":
        return stat_module.S_ISDIR(st.st_mode)
    return stat_module.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)
