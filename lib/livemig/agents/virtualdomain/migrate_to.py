"""migrate_to: the live migration, as named phases; the DRBD guard first.

On the source::

    prepare   read the target from Pacemaker, build the URIs, flags and parameters,
              check the domain runs here (persistent or transient decides the flags),
              read its live definition (what libvirt will migrate)
    guard     the DRBD guard's verdict on that definition's disks; on refusal nothing
              has been touched
    migrate   virDomainMigrateToURI3(LIVE|PEER2PEER|...) in the background while
              this thread logs progress every few seconds (job stats), applies the
              downtime limit once the job exists, escalates the convergence policy
              at half of the migration's time, and aborts the job at its deadline;
              every second the watch (the DRBD guard's checks again) may abort it too
    finish    success: the final statistics from the target
    abort     the job is aborted (the abort is always sent: on the job's connection,
              else on a new one); then the agent checks where the domain runs and
              says so: it must run on exactly one node

Once post-copy has started the guest runs on the target and its memory is split
between the two nodes: nothing can roll it back, so nothing after that point
reports a failure that would make Pacemaker stop either half. At the deadline
the migration is left to finish and migrate_to succeeds (the VM runs on the
target); only a post-copy that libvirt reports failed is a failure, and stop
never destroys a domain in post-copy (:mod:`.stop`).

migrate_from (on the target, :mod:`livemig.virt.incoming`): wait, bounded, until the domain runs
here and is no longer paused by the migration; then the DRBD state under it, monitor scripts and
save_config_on_stop (:meth:`.agent.VirtualDomain.action_migrate_from`).

The migration's own deadline keeps a reserve (15% of the time, 5 to 20 s)
inside the operation deadline for the abort and the checks after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, TypeVar

from livemig.agents.virtualdomain.context import AgentContext
from livemig.ocf.deadline import Deadline
from livemig.ocf.errors import GenericError
from livemig.virt.connection import Hypervisor, HypervisorError
from livemig.virt.incoming import describe_completed
from livemig.virt.migration_plan import SUSPEND_AFTER, MigrationPlan, plan_migration
from livemig.virt.postcopy import FirstPassSwitch
from livemig.virt.states import BLOCKED, RUNNING, classify

if TYPE_CHECKING:
    from livemig.agents.virtualdomain.drbd import DrbdPolicy

T = TypeVar("T")
#: the escalation point, as a fraction of the migration's time
ESCALATE_AT = 0.5
MIB = 1024 * 1024
#: how often the watch (the DRBD guard's checks) runs while the job does, and its bound per run
WATCH_INTERVAL = 1.0
WATCH_BOUND = 5.0
#: seconds without a byte moved (across progress reports) that the abort reason calls a stall
STALL_SECONDS = 10.0
#: in post-copy, migrate_to returns this long before its deadline (the VM runs on the target)
POSTCOPY_RESERVE = 2.0


def migration_deadline(deadline: Deadline) -> Deadline:
    left = deadline.remaining()
    reserve = min(20.0, max(5.0, left * 0.15))
    if reserve > left / 2:
        reserve = left / 2
    return Deadline(left - reserve)


def describe_progress(stats: Mapping[str, Any]) -> str:
    def mib(key: str) -> str:
        value = stats.get(key)
        return f"{int(value) / MIB:.0f}" if isinstance(value, int) else "?"

    parts = [f"processed {mib('data_processed')} MiB", f"remaining {mib('data_remaining')} MiB"]
    rate = stats.get("memory_dirty_rate")
    page = stats.get("memory_page_size") or 4096
    if isinstance(rate, int):
        parts.append(f"dirty rate {rate * page / MIB:.1f} MiB/s")
    if "memory_bps" in stats:
        parts.append(f"speed {int(stats['memory_bps']) / MIB:.1f} MiB/s")
    if "memory_iteration" in stats:
        parts.append(f"iteration {stats['memory_iteration']}")
    if "downtime" in stats:
        parts.append(f"expected downtime {stats['downtime']} ms")
    return ", ".join(parts)


class LiveMigration:
    """migrate_to for one domain; :meth:`run` raises GenericError unless it arrived on the target."""

    def __init__(self, ctx: AgentContext, name: str, values: Mapping[str, Any], target: str) -> None:
        self.ctx = ctx
        #: the DRBD policy for the disks of the domain as it runs (set by :meth:`run`, before the job)
        self.drbd: Optional[DrbdPolicy] = None
        self.log = ctx.log
        self.name = name
        self.values = values
        self.target = target
        self.local = ctx.env.node_name or "this node"
        self.last_stats: Dict[str, Any] = {}
        #: when the job's processed byte count last grew (seconds since the migration began)
        self.moved_at = 0.0
        #: the guest was suspended to make the migration converge (migrate_options --timeout)
        self.suspended = False

    def run(self) -> None:
        hv = Hypervisor(self.values["hypervisor"], self.ctx.deadline, events=True)  # events: --postcopy-after-precopy
        try:
            try:
                dom, plan = self.prepare(hv)
                live_xml = hv.live_xml(dom)
            except HypervisorError as exc:
                raise GenericError(f"cannot migrate {self.name}: {exc}") from None
            # The guard: on the running definition, not the config file's (a disk hot-plugged
            # into the domain is migrated too, and is checked like the others). On a refusal
            # nothing has been touched.
            self.drbd = self.ctx.drbd_policy(live_xml)
            self.drbd.guard(self.target)
            self.drbd.open_window(self.target)  # drbd_two_primaries=migration only
            try:
                self.migrate(hv, dom, plan)
            except GenericError as exc:
                self._close_after_failure(str(exc))
                raise
            try:
                self.drbd.close_window(migrated=True, until=self.ctx.deadline)
            except GenericError as exc:
                # The VM runs on the target: a failed migrate_to would make Pacemaker stop it on both
                # nodes. The allowance is a leftover the next action on either node closes.
                self.log.error("%s", exc)
                self.ctx.notice = f"{self.name} runs on {self.target}; {exc}"
        finally:
            hv.close()

    def _close_after_failure(self, failure: str) -> None:
        """The migration failed and the VM runs here: close the window, both reasons said if that fails too."""
        if self.drbd is None:
            return
        try:
            self.drbd.close_window(migrated=False, until=self.ctx.deadline)
        except GenericError as exc:
            raise GenericError(f"{failure}; {exc}") from None

    # -- prepare ---------------------------------------------------------------------------

    def prepare(self, hv: Hypervisor) -> tuple[Any, MigrationPlan]:
        hv.open()
        dom = hv.lookup(self.name)
        status = hv.status(dom) if dom is not None else None
        if status is None or not classify(status.state, status.reason).running:
            raise GenericError(f"cannot migrate {self.name} to {self.target}: it is not running on this node")
        local_uri = self.values["hypervisor"] or hv.actual_uri()
        plan = plan_migration(self.name, self.target, self.values, local_uri, hv.is_persistent(dom))
        self.log.info("migrating %s %s", self.name, plan.describe())
        return dom, plan

    # -- migrate ---------------------------------------------------------------------------

    def migrate(self, hv: Hypervisor, dom: Any, plan: MigrationPlan) -> None:
        until = migration_deadline(self.ctx.deadline)
        first_pass = self._first_pass_switch(hv, dom, plan)
        call = hv.start_migration(dom, plan.dest_uri, plan.params, plan.flags)
        if first_pass is not None:
            first_pass.follow(call, until)
        downtime_pending = plan.downtime_ms > 0
        escalated = plan.convergence == "none"
        postcopy = False
        next_report = until.elapsed() + min(plan.progress_interval, 2.0)
        next_watch = until.elapsed() + WATCH_INTERVAL
        while not call.wait(min(0.5, max(0.05, (until if not postcopy else self.ctx.deadline).remaining()))):
            if self.drbd is not None and not postcopy and until.elapsed() >= next_watch:
                unsafe = self.drbd.watch(self.target, min(WATCH_BOUND, max(0.5, until.remaining())))
                if unsafe and not call.done:
                    self._abort_unsafe(hv, dom, call, unsafe)
                next_watch = until.elapsed() + WATCH_INTERVAL
            if downtime_pending:
                downtime_pending = not self._apply_downtime(hv, dom, plan.downtime_ms)
            if until.elapsed() >= next_report:
                self._report(hv, dom, until.elapsed())
                next_report = until.elapsed() + plan.progress_interval
            if first_pass is not None and first_pass.due and not postcopy:
                postcopy = first_pass.switch(call)
                escalated = escalated or postcopy
            if not escalated and until.elapsed() >= self._escalation_point(plan, until):
                escalated = True
                postcopy = self._escalate(hv, dom, plan)
            if postcopy:
                if self.ctx.deadline.remaining() <= POSTCOPY_RESERVE:
                    self._postcopy_at_deadline()
                    return
            elif until.expired():
                self._abort(hv, dom, call, until, plan)
        try:
            call.result()
        except BaseException as exc:  # noqa: BLE001 - any failure: find the VM, then report
            if postcopy:
                self._postcopy_failed(hv.migration_error(exc))
            self._resume_if_suspended(hv, dom)
            self._failed(hv, plan, hv.migration_error(exc))
            return
        if first_pass is not None:
            first_pass.report_end()
        self._finish(plan)

    def _postcopy_at_deadline(self) -> None:
        """Post-copy still running at the deadline: the VM runs on the target; that is a success."""
        self.log.warning("post-copy migration of %s to %s still running at the deadline: the VM runs on %s and "
                         "pulls its remaining memory from %s; leaving the job to finish", self.name, self.target,
                         self.target, self.local)
        self.ctx.notice = (f"{self.name} runs on {self.target}; its post-copy migration from {self.local} is "
                           "still completing: do not stop it on either node until the libvirt job ends")

    def _postcopy_failed(self, exc: HypervisorError) -> None:
        raise GenericError(
            f"post-copy migration of {self.name} to {self.target} failed: its memory is split between "
            f"{self.local} and {self.target}, which stop will not destroy; recover with virsh migrate "
            f"--postcopy --postcopy-resume: {exc}")

    def _apply_downtime(self, hv: Hypervisor, dom: Any, ms: int) -> bool:
        """Set the downtime limit once the job exists; True when done (or impossible)."""
        try:
            if hv.job_type(dom) == 0:
                return False
            hv.set_max_downtime(dom, ms)
            self.log.info("maximum downtime set to %d ms", ms)
        except HypervisorError as exc:
            self.log.warning("could not set the maximum downtime to %d ms: %s", ms, exc)
        return True

    def _report(self, hv: Hypervisor, dom: Any, now: float) -> None:
        try:
            stats = hv.job_stats(dom)
        except HypervisorError as exc:
            self.log.debug("no job statistics: %s", exc)
            return
        if stats:
            if stats.get("data_processed") != self.last_stats.get("data_processed"):
                self.moved_at = now
            self.last_stats = stats
            self.log.info("migration of %s to %s: %s", self.name, self.target, describe_progress(stats))

    @staticmethod
    def _escalation_point(plan: MigrationPlan, until: Deadline) -> float:
        """Seconds into the migration when its convergence policy acts: at virsh's --timeout, else at half
        of the migration's time."""
        return plan.escalate_after if plan.escalate_after is not None else until.total * ESCALATE_AT

    def _escalate(self, hv: Hypervisor, dom: Any, plan: MigrationPlan) -> bool:
        """Time to push harder. True once post-copy has started."""
        try:
            if plan.convergence == "postcopy-after":
                return self._start_postcopy(hv, dom, "not converging")
            if plan.convergence == SUSPEND_AFTER:
                hv.suspend(dom)
                self.suspended = True
                self.log.warning("migration of %s not converging: guest suspended (migrate_options --timeout); it "
                                 "resumes on %s once the migration completes", self.name, self.target)
            elif plan.convergence == "auto-converge":
                ms = max(plan.downtime_ms, 300) * 2
                hv.set_max_downtime(dom, ms)
                self.log.warning("migration of %s not converging: auto-converge throttling, downtime limit "
                                 "raised to %d ms", self.name, ms)
        except HypervisorError as exc:
            self.log.warning("could not escalate the migration of %s: %s", self.name, exc)
        return False

    def _start_postcopy(self, hv: Hypervisor, dom: Any, why: str) -> bool:
        try:
            hv.start_postcopy(dom)
        except HypervisorError as exc:
            self.log.warning("could not switch the migration of %s to post-copy: %s", self.name, exc)
            return False
        self.log.warning("migration of %s %s: switched to post-copy (the VM now runs on %s)", self.name, why,
                         self.target)
        return True

    def _first_pass_switch(self, hv: Hypervisor, dom: Any, plan: MigrationPlan) -> Optional[FirstPassSwitch]:
        """migrate_options --postcopy-after-precopy (:mod:`livemig.virt.postcopy`): armed before the job starts,
        as virsh does; and as virsh, no migration when libvirt cannot report the end of the first pass."""
        if not plan.postcopy_after_pass:
            return None
        switch = FirstPassSwitch(hv, dom, self.name, self.target)
        try:
            switch.arm()
        except HypervisorError as exc:
            raise GenericError(f"cannot migrate {self.name} with --postcopy-after-precopy: libvirt cannot report "
                               f"the end of its first pass over memory: {exc}") from None
        return switch

    def _resume_if_suspended(self, hv: Hypervisor, dom: Any) -> None:
        """The migration did not happen: a guest suspended for it (--timeout) runs on here."""
        if not self.suspended:
            return
        try:
            hv.resume(dom, cap=min(5.0, max(0.5, self.ctx.deadline.remaining() - 3.0)))
            self.log.info("resumed %s, suspended for the migration that did not complete", self.name)
        except HypervisorError as exc:
            if hv.is_no_domain(exc):
                self.log.debug("%s is no longer here to resume: %s", self.name, exc)
                return
            self.log.error("could not resume %s after the failed migration (virsh resume %s): %s", self.name,
                           self.name, exc)

    def _abort(self, hv: Hypervisor, dom: Any, call: Any, until: Deadline, plan: MigrationPlan) -> None:
        progress = describe_progress(self.last_stats) if self.last_stats else "no progress reported"
        still = until.elapsed() - self.moved_at
        if self.last_stats and still >= STALL_SECONDS:
            # Nothing moved across several reports: a dead migration network, not a busy guest.
            progress = f"no data moved in the last {still:.0f}s: migration network down?; {progress}"
        self.log.warning("migration of %s did not complete within %.0fs: aborting", self.name, until.total)
        self._abort_job(hv, dom, call)
        where = self._where(self._runs_here())
        raise GenericError(
            f"migration to {self.target} aborted at its {until.total:.0f}s deadline, {where} ({progress}); "
            "raise the migrate_to timeout or migration_speed, or set migration_convergence=auto-converge")

    def _abort_unsafe(self, hv: Hypervisor, dom: Any, call: Any, why: str) -> None:
        """The watch says the migration is no longer safe: abort it; GenericError either way."""
        self.log.error("migration of %s to %s no longer safe (%s): aborting", self.name, self.target, why)
        self._abort_job(hv, dom, call)
        here = self._runs_here()
        if here is False:
            # Too late: the job had already switched over. Pacemaker's recovery for a failed
            # migrate_to stops the VM on both nodes and starts it where the data is UpToDate.
            raise GenericError(f"DRBD changed as the migration to {self.target} switched over: {self.name} no "
                               f"longer runs on {self.local}; {why}")
        raise GenericError(f"migration to {self.target} aborted, {self._where(here)}: DRBD changed: {why}")

    def _abort_job(self, hv: Hypervisor, dom: Any, call: Any) -> None:
        """Ask libvirt to abort the job, then wait (bounded) for the migration call to return.

        The abort goes through the job's own connection whatever happened to
        earlier calls on it; if that fails, through a new connection.
        """
        try:
            hv.abort_job(dom, cap=min(10.0, self.ctx.deadline.remaining() * 0.5))
        except HypervisorError as exc:
            self.log.warning("abortJob: %s; trying again on a new connection", exc)
            fresh = Hypervisor(self.values["hypervisor"], self.ctx.deadline, call_cap=5.0)
            try:
                again = fresh.open(cap=5.0).lookup(self.name)
                if again is not None:
                    fresh.abort_job(again, cap=min(10.0, self.ctx.deadline.remaining() * 0.5))
            except HypervisorError as exc2:
                self.log.error("abortJob on a new connection: %s", exc2)
            finally:
                fresh.close()
        # Keep a few seconds for asking where the domain runs afterwards.
        call.wait(max(0.0, self.ctx.deadline.remaining() - 3.0))
        self._resume_if_suspended(hv, dom)

    def _failed(self, hv: Hypervisor, plan: MigrationPlan, exc: HypervisorError) -> None:
        where_here = self._runs_here()
        if where_here:
            raise GenericError(f"migration to {self.target} failed, {self.name} still runs on {self.local}: {exc}")
        there = self._runs_on_target(plan)
        if there is True:
            # The switch-over happened. Pacemaker follows a successful migrate_to with a stop
            # here, which removes whatever is left of the domain on this node.
            self.log.warning("migration reported an error (%s) but %s now runs on %s%s", exc, self.name,
                             self.target, " only" if where_here is False else
                             f" ({self._where(None)}; the stop that follows cleans up here)")
            return
        if where_here is None:
            raise GenericError(f"migration to {self.target} failed, {self._where(None)}: {exc}")
        state = "does not run on either node" if there is False else f"is not on {self.local}; {self.target} " \
                "could not be asked"
        raise GenericError(f"migration to {self.target} failed and {self.name} {state}: {exc}")

    def _finish(self, plan: MigrationPlan) -> None:
        """The domain has arrived: nothing from here on may turn that into a failure."""
        try:
            stats = self._target_stats(plan)
        except Exception as exc:  # noqa: BLE001 - statistics are informational only
            self.log.debug("no completed job statistics: %s", exc)
            stats = {}
        self.log.info("live migration of %s to %s completed: %s", self.name, self.target,
                      describe_completed(stats) if stats else describe_progress(self.last_stats))

    # -- where is it? ----------------------------------------------------------------------

    def _ask(self, uri: Optional[str], question: Callable[[Hypervisor, Any], T], default: T) -> T:
        """``question(hv, domain)`` on the libvirtd at ``uri`` (5 s bounds); ``default`` if it cannot answer."""
        hv = Hypervisor(uri, self.ctx.deadline, call_cap=5.0)
        try:
            hv.open(cap=5.0)
            return question(hv, hv.lookup(self.name))
        except HypervisorError as exc:
            self.log.debug("%s could not answer about %s: %s", uri or "the local libvirtd", self.name, exc)
            return default
        finally:
            hv.close()

    @staticmethod
    def _running(hv: Hypervisor, dom: Any) -> Optional[bool]:
        status = hv.status(dom) if dom is not None else None
        return status is not None and classify(status.state, status.reason).running

    @staticmethod
    def _arrived(hv: Hypervisor, dom: Any) -> Optional[bool]:
        """On the target: running. Paused, for whatever reason libvirt gives (migration, starting
        up, ...), is the incoming domain of a switch-over that has not happened."""
        status = hv.status(dom) if dom is not None else None
        return status is not None and status.state in (RUNNING, BLOCKED)

    def _runs_here(self) -> Optional[bool]:
        return self._ask(self.values["hypervisor"], self._running, None)

    def _runs_on_target(self, plan: MigrationPlan) -> Optional[bool]:
        return self._ask(plan.dest_uri, self._arrived, None)

    def _target_stats(self, plan: MigrationPlan) -> Dict[str, Any]:
        return self._ask(plan.dest_uri, lambda hv, dom: hv.job_stats(dom, completed=True) if dom else {}, {})

    def _where(self, here: Optional[bool]) -> str:
        """Where the domain runs, said from ``here`` (None: the local libvirtd could not answer)."""
        if here:
            return f"{self.name} still runs on {self.local}"
        if here is False:
            return f"{self.name} NO LONGER runs on {self.local}"
        from livemig.virt.qemu_proc import local_qemu_pids

        pids = local_qemu_pids(self.name, self.values["hypervisor"])
        if pids:
            return f"libvirtd on {self.local} does not answer; {self.name}'s QEMU (pid {pids[0]}) is alive there"
        return f"libvirtd on {self.local} cannot tell where {self.name} runs"
