"""A bounded connection to one hypervisor, and the few calls the agent makes.

Every method takes its bound from the operation :class:`Deadline` (capped by
``call_cap`` seconds). libvirt errors are compared by code, never by message.
Once a short call has timed out, the connection is considered stuck: further
calls fail at once instead of queueing behind the stuck one. Two kinds of call
are exempt: the long jobs (create, restore, save), which take as long as the
guest needs and are bounded by the caller's deadline instead (their timeout is
:class:`JobTimeout`: the job is still running, libvirtd is not stuck), and
:meth:`Hypervisor.abort_job`, which is always sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple, TypeVar

from livemig.bounded import CallTimeout, bounded_call
from livemig.ocf.deadline import Deadline
from livemig.ocf.logs import get_logger
from livemig.virt.bounded import BackgroundCall

log = get_logger("livemig")
T = TypeVar("T")

_handler_registered = False
_event_loop_lock = threading.Lock()
#: the libvirt modules whose default event loop runs (one per process; a test's fake module is another one)
_event_loops: Set[int] = set()

#: virDomainEventID VIR_DOMAIN_EVENT_ID_LIFECYCLE (stable ABI)
EVENT_ID_LIFECYCLE = 0
#: virDomainEventID VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION (stable ABI, libvirt >= 1.3.2)
EVENT_ID_MIGRATION_ITERATION = 20
#: virDomainEventType VIR_DOMAIN_EVENT_SUSPENDED, with the details VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY and
#: ..._POSTCOPY_FAILED: the source's domain paused because its migration entered post-copy (stable ABI)
EVENT_SUSPENDED = 3
EVENT_SUSPENDED_POSTCOPY = (7, 8)
#: virErrorNumber VIR_ERR_OPERATION_INVALID: "Requested operation is not valid: ..." (stable ABI)
ERR_OPERATION_INVALID = 55
#: Stable ABI values used here, so that a binding without the constant still works.
METADATA_ELEMENT = 2  # VIR_DOMAIN_METADATA_ELEMENT
AFFECT_LIVE = 1  # VIR_DOMAIN_AFFECT_LIVE
ERR_NO_DOMAIN_METADATA = 80  # VIR_ERR_NO_DOMAIN_METADATA


def quiet_libvirt() -> Any:
    """Import libvirt and register an error handler so nothing reaches stderr."""
    global _handler_registered
    import libvirt

    if not _handler_registered:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _handler_registered = True
    return libvirt


def start_event_loop(libvirt: Any) -> bool:
    """Run libvirt's default event loop in a daemon thread, once per process.

    Must happen before a connection is opened for that connection to deliver
    events. False when this libvirt binding has no event loop (then callers poll).
    The thread blocks in poll(2) between events and costs nothing while idle;
    like every abandoned call, it never delays the agent's exit (``os._exit``).
    """
    with _event_loop_lock:
        if id(libvirt) in _event_loops:
            return True
        register = getattr(libvirt, "virEventRegisterDefaultImpl", None)
        run_once = getattr(libvirt, "virEventRunDefaultImpl", None)
        if register is None or run_once is None:
            return False
        try:
            register()
        except Exception as exc:  # noqa: BLE001 - no events: the caller polls instead
            log.debug("libvirt event loop unavailable: %s", exc)
            return False

        def loop() -> None:
            while True:
                try:
                    run_once()
                except Exception:  # noqa: BLE001 - keep the loop alive; never spin
                    time.sleep(0.1)

        threading.Thread(target=loop, name="libvirt:events", daemon=True).start()
        _event_loops.add(id(libvirt))
        return True


class HypervisorError(Exception):
    """A libvirt call failed; ``code`` is the libvirt error code (or None)."""

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code


class HypervisorUnreachable(HypervisorError):
    """The connection could not be opened, or libvirtd stopped answering."""


class JobTimeout(HypervisorError):
    """A long job (save, restore, create) did not finish within its bound; it may still be running."""


class DomainStatus(NamedTuple):
    state: int
    reason: int
    max_memory_kib: int = 0
    vcpus: int = 0


class Hypervisor:
    """``events=True``: lifecycle events wake :meth:`wait_for_change` (used while waiting for a
    domain to stop); without them, or when libvirt cannot deliver them, it sleeps its interval."""

    def __init__(self, uri: Optional[str], deadline: Deadline, call_cap: float = 30.0,
                 events: bool = False) -> None:
        self.uri = uri
        self.deadline = deadline
        self.call_cap = call_cap
        self._conn: Any = None
        self._stuck: Optional[str] = None
        self.libvirt = quiet_libvirt()
        self._events = events
        self._changed = threading.Event()
        self._watching: Optional[bool] = None  # None: not tried yet
        self._callback_ids: List[int] = []

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., T], *args: Any, cap: Optional[float] = None,
              job: bool = False, always: bool = False) -> T:
        """``fn(*args)`` bounded by ``cap`` (default ``call_cap``) and the deadline.

        ``job``: a long job whose timeout is :class:`JobTimeout` and leaves the
        connection usable (the abort of that job goes through it). ``always``:
        sent even on a connection marked stuck (an abort must reach libvirt).
        """
        if self._stuck and not always:
            raise HypervisorUnreachable(f"libvirtd at {self.describe()} stopped answering ({self._stuck})")
        bound = self.deadline.bound(cap if cap is not None else self.call_cap)
        try:
            return bounded_call(f"libvirt:{what}", bound, fn, *args)
        except CallTimeout as exc:
            if job:
                raise JobTimeout(f"{what} did not finish within {exc.seconds:.0f}s") from None
            self._stuck = str(exc)
            raise HypervisorUnreachable(f"libvirtd at {self.describe()}: {exc}") from None
        except self.libvirt.libvirtError as exc:
            raise HypervisorError(f"{what}: {exc.get_error_message() or exc}", exc.get_error_code()) from None

    def describe(self) -> str:
        return self.uri or "the default URI"

    def open(self, cap: Optional[float] = None) -> Hypervisor:
        if self._conn is None:
            if self._events and not start_event_loop(self.libvirt):
                self._events = False
            try:
                self._conn = self._call("connect", self.libvirt.open, self.uri, cap=cap)
            except HypervisorUnreachable:
                raise
            except HypervisorError as exc:
                raise HypervisorUnreachable(f"cannot connect to {self.describe()}: {exc}", exc.code) from None
        return self

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self.open()
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._stuck:
            for cb_id in self._callback_ids:
                try:
                    bounded_call("libvirt:domainEventDeregisterAny", self.deadline.bound(2.0),
                                 self._conn.domainEventDeregisterAny, cb_id)
                except Exception:  # noqa: BLE001 - closing is best effort
                    break
            self._callback_ids = []
            try:
                bounded_call("libvirt:close", self.deadline.bound(2.0), self._conn.close)
            except Exception:  # noqa: BLE001 # nosec B110 # closing is best effort
                pass
        self._conn = None

    # -- waiting for a domain to change ----------------------------------------------------

    def _on_lifecycle(self, _conn: Any, _dom: Any, _event: int, _detail: int, _opaque: Any) -> None:
        self._changed.set()

    def watch(self) -> bool:
        """Subscribe to this connection's domain lifecycle events (once); False when polling."""
        if self._watching is None:
            self._watching = False
            register = getattr(self.conn, "domainEventRegisterAny", None) if self._events else None
            if register is not None:
                try:
                    cb_id = self._call("domainEventRegisterAny", register, None, EVENT_ID_LIFECYCLE,
                                       self._on_lifecycle, None, cap=5.0)
                except HypervisorUnreachable:
                    raise
                except HypervisorError as exc:
                    log.debug("no lifecycle events from %s (%s): polling", self.describe(), exc)
                else:
                    self._callback_ids.append(int(cb_id))
                    self._watching = True
        return self._watching

    def mark(self) -> None:
        """Forget events seen so far: call before reading the state a wait depends on."""
        self._changed.clear()

    def wait_for_change(self, seconds: float) -> None:
        """Return when a lifecycle event arrived since :meth:`mark`, or after ``seconds``."""
        seconds = self.deadline.bound(seconds)
        if self._watching:
            self._changed.wait(seconds)
        else:
            time.sleep(seconds)

    def is_no_domain(self, exc: HypervisorError) -> bool:
        return bool(exc.code == self.libvirt.VIR_ERR_NO_DOMAIN)

    # -- domains ------------------------------------------------------------------------

    def lookup(self, name: str) -> Any:
        """The domain object, or None when no such domain exists."""
        try:
            return self._call("lookup", self.conn.lookupByName, name)
        except HypervisorError as exc:
            if self.is_no_domain(exc):
                return None
            raise

    def status(self, dom: Any) -> Optional[DomainStatus]:
        """State, reason, max memory and vCPUs; None if the domain vanished meanwhile."""
        try:
            state, reason = self._call("state", dom.state)
            if state in (self.libvirt.VIR_DOMAIN_SHUTOFF,):
                return DomainStatus(state, reason)
            info = self._call("info", dom.info)
        except HypervisorError as exc:
            if self.is_no_domain(exc):
                return None
            raise
        return DomainStatus(state, reason, max_memory_kib=int(info[1]), vcpus=int(info[3]))

    def domain_state(self, dom: Any, cap: float = 2.0) -> Optional[Tuple[int, int]]:
        """(state, reason) in one call; None if the domain vanished."""
        try:
            state, reason = self._call("state", dom.state, cap=cap)
        except HypervisorError as exc:
            if self.is_no_domain(exc):
                return None
            raise
        return (int(state), int(reason))

    def is_persistent(self, dom: Any) -> bool:
        return bool(self._call("isPersistent", dom.isPersistent))

    def domains(self, active_only: bool = False) -> List[Any]:
        """Every domain this libvirtd knows (only the active ones with ``active_only``)."""
        flags = getattr(self.libvirt, "VIR_CONNECT_LIST_DOMAINS_ACTIVE", 1) if active_only else 0
        return list(self._call("listAllDomains", self.conn.listAllDomains, flags))

    def metadata(self, dom: Any, namespace: str) -> Optional[str]:
        """The live ``<metadata>`` element of ``namespace``; None when the domain has none (or is gone)."""
        try:
            return str(self._call("metadata", dom.metadata, METADATA_ELEMENT, namespace, 0))
        except HypervisorError as exc:
            if exc.code == ERR_NO_DOMAIN_METADATA or self.is_no_domain(exc):
                return None
            raise

    def set_metadata(self, dom: Any, element: str, key: str, namespace: str) -> None:
        """Set the running domain's ``<metadata>`` element of ``namespace`` (live definition only)."""
        self._call("setMetadata", dom.setMetadata, METADATA_ELEMENT, element, key, namespace, AFFECT_LIVE)

    def create(self, xml: str, seconds: float) -> Any:
        """virDomainCreateXML, given ``seconds`` (QEMU may take long to set a large guest up)."""
        return self._call("create", self.conn.createXML, xml, 0, cap=seconds, job=True)

    def restore(self, path: str, seconds: float) -> None:
        self._call("restore", self.conn.restore, path, cap=seconds, job=True)

    def save(self, dom: Any, path: str, seconds: float) -> None:
        """virDomainSave, given ``seconds``; :class:`JobTimeout` while the save still runs."""
        self._call("save", dom.save, path, cap=seconds, job=True)

    def keeps_state(self, dom: Any) -> List[str]:
        """What undefining ``dom`` would throw away: its managed-save image, its snapshots."""
        kept = []
        if self._call("hasManagedSaveImage", dom.hasManagedSaveImage, 0):
            kept.append("a managed-save image")
        snapshots = int(self._call("snapshotNum", dom.snapshotNum, 0))
        if snapshots:
            kept.append(f"{snapshots} snapshot(s)")
        return kept

    def undefine(self, dom: Any) -> None:
        """Undefine, keeping NVRAM and TPM state; libvirt refuses while a managed save or snapshots exist."""
        lv = self.libvirt
        keep_nvram = getattr(lv, "VIR_DOMAIN_UNDEFINE_KEEP_NVRAM", 8)
        try:
            self._call("undefine", dom.undefineFlags, keep_nvram | getattr(lv, "VIR_DOMAIN_UNDEFINE_KEEP_TPM", 64))
        except HypervisorError as exc:
            # libvirtd before 8.9 knows no KEEP_TPM (and keeps TPM state anyway): unsupported flag.
            if exc.code != getattr(lv, "VIR_ERR_INVALID_ARG", 8):
                raise
            self._call("undefine", dom.undefineFlags, keep_nvram)

    def shutdown(self, dom: Any, flags: int) -> None:
        self._call("shutdown", dom.shutdownFlags, flags)

    def destroy(self, dom: Any) -> None:
        # libvirt sends SIGTERM, then SIGKILL after a grace period of its own.
        self._call("destroy", dom.destroy, cap=max(self.call_cap, 30.0))

    def xml_desc(self, dom: Any, inactive: bool = True) -> str:
        lv = self.libvirt
        flags = lv.VIR_DOMAIN_XML_SECURE | (lv.VIR_DOMAIN_XML_INACTIVE if inactive else 0)
        return str(self._call("XMLDesc", dom.XMLDesc, flags))

    def live_xml(self, dom: Any) -> str:
        """The running definition (hot-plugged devices included, secrets left out)."""
        return str(self._call("XMLDesc", dom.XMLDesc, 0))

    def start_network(self, name: str) -> bool:
        """Start a libvirt network if inactive; True if it was started."""
        net = self._call("networkLookupByName", self.conn.networkLookupByName, name)
        if self._call("network.isActive", net.isActive):
            return False
        self._call("network.create", net.create)
        return True

    def start_pool(self, name: str) -> bool:
        pool = self._call("storagePoolLookupByName", self.conn.storagePoolLookupByName, name)
        if self._call("pool.isActive", pool.isActive):
            return False
        self._call("pool.create", pool.create, 0)
        return True

    # -- migration ----------------------------------------------------------------------

    def actual_uri(self) -> str:
        """The URI libvirt actually connected to (what the default URI resolved to)."""
        return str(self._call("getURI", self.conn.getURI))

    def start_migration(self, dom: Any, dest_uri: str, params: Dict[str, Any], flags: int) -> BackgroundCall:
        """virDomainMigrateToURI3 in the background; the caller polls and may abort."""
        if self._stuck:
            raise HypervisorUnreachable(f"libvirtd at {self.describe()} stopped answering ({self._stuck})")
        return BackgroundCall("migrate", dom.migrateToURI3, dest_uri, params, flags).start()

    def migration_error(self, exc: BaseException) -> HypervisorError:
        if isinstance(exc, self.libvirt.libvirtError):
            return HypervisorError(exc.get_error_message() or str(exc), exc.get_error_code())
        if isinstance(exc, HypervisorError):
            return exc
        return HypervisorError(f"{type(exc).__name__}: {exc}")

    # A query about a running job that is slow to answer (QEMU's monitor is busy with the
    # migration) is a slow answer, not a stuck libvirtd: ``job=True`` keeps the connection
    # usable, so that the abort that may follow still goes through it.

    def job_type(self, dom: Any, cap: float = 5.0) -> int:
        return int(self._call("jobInfo", dom.jobInfo, cap=cap, job=True)[0])

    def job_stats(self, dom: Any, completed: bool = False, cap: float = 5.0) -> Dict[str, Any]:
        # VIR_DOMAIN_JOB_STATS_COMPLETED | KEEP_COMPLETED: reading them must not discard them
        # (the source reads the target's, then migrate_from reads them again).
        flags = 1 | 2 if completed else 0
        return dict(self._call("jobStats", dom.jobStats, flags, cap=cap, job=True))

    def abort_job(self, dom: Any, cap: float = 10.0) -> None:
        """virDomainAbortJob, sent whatever happened to earlier calls on this connection."""
        self._call("abortJob", dom.abortJob, cap=cap, job=True, always=True)

    def set_max_downtime(self, dom: Any, ms: int, cap: float = 5.0) -> None:
        self._call("migrateSetMaxDowntime", dom.migrateSetMaxDowntime, ms, 0, cap=cap, job=True)

    def suspend(self, dom: Any, cap: float = 5.0) -> None:
        self._call("suspend", dom.suspend, cap=cap)

    def resume(self, dom: Any, cap: float = 5.0) -> None:
        self._call("resume", dom.resume, cap=cap)

    def start_postcopy(self, dom: Any, cap: float = 5.0) -> None:
        self._call("migrateStartPostCopy", dom.migrateStartPostCopy, 0, cap=cap, job=True)

    def watch_domain(self, dom: Any, event_id: int, callback: Callable[..., None]) -> None:
        """Register for one of ``dom``'s events on this connection: ``callback(*details)`` runs in libvirt's
        event loop thread with the event's own arguments (MIGRATION_ITERATION: the iteration, which QEMU
        counts from 1 as each pass over memory begins; LIFECYCLE: event and detail). Needs a connection
        opened with ``events=True``; HypervisorError when libvirt cannot deliver the event. The
        registration ends with :meth:`close`."""
        if not self._events:
            raise HypervisorError("libvirt's event loop is not running for this connection")

        def on_event(_conn: Any, _dom: Any, *args: Any) -> None:
            callback(*args[:-1])  # the last one is the opaque value

        cb_id = self._call("domainEventRegisterAny", self.conn.domainEventRegisterAny, dom, event_id, on_event,
                           None, cap=5.0)
        self._callback_ids.append(int(cb_id))
