"""The resource's identity on this node: which domain is this resource's.

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

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from livemig.agents.virtualdomain.context import AgentContext
from livemig.files import FileUnreadable, stat_file
from livemig.ocf.errors import ConfigurationError, GenericError, NotInstalledError

if TYPE_CHECKING:
    from livemig.domain_xml import DomainConfig


class ResourceIdentity:
    """The names this resource's domain has and had here, and what the config file says."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent
        self.state = agent.state
        #: why the config file could not be read in this action (None: it was, or was not tried)
        self.problem: Optional[str] = None

    def config_identity(self, path: str) -> Optional[List[int]]:
        if self.problem:
            return None
        try:
            st = stat_file(path, self.agent.fs_bound())
        except FileUnreadable as exc:
            self.problem = str(exc)
            return None
        if st is None:
            return None
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]

    def load(self, path: str) -> Tuple[DomainConfig, str]:
        """The parsed config file (ConfigUnreadable / DomainXMLError), never blocked past the bound."""
        from livemig.domain_xml import ConfigUnreadable, load_domain_config

        if self.problem:
            raise ConfigUnreadable(self.problem)
        try:
            return load_domain_config(path, self.agent.fs_bound())
        except ConfigUnreadable as exc:
            self.problem = str(exc)
            raise

    def domain_name(self, *, strict: bool) -> Optional[str]:
        """The domain name from the config file, or the remembered one.

        ``strict`` (start, validate): the file must be readable and valid.
        Otherwise (monitor, stop, migrations) the remembered name is used when
        the file cannot be read; None when there is nothing to go on (then the
        identity tag is what finds the domain).
        """
        path = self.agent.params(lenient=not strict)["config"]
        cached = self.state.load()
        ident = self.config_identity(path)
        if not strict and ident is not None and cached.get("config") == path \
                and cached.get("config_identity") == ident and cached.get("name"):
            return str(cached["name"])  # the steady-state monitor: no XML parsed, lxml not imported
        if strict:
            return self.load_config()[0].name
        from livemig.domain_xml import ConfigUnreadable, DomainXMLError

        try:
            cfg, _ = self.load(path)
        except ConfigUnreadable as exc:
            return self.remembered_name(cached, path, f"configuration file unreadable: {exc}")
        except DomainXMLError as exc:
            self.problem = str(exc)
            return self.remembered_name(cached, path, str(exc))
        self.remember(cfg.name, path, ident)
        return cfg.name

    def load_config(self) -> Tuple[DomainConfig, str]:
        """(domain config, XML text) from the config file; codes 5 / 6 when unusable, 1 when it hangs."""
        from livemig.domain_xml import ConfigUnreadable, DomainXMLError

        path = self.agent.params()["config"]
        try:
            cfg, text = self.load(path)
        except ConfigUnreadable as exc:
            if exc.timed_out:
                raise GenericError(f"configuration file unreadable: {exc}") from None
            raise NotInstalledError(f"configuration file unreadable: {exc}") from None
        except DomainXMLError as exc:
            raise ConfigurationError(str(exc)) from None
        self.remember(cfg.name, path)
        return cfg, text

    def remembered_name(self, cached: Dict[str, Any], path: str, problem: str) -> Optional[str]:
        name = cached.get("name") if cached.get("config") == path else None
        if name:
            self.agent.log.warning("%s; using the remembered domain name %s", problem, name)
            return str(name)
        self.agent.log.warning("%s, and no domain name is remembered for this resource", problem)
        return None

    def remember(self, name: str, path: Optional[str] = None, ident: Optional[List[int]] = None) -> None:
        """Remember ``name`` as this resource's domain.

        A different name remembered before (the config file now names another
        domain, or ``config`` points at another file) is kept in
        ``earlier_names`` until a stop has made sure that domain is gone: it
        may still run, and must neither be forgotten nor run beside the new one.
        """
        path = path or self.agent.params(lenient=True)["config"]
        if ident is None:
            ident = self.config_identity(path)
        data = self.state.load()
        earlier = self.earlier_names(data, name)
        old = data.get("name")
        if isinstance(old, str) and old and old != name and old not in earlier:
            self.agent.log.warning("config %s now names domain %s; %s, remembered for this resource, is kept "
                             "in mind until a stop", path, name, old)
            earlier.append(old)
        if data.get("name") != name or data.get("config") != path or data.get("config_identity") != ident \
                or (data.get("earlier_names") or []) != earlier:
            data.update(name=name, config=path, config_identity=ident, earlier_names=earlier)
            if not self.state.save(data):
                self.agent.log.debug("could not write %s", self.state.path)

    def earlier_names(self, data: Optional[Dict[str, Any]] = None, current: Optional[str] = None) -> List[str]:
        """Names this resource's domain had before the current one, possibly still running here."""
        data = self.state.load() if data is None else data
        names = data.get("earlier_names")
        if not isinstance(names, list):
            return []
        return [n for n in names if isinstance(n, str) and n and n != current]

    def forget_earlier_names(self, keep: List[str]) -> None:
        data = self.state.load()
        if data.get("earlier_names"):
            data["earlier_names"] = keep
            self.state.save(data)

    def adopt(self, found: str, name: Optional[str]) -> None:
        """``found`` runs here as this resource's domain, though the config names ``name`` (or nothing)."""
        if found == name:
            return
        if name is None or self.problem:
            self.remember(found)  # the config cannot be read: the running domain is the one to remember
            return
        data = self.state.load()
        earlier = self.earlier_names(data, name)
        if found not in earlier:
            data["earlier_names"] = [*earlier, found]  # stop makes sure it is gone too
            self.state.save(data)

