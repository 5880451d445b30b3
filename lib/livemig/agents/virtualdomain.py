"""ocf:livemig:VirtualDomain: one handler per action.

start    -> :mod:`livemig.virt.lifecycle` ``start_domain``
stop     -> ``stop_domain`` (graceful, then destroy, within the deadline)
monitor  -> ``monitor_domain`` (libvirt; /proc when libvirtd does not answer)

The domain name comes from the config file and is remembered in a state
file (:class:`livemig.ocf.statefile.StateFile`) keyed by the file's identity,
so a steady-state monitor neither parses XML nor forks. The resource's
identity also travels with the domain itself: start tags it in its libvirt
metadata (:mod:`livemig.virt.identity`) and every migration carries the tag,
so stop, monitor and migrate_from find "this resource's domain" on a node
whose config file is missing, names another domain, or sits on a mount that
stopped answering (every read and stat of it is bounded).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from livemig.agents.virtualdomain_images import apply_implied  # hook (issue 16.5)
from livemig.agents.virtualdomain_images import check_parameters as check_image_parameters  # hook (issue 16.5)
from livemig.agents.virtualdomain_meta import METADATA, NOT_YET_SUPPORTED
from livemig.files import FileUnreadable, stat_file
from livemig.ocf.agent import ResourceAgent, run
from livemig.ocf.codes import OCFCode
from livemig.ocf.errors import ArgsError, ConfigurationError, GenericError, NotInstalledError
from livemig.ocf.statefile import StateFile
from livemig.run import CommandRunner
from livemig.virt.errors import InvalidSetting, OperationFailed
from livemig.virt.options import check_uri, shutdown_flags

if TYPE_CHECKING:
    from livemig.agents.virtualdomain_drbd import DrbdPlan
    from livemig.domain_xml import DomainConfig, DomainDisk

#: The most one stat or read of the config file (or another local file) may take: on an NFS,
#: GFS2, OCFS2 or FUSE mount that stopped answering, the remembered identity answers instead.
FS_BOUND = 5.0

class VirtualDomain(ResourceAgent):
    metadata = METADATA
    default_timeouts = {"start": 90.0, "stop": 90.0, "monitor": 30.0, "status": 30.0,
                        "validate-all": 10.0}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = StateFile("VirtualDomain", self.env.resource_instance, self.env.raw)
        self.runner = CommandRunner()
        self._params: Optional[Dict[str, Any]] = None
        instance = self.env.resource_instance.split(":", 1)[0]
        #: the id the domain's identity tag carries (None outside Pacemaker)
        self.owner: Optional[str] = instance if instance and instance != "undef" else None
        #: why the config file could not be read in this action (None: it was, or was not tried)
        self.config_problem: Optional[str] = None

    def fs_bound(self) -> float:
        """The bound for one file-system call, within the deadline."""
        return self.deadline.bound(min(FS_BOUND, max(0.5, self.deadline.remaining() * 0.2)))

    def _exists(self, path: str, kind: str) -> bool:
        """Whether ``path`` exists as ``kind`` ("dir" or "exec"); False when its mount does not answer."""
        import stat as stat_module

        try:
            st = stat_file(path, self.fs_bound())
        except FileUnreadable as exc:
            self.log.warning("%s", exc)
            return False
        if st is None:
            return False
        if kind == "dir":
            return stat_module.S_ISDIR(st.st_mode)
        return stat_module.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

    # -- parameters ----------------------------------------------------------------------

    def handler(self, action: str) -> Optional[Callable[[], OCFCode]]:
        """The action's method; virt/'s errors answered here: a setting it cannot turn into a libvirt call
        is code 6, an operation that failed code 1, each with virt's reason."""
        method = super().handler(action)
        if method is None:
            return None

        def run_action() -> OCFCode:
            try:
                return method()
            except InvalidSetting as exc:
                raise ConfigurationError(exc.reason) from None
            except OperationFailed as exc:
                raise GenericError(exc.reason) from None

        return run_action

    def params(self, lenient: bool = False) -> Dict[str, Any]:
        """Typed parameters. ``lenient`` (stop): a bad value falls back to its default."""
        if self._params is None:
            raw = self.env.params
            if lenient:
                values: Dict[str, Any] = {}
                for p in self.metadata.parameters:
                    try:
                        values[p.name] = p.parse(raw.get(p.name))
                    except (ConfigurationError, ValueError) as exc:
                        self.log.warning("%s; using its default for stop", exc)
                        values[p.name] = p.parse(None) if p.name != "config" else raw.get("config")
                self._lenient_fallbacks(values)
                apply_implied(values)  # hook (issue 16.5): sync_config_on_stop implies save_config_on_stop
                self._params = values
            else:
                values = self.metadata.parse_params(raw)
                apply_implied(values)  # hook (issue 16.5): sync_config_on_stop implies save_config_on_stop
                self._check_combinations(values, raw)
                self._params = values
        return self._params

    def _lenient_fallbacks(self, values: Dict[str, Any]) -> None:
        """stop with a value that would fail it: the safe default instead (a failed stop means fencing)."""
        try:
            check_uri(values["hypervisor"])
        except InvalidSetting as exc:
            # No domain can have been started through it: what may run here was started with
            # libvirt's default URI (and if that libvirtd does not answer, /proc tells).
            self.log.warning("%s; stop uses libvirt's default URI", exc)
            values["hypervisor"] = None
        try:
            shutdown_flags(values["shutdown_mode"] or "")
        except InvalidSetting as exc:
            self.log.warning("%s; using the hypervisor's default shutdown for stop", exc)
            values["shutdown_mode"] = ""
        snapshot = values["snapshot"]
        if snapshot and not (os.path.isabs(snapshot) and self._exists(snapshot, "dir")):
            self.log.warning("snapshot directory %r is not an existing absolute path; stop shuts the domain "
                             "down instead of saving its state", snapshot)
            values["snapshot"] = ""

    def _check_combinations(self, values: Dict[str, Any], raw: Dict[str, str]) -> None:
        config = values["config"]
        if not os.path.isabs(config):
            raise ConfigurationError(f"config={config!r} must be an absolute path")
        for name, default in NOT_YET_SUPPORTED.items():
            given = raw.get(name)
            if given is None or given.strip() == "" or given.strip() == default:
                continue
            param = self.metadata.parameter(name)
            if param.type == "boolean" and param.parse(given) == param.parse(default):
                continue
            raise ConfigurationError(
                f"parameter {name} is not supported yet by ocf:livemig:VirtualDomain "
                f"(set to {given!r}); remove it or use ocf:heartbeat:VirtualDomain")
        shutdown_flags(values["shutdown_mode"] or "")
        check_image_parameters(values, self.log)  # hook (issue 16.5): stateless without backingfile, ...
        from livemig.agents.virtualdomain_drbd import parse_peer_names, parse_resource_list
        if self.env.action not in ("monitor", "status"):
            # Everything migrate_to would build, checked now with a placeholder target. Not on
            # the monitor path (every 10 s): start, validate-all and migrate_to check it.
            from livemig.virt.migration_plan import plan_migration

            plan_migration("validate", "validate-target", values, values["hypervisor"] or "qemu:///system", False)
        parse_resource_list(values["drbd_resources"] or "")
        parse_peer_names(values["drbd_peer_names"] or "")
        check_uri(values["hypervisor"])
        if values["snapshot"] and values["force_stop"]:
            raise ConfigurationError("snapshot and force_stop cannot be used together")
        if values["snapshot"] and not os.path.isabs(values["snapshot"]):
            raise ConfigurationError(f"snapshot={values['snapshot']!r} must be an absolute path")
        for script in self.monitor_scripts(values):
            if not os.path.isabs(script):
                raise ConfigurationError(f"monitor script {script!r} must be an absolute path")

    @staticmethod
    def monitor_scripts(values: Dict[str, Any]) -> List[str]:
        return (values.get("monitor_scripts") or "").split()

    # -- the domain's name ------------------------------------------------------------------

    def _config_identity(self, path: str) -> Optional[List[int]]:
        if self.config_problem:
            return None
        try:
            st = stat_file(path, self.fs_bound())
        except FileUnreadable as exc:
            self.config_problem = str(exc)
            return None
        if st is None:
            return None
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]

    def _load(self, path: str) -> Tuple[DomainConfig, str]:
        """The parsed config file (ConfigUnreadable / DomainXMLError), never blocked past the bound."""
        from livemig.domain_xml import ConfigUnreadable, load_domain_config

        if self.config_problem:
            raise ConfigUnreadable(self.config_problem)
        try:
            return load_domain_config(path, self.fs_bound())
        except ConfigUnreadable as exc:
            self.config_problem = str(exc)
            raise

    def domain_name(self, *, strict: bool) -> Optional[str]:
        """The domain name from the config file, or the remembered one.

        ``strict`` (start, validate): the file must be readable and valid.
        Otherwise (monitor, stop, migrations) the remembered name is used when
        the file cannot be read; None when there is nothing to go on (then the
        identity tag is what finds the domain).
        """
        path = self.params(lenient=not strict)["config"]
        cached = self.state.load()
        ident = self._config_identity(path)
        if not strict and ident is not None and cached.get("config") == path \
                and cached.get("config_identity") == ident and cached.get("name"):
            return str(cached["name"])  # the steady-state monitor: no XML parsed, lxml not imported
        if strict:
            return self.load_config()[0].name
        from livemig.domain_xml import ConfigUnreadable, DomainXMLError

        try:
            cfg, _ = self._load(path)
        except ConfigUnreadable as exc:
            return self._remembered_name(cached, path, f"configuration file unreadable: {exc}")
        except DomainXMLError as exc:
            self.config_problem = str(exc)
            return self._remembered_name(cached, path, str(exc))
        self.remember(cfg.name, path, ident)
        return cfg.name

    def load_config(self) -> Tuple[DomainConfig, str]:
        """(domain config, XML text) from the config file; codes 5 / 6 when unusable, 1 when it hangs."""
        from livemig.domain_xml import ConfigUnreadable, DomainXMLError

        path = self.params()["config"]
        try:
            cfg, text = self._load(path)
        except ConfigUnreadable as exc:
            if exc.timed_out:
                raise GenericError(f"configuration file unreadable: {exc}") from None
            raise NotInstalledError(f"configuration file unreadable: {exc}") from None
        except DomainXMLError as exc:
            raise ConfigurationError(str(exc)) from None
        self.remember(cfg.name, path)
        return cfg, text

    def drbd_plan(self, xml_text: Optional[str]) -> DrbdPlan:
        from livemig.agents.virtualdomain_drbd import DrbdPlan

        return DrbdPlan(self.params(), xml_text, self.runner, self.deadline, self.log)

    def _remembered_name(self, cached: Dict[str, Any], path: str, problem: str) -> Optional[str]:
        name = cached.get("name") if cached.get("config") == path else None
        if name:
            self.log.warning("%s; using the remembered domain name %s", problem, name)
            return str(name)
        self.log.warning("%s, and no domain name is remembered for this resource", problem)
        return None

    def remember(self, name: str, path: Optional[str] = None, ident: Optional[List[int]] = None) -> None:
        """Remember ``name`` as this resource's domain.

        A different name remembered before (the config file now names another
        domain, or ``config`` points at another file) is kept in
        ``earlier_names`` until a stop has made sure that domain is gone: it
        may still run, and must neither be forgotten nor run beside the new one.
        """
        path = path or self.params(lenient=True)["config"]
        if ident is None:
            ident = self._config_identity(path)
        data = self.state.load()
        earlier = self.earlier_names(data, name)
        old = data.get("name")
        if isinstance(old, str) and old and old != name and old not in earlier:
            self.log.warning("config %s now names domain %s; %s, remembered for this resource, is kept "
                             "in mind until a stop", path, name, old)
            earlier.append(old)
        if data.get("name") != name or data.get("config") != path or data.get("config_identity") != ident \
                or (data.get("earlier_names") or []) != earlier:
            data.update(name=name, config=path, config_identity=ident, earlier_names=earlier)
            if not self.state.save(data):
                self.log.debug("could not write %s", self.state.path)

    def earlier_names(self, data: Optional[Dict[str, Any]] = None, current: Optional[str] = None) -> List[str]:
        """Names this resource's domain had before the current one, possibly still running here."""
        data = self.state.load() if data is None else data
        names = data.get("earlier_names")
        if not isinstance(names, list):
            return []
        return [n for n in names if isinstance(n, str) and n and n != current]

    def refuse_if_other_domain_runs(self, name: str, values: Dict[str, Any], action: str) -> None:
        """GenericError when another domain of this resource (an earlier name, or tagged) runs here."""
        from livemig.virt.lifecycle import domain_is_running, owned_domains

        others = [n for n in self.earlier_names(current=name) if domain_is_running(self, n, values)]
        others += [n for n in owned_domains(self, values) if n != name and n not in others]
        if others:
            raise GenericError(
                f"{action}: domain {others[0]} of this resource still runs here but config names {name}; stop the "
                "resource (it stops both) before changing the domain's name")

    def forget_earlier_names(self, keep: List[str]) -> None:
        data = self.state.load()
        if data.get("earlier_names"):
            data["earlier_names"] = keep
            self.state.save(data)

    def adopt(self, found: str, name: Optional[str]) -> None:
        """``found`` runs here as this resource's domain, though the config names ``name`` (or nothing)."""
        if found == name:
            return
        if name is None or self.config_problem:
            self.remember(found)  # the config cannot be read: the running domain is the one to remember
            return
        data = self.state.load()
        earlier = self.earlier_names(data, name)
        if found not in earlier:
            data["earlier_names"] = [*earlier, found]  # stop makes sure it is gone too
            self.state.save(data)

    # -- actions -----------------------------------------------------------------------------

    def action_validate_all(self) -> OCFCode:
        values = self.params()
        cfg, _ = self.load_config()  # hook (issue 16.5): was self.domain_name(strict=True); the disks are checked
        self.check_local_files(values, cfg.disks)
        if self.env.check_level >= 10:
            from livemig.virt.connection import Hypervisor, HypervisorUnreachable

            hv = Hypervisor(values["hypervisor"], self.deadline)
            try:
                hv.open()
            except HypervisorUnreachable as exc:
                raise NotInstalledError(str(exc)) from None
            finally:
                hv.close()
        return OCFCode.SUCCESS

    def action_start(self) -> OCFCode:
        from livemig.virt.lifecycle import start_domain

        values = self.params()
        cfg, xml_text = self.load_config()
        self.check_local_files(values, cfg.disks)  # hook (issue 16.5): cfg.disks
        self.refuse_if_other_domain_runs(cfg.name, values, "start")
        self.drbd_plan(xml_text).check_start()
        start_domain(self, cfg, xml_text, values)
        self.remember(cfg.name)
        self.state.update(running_here=True)
        return OCFCode.SUCCESS

    def check_local_files(self, values: Dict[str, Any], disks: Optional[Sequence[DomainDisk]] = None) -> None:
        """What this node must have for the resource (code 5 otherwise)."""
        from livemig.agents.virtualdomain_images import check_node  # hook (issue 16.5)

        check_node(values, self.runner, self.deadline, disks, self.log)  # hook (issue 16.5): tools, backing file
        for script in self.monitor_scripts(values):
            if not self._exists(script, "exec"):
                raise NotInstalledError(f"monitor script {script} is missing or not executable")
        if values["snapshot"] and not self._exists(values["snapshot"], "dir"):
            raise NotInstalledError(f"snapshot directory {values['snapshot']} does not exist")

    # hooks (issue 16.5) that lifecycle.start_domain and lifecycle._save_config call on their ctx
    def prepare_disk(self, name: str, values: Mapping[str, Any]) -> None:
        """Before the domain is created: backingfile's overlay, copyindirs (virtualdomain_images)."""
        from livemig.agents.virtualdomain_images import prepare_disk

        prepare_disk(values, name, self.runner, self.deadline, self.log)

    def config_saved(self, values: Mapping[str, Any]) -> None:
        """The config file was just saved (save_config_on_stop): sync_config_on_stop's csync2 -x."""
        from livemig.agents.virtualdomain_images import sync_config

        sync_config(values, self.runner, self.deadline, self.log)

    def action_stop(self) -> OCFCode:
        """Success means that no domain of this resource runs on this node any more."""
        from livemig.virt.lifecycle import owned_domains, stop_domain

        values = self.params(lenient=True)
        name = self.domain_name(strict=False)
        earlier = self.earlier_names(current=name)
        tagged = [n for n in owned_domains(self, values) if n != name and n not in earlier]
        for old in earlier + tagged:
            # The config named another domain before, or names another domain on this node.
            self.log.info("stopping %s, a domain of this resource (config names %s)", old, name)
            stop_domain(self, old, values)
        if earlier:
            self.forget_earlier_names([])
        if name is None:
            if tagged:
                return OCFCode.SUCCESS
            return self._stop_unknown_domain(values)
        stop_domain(self, name, values)
        if self.state.load().get("running_here"):
            self.state.update(running_here=False)
        return OCFCode.SUCCESS

    def _stop_unknown_domain(self, values: Dict[str, Any]) -> OCFCode:
        """Stop when the config cannot be read, no name was remembered and no tagged domain runs.

        The name is remembered by every action that meets the domain (start,
        probe, monitor, migrate_from) in a state file that lives until reboot,
        as the domains do, and the domains this agent starts carry the
        resource's tag. With neither, this agent never started or saw a domain
        for this resource on this node since boot: typically a start that
        failed on a missing config file, where failing the stop would get the
        node fenced for nothing. The one guess left: a running domain named
        like the resource (an untagged one, started by another agent) is not
        claimed stopped.
        """
        from livemig.virt.lifecycle import domain_is_running

        instance = self.owner
        if instance and domain_is_running(self, instance, values):
            raise GenericError(
                f"domain {instance} runs here and config {values['config']} is unreadable: not claiming it "
                "stopped; fix the config file, then clean up the resource")
        self.log.warning("config %s is unreadable and no domain was started or seen for %s on this node "
                         "since boot: nothing to stop", values["config"], instance)
        self.notice = f"no domain of this resource ran here since boot (config {values['config']} unreadable)"
        return OCFCode.SUCCESS

    def action_monitor(self) -> OCFCode:
        """0: a domain of this resource runs here; 7: none does (whatever the config file says)."""
        from livemig.virt.lifecycle import live_domain_xml, monitor_domain

        values = self.params()
        name = self.domain_name(strict=False)
        code, found = monitor_domain(self, name, values, self.earlier_names(current=name))
        if code == OCFCode.NOT_RUNNING:
            if self.env.is_probe:
                return code
            if name is None:
                raise NotInstalledError(
                    f"configuration file {values['config']} is unreadable or invalid on this node"
                    + (f" ({self.config_problem})" if self.config_problem else ""))
            if self.state.load().get("running_here"):
                # A transient domain whose QEMU died is simply gone from libvirt: say what happened.
                raise GenericError(f"domain {name} is gone (QEMU died or was killed?): it was started here and "
                                   "not stopped; see libvirt's QEMU log")
            return code
        if found is not None:
            self.adopt(found, name)
        if code == OCFCode.SUCCESS and self.env.check_level >= 10 and not self.env.is_probe and found:
            self.drbd_plan(live_domain_xml(self, found, values)).check_monitor()
        return code

    def _running_name(self, values: Dict[str, Any]) -> str:
        """The name of this resource's domain running here (for migrate_to), the config file readable or not."""
        from livemig.virt.lifecycle import owned_domains

        name = self.domain_name(strict=False)
        if name is None:
            tagged = owned_domains(self, values)
            if len(tagged) != 1:
                runs = f"{len(tagged)} domains of this resource run here" if tagged else \
                    "no domain of this resource runs here"
                raise GenericError(f"cannot migrate: {runs}, and its config is unreadable: {self.config_problem}")
            name = tagged[0]
            self.remember(name)
        if self.config_problem:
            self.log.warning("config %s is unreadable here (%s): migrating %s from its running definition",
                             values["config"], self.config_problem, name)
        return name

    def action_migrate_to(self) -> OCFCode:
        """Live-migrate to Pacemaker's target: the DRBD guard first, then the migration phases."""
        from livemig.virt.migration import LiveMigration

        target = self.env.meta.get("migrate_target") or ""
        if not target:
            raise ArgsError("migrate_to needs OCF_RESKEY_CRM_meta_migrate_target (set by Pacemaker)")
        values = self.params()
        name = self._running_name(values)
        self.refuse_if_other_domain_runs(name, values, "migrate_to")
        plans: List[DrbdPlan] = []

        def guard(live_xml: str) -> None:
            # The running definition, not the config file's: a disk hot-plugged into the
            # domain is migrated too, and is checked like the others.
            plans.append(self.drbd_plan(live_xml))
            plans[0].guard(target)

        LiveMigration(self, name, values, target, guard=guard,
                      watch=lambda bound: plans[0].watch(target, bound)).run()
        self.state.update(running_here=False)
        return OCFCode.SUCCESS

    def action_migrate_from(self) -> OCFCode:
        """On the target: this resource's domain must have arrived and run here, within the deadline.

        The domain is found by the name the config file gives and, where the
        file is missing or names another domain on this node, by its identity
        tag: the answer is about the domain that arrived, whatever the file says.
        """
        from livemig.virt.incoming import await_incoming, describe_completed
        from livemig.virt.lifecycle import await_monitor_scripts, save_config

        source = self.env.meta.get("migrate_source") or ""
        if not source:
            raise ArgsError("migrate_from needs OCF_RESKEY_CRM_meta_migrate_source (set by Pacemaker)")
        values = self.params()
        name = self.domain_name(strict=False)
        found, stats = await_incoming(self, name, values, source)
        self.log.info("live migration of %s from %s completed: %s", found, source, describe_completed(stats))
        self.drbd_plan(self._arrived_xml(found, values)).check_arrived(source)
        await_monitor_scripts(self, values)
        if values["save_config_on_stop"] and not self.config_problem:
            save_config(self, found, values)
        self.adopt(found, name)
        self.state.update(running_here=True)
        if self.config_problem:
            # Said in that order: Pacemaker keeps 128 characters of a reason, and the path is the fix.
            self._add_notice(f"{found} arrived and runs here; config unreadable here: {self.config_problem}")
        elif found != name:
            self._add_notice(f"{found} arrived and runs here, but config here names {name}")
        return OCFCode.SUCCESS

    def _add_notice(self, text: str) -> None:
        self.notice = f"{self.notice}; {text}" if self.notice else text

    def _arrived_xml(self, found: str, values: Dict[str, Any]) -> Optional[str]:
        """The arrived domain's live XML; the config file's when libvirtd cannot give it (found in /proc)."""
        from livemig.domain_xml import ConfigUnreadable, DomainXMLError, load_domain_config
        from livemig.virt.lifecycle import live_domain_xml

        try:
            return live_domain_xml(self, found, values)
        except GenericError as exc:
            self.log.warning("%s; checking DRBD for the disks of the config file", exc)
        if self.config_problem:
            return None
        try:
            return load_domain_config(values["config"], self.fs_bound())[1]
        except (ConfigUnreadable, DomainXMLError):
            return None

    def action_status(self) -> OCFCode:
        return self.action_monitor()


def main() -> None:
    run(VirtualDomain)
