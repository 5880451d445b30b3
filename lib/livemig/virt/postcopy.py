"""``migrate_options --postcopy-after-precopy``: post-copy once the first pass over memory is done.

virsh registers VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION on its connection
before the migration starts and calls virDomainMigrateStartPostCopy from the
event callback when the iteration number is 2 (QEMU has begun its second pass:
the first one is done); a failure of that call is only logged, and the
migration's own result decides. :class:`FirstPassSwitch` does the same with
two differences. The callback only sets a flag; a thread of the migration's
own makes the request at once (every libvirt call bounded there, none in
libvirt's event loop), and the migration loop's thread acts on what came of
it. And the race with the migration's own completion is handled
explicitly, because that is when the event comes: a first pass that nearly
converged is followed at once by QEMU's completion, and a post-copy started
then is no post-copy at all.

- Before asking: the source's domain already paused for the migration (QEMU
  stops the vCPUs to complete it) or gone (it completed): no post-copy.
- libvirt refusing with VIR_ERR_OPERATION_INVALID (qemuDomainMigrateStartPostCopy:
  "post-copy can only be started while outgoing migration is in progress",
  "domain is not running") or VIR_ERR_NO_DOMAIN (a transient domain that
  completed is gone): the job has ended or is ending in pre-copy; no post-copy.
- Any other error (QEMU's, a timeout): not switched, as before (a warning; the
  migration goes on in pre-copy and its deadline applies).
- Accepted: post-copy is reported started only once libvirt shows the source's
  domain paused for post-copy (it does when QEMU's migration status becomes
  postcopy-active). If the job ends without that, it ended in pre-copy;
  libvirt's lifecycle event (suspended, post-copy) says so even when the
  post-copy is over before a poll could see it.
  Not confirmed within :data:`CONFIRM_SECONDS`: treated as started, since a
  post-copy cannot be aborted and taking it for a pre-copy would be worse.

In every case except a confirmed post-copy, the job's own result decides (a
success is a pre-copy migration that completed), never the attempt.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from livemig.ocf.deadline import Deadline
from livemig.ocf.logs import get_logger
from livemig.virt.connection import (
    ERR_OPERATION_INVALID,
    EVENT_ID_LIFECYCLE,
    EVENT_ID_MIGRATION_ITERATION,
    EVENT_SUSPENDED,
    EVENT_SUSPENDED_POSTCOPY,
    Hypervisor,
    HypervisorError,
)
from livemig.virt.states import PAUSED, PAUSED_MIGRATION, SHUTOFF, in_postcopy

log = get_logger("livemig")

#: the iteration event's number once the first pass over memory is done (virsh: ``iteration == 2``)
SECOND_PASS = 2
#: how long an accepted switch may take to show in the source domain's state
CONFIRM_SECONDS = 3.0
#: no post-copy asked this close to the migration's deadline (seconds)
ABORT_MARGIN = 2.0
#: after the job ended, how long its post-copy event may still be on its way
EVENT_GRACE = 0.5
#: what :meth:`FirstPassSwitch.switch` found
SWITCHED, COMPLETING, FAILED = "switched", "completing", "failed"


class FirstPassSwitch:
    """One migration's --postcopy-after-precopy. :meth:`arm` before the job starts, :meth:`follow` once it
    has; :attr:`due` once the request has been made; then :meth:`switch` (once), from the thread that follows
    the job, which says what came of it."""

    def __init__(self, hv: Hypervisor, dom: Any, name: str, target: str) -> None:
        self.hv = hv
        self.dom = dom
        self.name = name
        self.target = target
        self._first_pass_done = threading.Event()
        #: libvirt's lifecycle event: the source's domain suspended for post-copy
        self._postcopy_began = threading.Event()
        #: the request has been made (or found needless): :attr:`_answer` holds what came of it
        self._requested = threading.Event()
        self._answer: Any = None
        self._acted = False
        self._call: Any = None
        self._until: Optional[Deadline] = None
        #: what :meth:`switch` found (None: not yet)
        self.outcome: Optional[str] = None

    def arm(self) -> None:
        """Register for the iteration event (and the lifecycle event that says post-copy began);
        HypervisorError if libvirt cannot deliver them (virsh then refuses to migrate as well)."""
        self.hv.watch_domain(self.dom, EVENT_ID_MIGRATION_ITERATION, self._on_iteration)
        self.hv.watch_domain(self.dom, EVENT_ID_LIFECYCLE, self._on_lifecycle)

    def follow(self, call: Any, until: Optional[Deadline] = None) -> None:
        """The job has started (``call``: its BackgroundCall): the request is made by a thread of its own the
        moment event 2 comes, as virsh makes it from its callback. On one host (QEMU 7.2, TCG), a switch made
        up to half a second into the second pass (the migration loop's pace) left the guest's memory corrupt
        on the target (it panicked there) in 3 runs of 4; made at once, 23 runs of 24 passed (docs/migration.md).
        The thread ends with the job, or once it has asked; it does not ask within
        :data:`ABORT_MARGIN` of ``until`` (the migration's deadline, where the loop aborts the job: an abort is
        refused once post-copy has begun)."""
        self._call = call
        self._until = until
        threading.Thread(target=self._request, name="livemig:postcopy-after-precopy", daemon=True).start()

    # libvirt's event loop thread: flags only, no libvirt call here
    def _on_iteration(self, iteration: int) -> None:
        if iteration >= SECOND_PASS:
            self._first_pass_done.set()

    def _on_lifecycle(self, event: int, detail: int) -> None:
        if event == EVENT_SUSPENDED and detail in EVENT_SUSPENDED_POSTCOPY:
            self._postcopy_began.set()

    def _request(self) -> None:
        while not self._first_pass_done.wait(0.1):
            if self._call.done:
                return  # the job ended within its first pass
        if self._until is not None and self._until.remaining() < ABORT_MARGIN:
            self._answer = "the migration's deadline, where it is aborted, is too close"
            self._requested.set()
            return
        try:
            self._answer = self._completing()
            if self._answer is None:
                self.hv.start_postcopy(self.dom)
        except HypervisorError as exc:
            self._answer = exc
        except Exception as exc:  # noqa: BLE001 - handed to switch(), which says what it was
            self._answer = HypervisorError(f"{type(exc).__name__}: {exc}")
        finally:
            self._requested.set()

    @property
    def due(self) -> bool:
        return self._requested.is_set() and not self._acted

    def switch(self, call: Any) -> bool:
        """What came of the request (``call``: the migration's BackgroundCall). True only once post-copy runs."""
        self._acted = True
        why: Optional[str] = None
        answer = self._answer
        if isinstance(answer, str):
            why = answer
        elif isinstance(answer, HypervisorError):
            # Whatever the error, libvirt's state says first: a request that timed out may have been
            # carried out, and "post-copy already started" (someone ran virsh migrate-postcopy) is post-copy.
            if self._shows_postcopy():
                why = None
            elif answer.code in (ERR_OPERATION_INVALID, self.hv.libvirt.VIR_ERR_NO_DOMAIN):
                why = f"libvirt: {answer}"
            else:
                self.outcome = FAILED
                log.warning("migration of %s: first pass over memory done, but it could not switch to "
                            "post-copy: %s; it goes on in pre-copy", self.name, answer)
                return False
        else:
            why = self._confirm(call)
        if why is None:
            self.outcome = SWITCHED
            log.warning("migration of %s: first pass over memory done: switched to post-copy (the VM now runs on "
                        "%s)", self.name, self.target)
            return True
        self.outcome = COMPLETING
        log.info("migration of %s: first pass over memory done (%s): no "
                 "post-copy; the pre-copy migration's own result decides", self.name, why)
        return False

    def _state(self) -> Any:
        """The source domain's DomainStatus; None once it is gone; False when libvirt did not answer."""
        try:
            return self.hv.status(self.dom)
        except HypervisorError as exc:
            log.debug("state of %s during the migration: %s", self.name, exc)
            return False

    def _shows_postcopy(self) -> bool:
        if self._postcopy_began.is_set():
            return True
        status = self._state()
        return bool(status) and in_postcopy(status.state, status.reason)

    def _completing(self) -> Optional[str]:
        """Why the migration is already completing (None: it is not, as far as libvirt says). One quick call:
        it stands between the event and the request."""
        try:
            state = self.hv.domain_state(self.dom)
        except HypervisorError as exc:
            log.debug("state of %s before post-copy: %s", self.name, exc)
            return None  # the request itself will tell
        if state is None or state[0] == SHUTOFF:
            return "the domain has already left this node"
        if state == (PAUSED, PAUSED_MIGRATION):
            return "its vCPUs were already stopped for the switch-over"
        return None

    def _confirm(self, call: Any) -> Optional[str]:
        """After libvirt accepted the switch: None once libvirt says post-copy began (its lifecycle event, or the
        source's state), else why not. A post-copy can end within a poll; its event still tells."""
        until = time.monotonic() + min(CONFIRM_SECONDS, max(0.0, self.hv.deadline.remaining() - 1.0))
        while True:
            if self._shows_postcopy():
                return None
            if call.wait(0.1):
                # The job's reply and the event travel on one connection, the event first; give it a moment.
                if self._postcopy_began.wait(EVENT_GRACE):
                    return None
                return "the switch was accepted, but the job ended in pre-copy"
            if time.monotonic() >= until:
                log.warning("migration of %s: post-copy accepted but libvirt does not show it yet; taken as "
                            "started (a post-copy cannot be aborted)", self.name)
                return None

    def report_end(self) -> None:
        """The job completed: say which way it went if the migration loop did not see the request."""
        if self._first_pass_done.is_set():  # a request still on its way (start_postcopy is bounded to 5 s)
            self._requested.wait(min(7.0, max(0.0, self.hv.deadline.remaining() - 1.0)))
        if self.due:
            self.switch(self._call)
        elif self.outcome is None:
            log.info("migration of %s completed within its first pass over memory: no post-copy", self.name)
