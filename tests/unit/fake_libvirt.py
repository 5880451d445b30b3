"""A scripted stand-in for the libvirt module, for unit tests of the virt layer.

Only what livemig calls is modelled. Domains live in a dict shared by every
connection of one FakeLibvirt instance; tests script state changes and
misbehaviour (a hanging call, an error code) per method.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_NO_CONNECT = 5
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTOFF = 5
VIR_DOMAIN_XML_SECURE = 1
VIR_DOMAIN_XML_INACTIVE = 2
VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = 1
VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = 2
VIR_DOMAIN_UNDEFINE_KEEP_NVRAM = 8
VIR_DOMAIN_UNDEFINE_KEEP_TPM = 64
VIR_ERR_NO_DOMAIN_METADATA = 80
VIR_DOMAIN_METADATA_ELEMENT = 2
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
VIR_ERR_OPERATION_INVALID = 55
VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION = 20
VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0
VIR_MIGRATE_POSTCOPY = 32768
VIR_DOMAIN_PAUSED_MIGRATION = 2
VIR_DOMAIN_PAUSED_POSTCOPY = 12
#: what the fake's event loop waits on: never set (events are dispatched by the thread that causes them)
_IDLE = threading.Event()


class libvirtError(Exception):  # noqa: N801 - mirrors libvirt's name
    def __init__(self, msg: str, code: int = VIR_ERR_OPERATION_FAILED) -> None:
        super().__init__(msg)
        self.code = code

    def get_error_code(self) -> int:
        return self.code

    def get_error_message(self) -> str:
        return str(self)


class FakeDomain:
    def __init__(self, world: FakeLibvirt, name: str, xml: str, persistent: bool) -> None:
        self.world = world
        self.dname = name
        self.xml = xml
        self.persistent = persistent
        self.state_ = (1, 1)  # running, booted
        self.vcpus = 2
        self.max_kib = 131072
        self.ignores_shutdown = False
        self.managed_save = False
        self.snapshots = 0
        #: flags this (older) libvirtd rejects as unsupported
        self.unsupported_flags = 0
        #: the persistent definition, when it differs from the live one (``xml``)
        self.config_xml: Optional[str] = None

    def name(self) -> str:
        return self.dname

    def metadata(self, kind: int, uri: str, flags: int = 0) -> str:
        self.world.hook("metadata")
        self._gone()
        from lxml import etree

        root = etree.fromstring(self.xml.encode())
        for el in root.findall("metadata/*"):
            if etree.QName(el).namespace == uri:
                return etree.tostring(el, encoding="unicode")
        raise libvirtError("metadata not found: Requested metadata element is not present",
                           VIR_ERR_NO_DOMAIN_METADATA)

    def setMetadata(self, kind: int, element: str, key: str, uri: str, flags: int = 0) -> int:  # noqa: N802
        from lxml import etree

        self.world.calls.append(("setMetadata", self.dname, key, uri))
        root = etree.fromstring(self.xml.encode())
        meta = root.find("metadata")
        if meta is None:
            meta = etree.SubElement(root, "metadata")
        for el in meta.findall(f"{{{uri}}}*"):
            meta.remove(el)
        new = etree.fromstring(element.encode())
        tagged = etree.SubElement(meta, f"{{{uri}}}{new.tag}", nsmap={key: uri})
        for attr, value in new.attrib.items():
            tagged.set(attr, value)
        self.xml = etree.tostring(root, encoding="unicode")
        return 0

    def hasManagedSaveImage(self, flags: int = 0) -> int:  # noqa: N802
        return int(self.managed_save)

    def snapshotNum(self, flags: int = 0) -> int:  # noqa: N802
        return self.snapshots

    def _gone(self) -> None:
        if self.world.domains.get(self.dname) is not self:
            raise libvirtError(f"Domain not found: {self.dname}", VIR_ERR_NO_DOMAIN)

    def state(self) -> Tuple[int, int]:
        self.world.hook("state")
        self._gone()
        return self.state_

    def info(self) -> List[int]:
        self._gone()
        return [self.state_[0], self.max_kib, self.max_kib, self.vcpus, 0]

    def isPersistent(self) -> int:  # noqa: N802
        self._gone()  # as libvirt: a destroyed transient domain is no domain
        return int(self.persistent)

    def undefineFlags(self, flags: int) -> int:  # noqa: N802
        self.world.calls.append(("undefine", self.dname, flags))
        if flags & self.unsupported_flags:
            raise libvirtError(f"unsupported flags ({flags & self.unsupported_flags:#x}) in function "
                               "qemuDomainUndefineFlags", 8)
        if self.managed_save and not flags & VIR_DOMAIN_UNDEFINE_MANAGED_SAVE:
            raise libvirtError("Requested operation is not valid: Refusing to undefine while domain "
                               "managed save image exists", 55)
        if self.snapshots and not flags & VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA:
            raise libvirtError(f"Requested operation is not valid: cannot delete inactive domain with "
                               f"{self.snapshots} snapshots", 55)
        self.persistent = False
        if self.state_[0] == VIR_DOMAIN_SHUTOFF:
            del self.world.domains[self.dname]
        return 0

    def shutdownFlags(self, flags: int) -> int:  # noqa: N802
        self.world.hook("shutdown")
        self.world.calls.append(("shutdown", self.dname, flags))
        if not self.ignores_shutdown:
            self._off()
        return 0

    def destroy(self) -> int:
        self.world.hook("destroy")
        self.world.calls.append(("destroy", self.dname))
        self._off()
        return 0

    def save(self, path: str) -> int:
        self.world.calls.append(("save", self.dname, path))
        self.job = 3  # VIR_DOMAIN_JOB_UNBOUNDED for the save
        try:
            self.world.hook("save")  # a slow save: the hook blocks
            if self.world.aborted.is_set():
                raise libvirtError("operation aborted: job 'domain save' canceled by client", 1)
        finally:
            self.job = 0
        with open(path, "w") as fh:
            fh.write(self.xml)
        self._off()
        return 0

    def XMLDesc(self, flags: int) -> str:  # noqa: N802
        if flags & VIR_DOMAIN_XML_INACTIVE and self.config_xml is not None:
            return self.config_xml
        return self.xml

    # -- migration: the script lives in world.migration ------------------------------------

    def migrateToURI3(self, uri: str, params: Dict[str, Any], flags: int) -> int:  # noqa: N802
        """Scripted by world.migration: ``duration`` (s), ``error``, ``iterations`` [(s, n), ...]: the
        migration-iteration events sent to the callbacks registered for this domain (from this thread, as
        libvirt's event loop would), ``paused_at_pass``: the vCPUs stopped for the switch-over as event 2 is
        sent (QEMU completing right after the first pass), ``postcopy_seconds``: how long post-copy runs."""
        m = self.world.migration
        self.world.calls.append(("migrate", self.dname, uri, dict(params), flags))
        if callable(m.get("prepare")):
            m["prepare"]()  # the target's libvirt hook, "migrate begin" (it may raise libvirtError)
        self.job = 2  # VIR_DOMAIN_JOB_UNBOUNDED
        moved_ok = False
        self.job_flags = flags
        self.world.job_ended.clear()
        try:
            begun = time.monotonic()
            deadline = begun + m.get("duration", 0.0)
            events = sorted(m.get("iterations", []))
            while time.monotonic() < deadline:
                while events and time.monotonic() - begun >= events[0][0]:
                    iteration = events.pop(0)[1]
                    if iteration >= 2 and m.get("paused_at_pass"):
                        self.state_ = (VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION)
                    self.world.emit(self, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, iteration)
                if self.world.aborted.wait(0.05):
                    raise libvirtError("operation aborted: migration out job: canceled by client", 1)
                if self.world.complete_now.is_set():
                    break
                if self.world.postcopy_started.is_set() and m.get("postcopy_finishes", True):
                    deadline = min(deadline, self.world.postcopy_at + m.get("postcopy_seconds", 0.3))
                if self.state_ == (VIR_DOMAIN_PAUSED, 1) and m.get("suspend_finishes", True):
                    break  # a suspended guest dirties no memory: the migration converges
            if m.get("error"):
                raise libvirtError(m["error"], VIR_ERR_OPERATION_FAILED)
            moved_ok = True
        finally:
            self.job = 0
            if not moved_ok and callable(m.get("release")):
                m["release"]()  # the target's incoming QEMU ended: its hook, "release end"
            self.world.job_ended.set()
        host = uri.split("//", 1)[1].split("/", 1)[0].split("@")[-1].split(":")[0]
        peer = self.world.peers.get(host)
        if peer is not None and (host in self.world.unreachable_hosts or peer.open_error is not None):
            raise libvirtError(f"unable to connect to server at '{host}:16509': Connection refused", 38)
        del self.world.domains[self.dname]
        if peer is not None:  # a two-node world: the domain, with its XML and tag, now lives on the peer
            moved = FakeDomain(peer, self.dname, self.xml, persistent=bool(flags & 8))
            peer.domains[self.dname] = moved
        else:
            moved = FakeDomain(self.world, self.dname, self.xml, persistent=bool(flags & 8))
            self.world.hosts.setdefault(host, {})[self.dname] = moved
        moved.completed = {"time_elapsed": 1234, "downtime": 42, "data_processed": 150 * 1024 * 1024}
        return 0

    def jobInfo(self) -> List[int]:  # noqa: N802
        self.world.hook("jobInfo")
        return [getattr(self, "job", 0)] + [0] * 11

    def jobStats(self, flags: int = 0) -> Dict[str, Any]:  # noqa: N802
        self.world.hook("jobStats")
        if flags & 1:
            return dict(getattr(self, "completed", {}))
        if not getattr(self, "job", 0):
            return {"type": 0}
        iteration = self.world.migration.get("iteration", 3)
        if callable(iteration):
            iteration = iteration()
        return {"type": 2, "data_processed": 64 * 1024 * 1024, "data_remaining": 32 * 1024 * 1024,
                "memory_dirty_rate": 2560, "memory_page_size": 4096, "memory_iteration": iteration, "downtime": 300}

    def abortJob(self) -> int:  # noqa: N802
        self.world.calls.append(("abortJob", self.dname))
        self.world.aborted.set()
        return 0

    def migrateSetMaxDowntime(self, ms: int, flags: int) -> int:  # noqa: N802
        self.world.calls.append(("downtime", self.dname, ms))
        return 0

    def suspend(self) -> int:
        self.world.calls.append(("suspend", self.dname))
        self._gone()
        self.state_ = (VIR_DOMAIN_PAUSED, 1)  # VIR_DOMAIN_PAUSED_USER
        return 0

    def resume(self) -> int:
        self.world.calls.append(("resume", self.dname))
        self._gone()
        self.state_ = (VIR_DOMAIN_RUNNING, 1)
        return 0

    def migrateStartPostCopy(self, flags: int) -> int:  # noqa: N802
        """As qemuDomainMigrateStartPostCopy answers; world.migration ``postcopy_error`` (code, message): QEMU's
        refusal; ``postcopy_completes_first``: the job completes (pre-copy) as the request arrives;
        ``postcopy_ignored``: accepted, but QEMU completes in pre-copy anyway."""
        m = self.world.migration
        self.world.calls.append(("postcopy", self.dname))
        if m.get("postcopy_completes_first"):
            self.world.complete_now.set()
            self.world.job_ended.wait(5)
        if m.get("postcopy_error"):
            code, message = m["postcopy_error"]
            raise libvirtError(message, code)
        self._gone()
        if self.state_[0] == VIR_DOMAIN_SHUTOFF:
            raise libvirtError("Requested operation is not valid: domain is not running", VIR_ERR_OPERATION_INVALID)
        if not getattr(self, "job", 0):
            raise libvirtError("Requested operation is not valid: post-copy can only be started while outgoing "
                               "migration is in progress", VIR_ERR_OPERATION_INVALID)
        if not getattr(self, "job_flags", 0) & VIR_MIGRATE_POSTCOPY:
            raise libvirtError("Requested operation is not valid: switching to post-copy requires migration to be "
                               "started with VIR_MIGRATE_POSTCOPY flag", VIR_ERR_OPERATION_INVALID)
        if not m.get("postcopy_ignored"):
            self.state_ = (VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_POSTCOPY)  # libvirt: on QEMU's postcopy-active
            self.world.postcopy_at = time.monotonic()
            self.world.postcopy_started.set()
            self.world.emit(self, VIR_DOMAIN_EVENT_ID_LIFECYCLE, 3, 7)  # SUSPENDED, SUSPENDED_POSTCOPY
        return 0

    def _off(self) -> None:
        if self.persistent:
            self.state_ = (VIR_DOMAIN_SHUTOFF, 1)
        else:
            self.world.domains.pop(self.dname, None)


class FakeConnection:
    def __init__(self, world: FakeLibvirt, host: str = "", uri: str = "qemu:///system") -> None:
        self.world = world
        self.host = host
        self.uri = uri

    def getURI(self) -> str:  # noqa: N802
        return self.uri

    def listAllDomains(self, flags: int = 0) -> List[FakeDomain]:  # noqa: N802
        self.world.hook("list")
        found = list(self.world.hosts.setdefault(self.host, {}).values())
        if flags & VIR_CONNECT_LIST_DOMAINS_ACTIVE:
            found = [d for d in found if d.state_[0] != VIR_DOMAIN_SHUTOFF]
        return found

    def lookupByName(self, name: str) -> FakeDomain:  # noqa: N802
        self.world.hook("lookup")
        try:
            return self.world.hosts.setdefault(self.host, {})[name]
        except KeyError:
            raise libvirtError(f"Domain not found: no domain with matching name '{name}'", VIR_ERR_NO_DOMAIN) from None

    def createXML(self, xml: str, flags: int) -> FakeDomain:  # noqa: N802
        from lxml import etree

        self.world.hook("create")
        name = etree.fromstring(xml.encode()).findtext("name")
        assert name
        if name in self.world.domains:
            raise libvirtError(f"domain '{name}' already exists", VIR_ERR_OPERATION_FAILED)
        dom = FakeDomain(self.world, name, xml, persistent=False)
        self.world.domains[name] = dom
        self.world.calls.append(("create", name))
        return dom

    def restore(self, path: str) -> int:
        from lxml import etree

        with open(path) as fh:
            xml = fh.read()
        name = etree.fromstring(xml.encode()).findtext("name") or ""
        self.world.domains[name] = FakeDomain(self.world, name, xml, persistent=False)
        self.world.calls.append(("restore", name, path))
        return 0

    def domainEventRegisterAny(self, dom: Optional[FakeDomain], event_id: int, cb: Callable[..., Any],  # noqa: N802
                               opaque: Any) -> int:
        self.world.hook("eventRegister")
        self.world.calls.append(("eventRegister", event_id))
        self.world.next_callback += 1
        self.world.callbacks[self.world.next_callback] = (self, dom, event_id, cb, opaque)
        return self.world.next_callback

    def domainEventDeregisterAny(self, callback_id: int) -> int:  # noqa: N802
        self.world.calls.append(("eventDeregister", callback_id))
        if self.world.callbacks.pop(callback_id, None) is None:
            raise libvirtError(f"could not find event callback {callback_id} for deletion", 65)
        return 0

    def close(self) -> int:
        return 0


class FakeLibvirt:
    """Use as the ``libvirt`` module: ``monkeypatch`` livemig.virt.connection.quiet_libvirt."""

    libvirtError = libvirtError  # noqa: N815 - mirrors the libvirt module
    VIR_ERR_NO_DOMAIN = VIR_ERR_NO_DOMAIN
    VIR_DOMAIN_SHUTOFF = VIR_DOMAIN_SHUTOFF
    VIR_DOMAIN_XML_SECURE = VIR_DOMAIN_XML_SECURE
    VIR_DOMAIN_XML_INACTIVE = VIR_DOMAIN_XML_INACTIVE
    VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    VIR_DOMAIN_UNDEFINE_KEEP_NVRAM = VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
    VIR_DOMAIN_UNDEFINE_KEEP_TPM = VIR_DOMAIN_UNDEFINE_KEEP_TPM
    VIR_CONNECT_LIST_DOMAINS_ACTIVE = VIR_CONNECT_LIST_DOMAINS_ACTIVE

    def __init__(self) -> None:
        self.hosts: Dict[str, Dict[str, FakeDomain]] = {"": {}}
        self.domains: Dict[str, FakeDomain] = self.hosts[""]
        self.migration: Dict[str, Any] = {}
        self.aborted = threading.Event()
        self.postcopy_started = threading.Event()
        self.unreachable_hosts: set = set()
        self.calls: List[Tuple[Any, ...]] = []
        self.hooks: Dict[str, Callable[[], None]] = {}
        self.open_error: Optional[libvirtError] = None
        self.hang = threading.Event()  # set() to make hooked calls block
        self.released = threading.Event()
        #: other nodes' worlds by host name: a migration to one moves the domain into it
        self.peers: Dict[str, FakeLibvirt] = {}
        #: registered domain event callbacks: id -> (connection, domain or None, event id, callback, opaque)
        self.callbacks: Dict[int, Tuple[Any, ...]] = {}
        self.next_callback = 0
        self.complete_now = threading.Event()
        self.job_ended = threading.Event()
        self.postcopy_at = 0.0

    # libvirt's default event loop: registered, and idle (the fake dispatches from the thread causing an event)
    def virEventRegisterDefaultImpl(self) -> int:  # noqa: N802
        return 0

    def virEventRunDefaultImpl(self) -> int:  # noqa: N802
        _IDLE.wait(60)
        return 0

    def emit(self, dom: FakeDomain, event_id: int, *args: Any) -> None:
        """Deliver a domain event to the callbacks registered for it (for ``dom``, or for every domain)."""
        for conn, only, wanted, cb, opaque in list(self.callbacks.values()):
            if wanted == event_id and (only is None or only is dom):
                cb(conn, dom, *args, opaque)

    def hook(self, what: str) -> None:
        fn = self.hooks.get(what)
        if fn is not None:
            fn()

    def block_forever(self) -> None:
        self.released.wait(30)

    def open(self, uri: Optional[str]) -> FakeConnection:
        self.hook("open")
        self.calls.append(("open", uri))
        if uri is not None and "://" not in uri:
            raise libvirtError(f"no connection driver available for {uri}", VIR_ERR_NO_CONNECT)
        host = ""
        if uri and "//" in uri:
            host = uri.split("//", 1)[1].split("/", 1)[0].split("@")[-1].split(":")[0]
        if host in self.peers and host not in self.unreachable_hosts:
            peer = self.peers[host]
            if peer.open_error is not None:
                raise peer.open_error
            return FakeConnection(peer, "", uri or "qemu:///system")
        if host in self.unreachable_hosts:
            raise libvirtError(f"unable to connect to server at '{host}:16509': Connection refused", 38)
        if self.open_error is not None and not host:
            raise self.open_error
        return FakeConnection(self, host, uri or "qemu:///system")

    def add(self, name: str, xml: str = "", persistent: bool = False,
            state: Tuple[int, int] = (1, 1)) -> FakeDomain:
        dom = FakeDomain(self, name, xml or f"<domain><name>{name}</name></domain>", persistent)
        dom.state_ = state
        self.domains[name] = dom
        return dom
