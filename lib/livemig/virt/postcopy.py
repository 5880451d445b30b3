"""``migrate_options --postcopy-after-precopy``: post-copy once the first pass over memory is done.

virsh registers VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION on its connection
before the migration starts and calls virDomainMigrateStartPostCopy from the
event callback when the iteration number is 2 (QEMU has begun its second pass:
the first one is done); a failure of that call is only logged, and the
migration's own result decides. :class:`FirstPassSwitch` does the same with
two differences. The callback only sets a flag; the switch is made by the
migration loop's thread (every libvirt call bounded there, none in libvirt's
event loop). And the race with the migration's own completion is handled
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
  postcopy-active). If the job ends first, QEMU completed it in pre-copy.
  Not confirmed within :data:`CONFIRM_SECONDS`: treated as started, since a
  post-copy cannot be aborted and taking it for a pre-copy would be worse.

In every case except a confirmed post-copy, the job's own result decides (a
success is a pre-copy migration that completed), never the attempt.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from livemig.ocf.logs import get_logger
from livemig.virt.connection import ERR_OPERATION_INVALID, Hypervisor, HypervisorError
from livemig.virt.states import PAUSED, PAUSED_MIGRATION, SHUTOFF, in_postcopy

log = get_logger("livemig")

#: the iteration event's number once the first pass over memory is done (virsh: ``iteration == 2``)
SECOND_PASS = 2
#: how long an accepted switch may take to show in the source domain's state
CONFIRM_SECONDS = 3.0
#: what :meth:`FirstPassSwitch.switch` found
SWITCHED, COMPLETING, FAILED = "switched", "completing", "failed"


class FirstPassSwitch:
    """One migration's --postcopy-after-precopy. :meth:`arm` before the job starts; :attr:`due` once the
    first pass is done; then :meth:`switch` (once), from the thread that follows the job."""

    def __init__(self, hv: Hypervisor, dom: Any, name: str, target: str) -> None:
        self.hv = hv
        self.dom = dom
        self.name = name
        self.target = target
        self._first_pass_done = threading.Event()
        self._acted = False
        #: what :meth:`switch` found (None: not yet)
        self.outcome: Optional[str] = None

    def arm(self) -> None:
        """Register for the iteration event; HypervisorError if libvirt cannot deliver it (virsh then refuses
        to migrate as well)."""
        self.hv.watch_migration_iteration(self.dom, self._on_iteration)

    def _on_iteration(self, iteration: int) -> None:  # libvirt's event loop thread: no libvirt call here
        if iteration >= SECOND_PASS:
            self._first_pass_done.set()

    @property
    def due(self) -> bool:
        return self._first_pass_done.is_set() and not self._acted

    def switch(self, call: Any) -> bool:
        """Switch to post-copy (``call``: the migration's BackgroundCall). True only once post-copy runs."""
        self._acted = True
        why = self._completing()
        if why is None:
            try:
                self.hv.start_postcopy(self.dom)
            except HypervisorError as exc:
                # Whatever the error, libvirt's state says first: a request that timed out may have been
                # carried out, and "post-copy already started" (someone ran virsh migrate-postcopy) is post-copy.
                if self._shows_postcopy():
                    why = None
                elif exc.code in (ERR_OPERATION_INVALID, self.hv.libvirt.VIR_ERR_NO_DOMAIN):
                    why = f"libvirt: {exc}"
                else:
                    self.outcome = FAILED
                    log.warning("migration of %s: first pass over memory done, but it could not switch to "
                                "post-copy: %s; it goes on in pre-copy", self.name, exc)
                    return False
            else:
                why = self._confirm(call)
        if why is None:
            self.outcome = SWITCHED
            log.warning("migration of %s: first pass over memory done: switched to post-copy (the VM now runs on "
                        "%s)", self.name, self.target)
            return True
        self.outcome = COMPLETING
        log.info("migration of %s: first pass over memory done as the migration was completing (%s): no "
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
        status = self._state()
        return bool(status) and in_postcopy(status.state, status.reason)

    def _completing(self) -> Optional[str]:
        """Why the migration is already completing (None: it is not, as far as libvirt says)."""
        status = self._state()
        if status is None or (status and status.state == SHUTOFF):
            return "the domain has already left this node"
        if status and status.state == PAUSED and status.reason == PAUSED_MIGRATION:
            return "its vCPUs were already stopped for the switch-over"
        return None

    def _confirm(self, call: Any) -> Optional[str]:
        """After libvirt accepted the switch: None once the source's domain shows post-copy, else why not."""
        until = time.monotonic() + min(CONFIRM_SECONDS, max(0.0, self.hv.deadline.remaining() - 1.0))
        while True:
            status = self._state()
            if status and in_postcopy(status.state, status.reason):
                return None
            if status is None or (status and status.state == SHUTOFF) or call.wait(0.1):
                return "the switch was accepted, but the job ended without libvirt showing post-copy"
            if time.monotonic() >= until:
                log.warning("migration of %s: post-copy accepted but libvirt does not show it yet; taken as "
                            "started (a post-copy cannot be aborted)", self.name)
                return None

    def report_end(self) -> None:
        """The job completed: say so if the first pass never ended (the migration converged within it)."""
        if self.outcome is None:
            log.info("migration of %s completed within its first pass over memory: no post-copy", self.name)
