"""ocf:livemig:VirtualDomain: the agent, one method per action; each decision in one module.

=============  ======================================================================
dispatch       :class:`VirtualDomain` (codes: virt/'s errors are answered in ``handler``)
parameters     :mod:`.params` (typed, combinations, what the node must have)
identity       :mod:`.identity` (which domain is this resource's: state file, tag)
start          :mod:`.start`
stop           :mod:`.stop`
monitor        :mod:`.monitor` (and the questions stop and migrate_to ask)
migrate_to     :mod:`.migrate_to` (the DRBD guard, then the migration's phases)
migrate_from   :mod:`livemig.virt.incoming` (the wait), then the checks here
DRBD policy    :mod:`.drbd` (which resources, which check in which action)
meta-data      :mod:`.metadata`
=============  ======================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from livemig.agents.virtualdomain.context import FS_BOUND
from livemig.agents.virtualdomain.identity import ResourceIdentity
from livemig.agents.virtualdomain.metadata import METADATA
from livemig.agents.virtualdomain.params import check_local_files, read_params
from livemig.ocf.agent import ResourceAgent, run
from livemig.ocf.codes import OCFCode
from livemig.ocf.errors import ArgsError, ConfigurationError, GenericError, NotInstalledError
from livemig.ocf.statefile import StateFile
from livemig.run import CommandRunner
from livemig.virt.errors import InvalidSetting, OperationFailed

if TYPE_CHECKING:
    from livemig.agents.virtualdomain.drbd import DrbdPolicy



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
        self.identity = ResourceIdentity(self)

    def fs_bound(self) -> float:
        """The bound for one file-system call, within the deadline: on an NFS, GFS2, OCFS2 or FUSE mount
        that stopped answering, the remembered identity answers instead."""
        return self.deadline.bound(min(FS_BOUND, max(0.5, self.deadline.remaining() * 0.2)))

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
        """Typed parameters (:mod:`.params`), read once per action. ``lenient`` (stop): a bad value falls
        back to its default."""
        if self._params is None:
            self._params = read_params(self, lenient)
        return self._params

    @property
    def config_problem(self) -> Optional[str]:
        """Why the config file could not be read in this action (None: it was, or was not tried)."""
        return self.identity.problem

    def drbd_policy(self, xml_text: Optional[str]) -> DrbdPolicy:
        from livemig.agents.virtualdomain.drbd import DrbdPolicy

        marker = self.state.path[: -len(".json")] + "-window.json"
        return DrbdPolicy(self.params(), xml_text, self.runner, self.deadline, self.log, marker_path=marker)

    def refuse_if_other_domain_runs(self, name: str, values: Dict[str, Any], action: str) -> None:
        """GenericError when another domain of this resource (an earlier name, or tagged) runs here."""
        from livemig.agents.virtualdomain.monitor import domain_is_running, owned_domains

        others = [n for n in self.identity.earlier_names(current=name) if domain_is_running(self, n, values)]
        others += [n for n in owned_domains(self, values) if n != name and n not in others]
        if others:
            raise GenericError(
                f"{action}: domain {others[0]} of this resource still runs here but config names {name}; stop the "
                "resource (it stops both) before changing the domain's name")

    # -- actions -----------------------------------------------------------------------------

    def action_validate_all(self) -> OCFCode:
        values = self.params()
        cfg, _ = self.identity.load_config()  # the disks are checked too (backingfile's overlay)
        check_local_files(self, values, cfg.disks)
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
        from livemig.agents.virtualdomain.start import start_domain

        values = self.params()
        cfg, xml_text = self.identity.load_config()
        check_local_files(self, values, cfg.disks)
        self.refuse_if_other_domain_runs(cfg.name, values, "start")
        drbd = self.drbd_policy(xml_text)
        drbd.check_start()
        if drbd.window_mode:
            self.state.update(drbd_resources=drbd.resources)  # what stop makes Secondary again
        start_domain(self, cfg, xml_text, values)
        self.identity.remember(cfg.name)
        self.state.update(running_here=True)
        return OCFCode.SUCCESS

    def action_stop(self) -> OCFCode:
        """Success means that no domain of this resource runs on this node any more."""
        from livemig.agents.virtualdomain.monitor import owned_domains
        from livemig.agents.virtualdomain.stop import stop_domain

        values = self.params(lenient=True)
        name = self.identity.domain_name(strict=False)
        earlier = self.identity.earlier_names(current=name)
        tagged = [n for n in owned_domains(self, values) if n != name and n not in earlier]
        for old in earlier + tagged:
            # The config named another domain before, or names another domain on this node.
            self.log.info("stopping %s, a domain of this resource (config names %s)", old, name)
            stop_domain(self, old, values)
        if earlier:
            self.identity.forget_earlier_names([])
        if name is None:
            if tagged:
                return OCFCode.SUCCESS
            return self._stop_unknown_domain(values)
        stop_domain(self, name, values)
        if self.state.load().get("running_here"):
            self.state.update(running_here=False)
        if (values.get("drbd_two_primaries") or "always") == "migration":
            self._release_drbd(values)
        return OCFCode.SUCCESS

    def _release_drbd(self, values: Dict[str, Any]) -> None:
        """drbd_two_primaries=migration: the domain is gone; its DRBD resources Secondary here again."""
        remembered = self.state.load().get("drbd_resources")
        xml_text = None
        if not isinstance(remembered, list) or not remembered:
            try:
                xml_text = self.identity.load_config()[1]
            except (GenericError, ConfigurationError, NotInstalledError) as exc:
                self.log.warning("stop: the config is unreadable (%s): only drbd_resources are made Secondary", exc)
        drbd = self.drbd_policy(xml_text)
        if isinstance(remembered, list):
            drbd.resources = list(dict.fromkeys(drbd.resources + [str(r) for r in remembered]))
            drbd.detection_error = None
        drbd.release_after_stop()
        self.state.update(drbd_resources=[])

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
        from livemig.agents.virtualdomain.monitor import domain_is_running

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
        from livemig.agents.virtualdomain.monitor import live_domain_xml, monitor_domain

        values = self.params()
        name = self.identity.domain_name(strict=False)
        code, found = monitor_domain(self, name, values, self.identity.earlier_names(current=name))
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
            self.identity.adopt(found, name)
        if code == OCFCode.SUCCESS and self.env.check_level >= 10 and not self.env.is_probe and found:
            self.drbd_policy(live_domain_xml(self, found, values)).check_monitor()
        return code

    def _running_name(self, values: Dict[str, Any]) -> str:
        """The name of this resource's domain running here (for migrate_to), the config file readable or not."""
        from livemig.agents.virtualdomain.monitor import owned_domains

        name = self.identity.domain_name(strict=False)
        if name is None:
            tagged = owned_domains(self, values)
            if len(tagged) != 1:
                runs = f"{len(tagged)} domains of this resource run here" if tagged else \
                    "no domain of this resource runs here"
                raise GenericError(f"cannot migrate: {runs}, and its config is unreadable: {self.config_problem}")
            name = tagged[0]
            self.identity.remember(name)
        if self.config_problem:
            self.log.warning("config %s is unreadable here (%s): migrating %s from its running definition",
                             values["config"], self.config_problem, name)
        return name

    def action_migrate_to(self) -> OCFCode:
        """Live-migrate to Pacemaker's target: the DRBD guard first, then the migration's phases."""
        from livemig.agents.virtualdomain.migrate_to import LiveMigration

        target = self.env.meta.get("migrate_target") or ""
        if not target:
            raise ArgsError("migrate_to needs OCF_RESKEY_CRM_meta_migrate_target (set by Pacemaker)")
        values = self.params()
        name = self._running_name(values)
        self.refuse_if_other_domain_runs(name, values, "migrate_to")
        LiveMigration(self, name, values, target).run()
        self.state.update(running_here=False)
        return OCFCode.SUCCESS

    def action_migrate_from(self) -> OCFCode:
        """On the target: this resource's domain must have arrived and run here, within the deadline.

        The domain is found by the name the config file gives and, where the
        file is missing or names another domain on this node, by its identity
        tag: the answer is about the domain that arrived, whatever the file says.
        """
        from livemig.agents.virtualdomain.monitor import await_monitor_scripts
        from livemig.agents.virtualdomain.stop import save_config
        from livemig.virt.incoming import await_incoming, describe_completed

        source = self.env.meta.get("migrate_source") or ""
        if not source:
            raise ArgsError("migrate_from needs OCF_RESKEY_CRM_meta_migrate_source (set by Pacemaker)")
        values = self.params()
        name = self.identity.domain_name(strict=False)
        found, stats = await_incoming(self, name, values, source)
        self.log.info("live migration of %s from %s completed: %s", found, source, describe_completed(stats))
        drbd = self.drbd_policy(self._arrived_xml(found, values))
        drbd.check_arrived(source)
        if drbd.window_mode:
            self.state.update(drbd_resources=drbd.resources)
        await_monitor_scripts(self, values)
        if values["save_config_on_stop"] and not self.config_problem:
            save_config(self, found, values)
        self.identity.adopt(found, name)
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
        from livemig.agents.virtualdomain.monitor import live_domain_xml
        from livemig.domain_xml import ConfigUnreadable, DomainXMLError, load_domain_config

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
