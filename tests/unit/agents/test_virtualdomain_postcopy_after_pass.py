"""migrate_to with migrate_options --postcopy --postcopy-after-precopy, on the scripted fake libvirt.

The fake sends VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION to the callbacks registered for the domain
at the scripted times, and answers virDomainMigrateStartPostCopy as libvirt's qemu driver does
(VIR_ERR_OPERATION_INVALID once the outgoing job is over, VIR_ERR_NO_DOMAIN once a transient domain
has left). Each test covers one way the race between the switch and the migration's completion can
go, and checks that the result is the job's.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.unit.fake_libvirt import (
    VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
    VIR_ERR_OPERATION_INVALID,
    FakeLibvirt,
    libvirtError,
)

OPTIONS = "--postcopy --postcopy-after-precopy"
TARGET = {"OCF_RESKEY_CRM_meta_migrate_target": "node2", "migration_transport": "tcp"}


def migrate(agent: Any, **kw: Any) -> Any:
    params = dict(TARGET, migrate_options=OPTIONS)
    params.update(kw)
    return agent("migrate_to", **params)


def postcopy_calls(world: FakeLibvirt) -> int:
    return sum(1 for c in world.calls if c[0] == "postcopy")


def registered_and_closed(world: FakeLibvirt) -> bool:
    """The iteration event was registered before the job started and deregistered afterwards."""
    names = [c[0] for c in world.calls]
    return (("eventRegister", VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION) in world.calls
            and names.index("eventRegister") < names.index("migrate")
            and "eventDeregister" in names and not world.callbacks)


def test_the_first_pass_event_switches_to_postcopy_once(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=60, iterations=[(0.05, 1), (1.0, 2), (1.1, 3)])
    started = time.monotonic()
    res = migrate(agent, timeout_ms=30000)
    assert res.code == 0, res.stderr
    assert time.monotonic() - started >= 1.0  # not during the first pass
    assert postcopy_calls(fake_libvirt) == 1
    assert "first pass over memory done: switched to post-copy (the VM now runs on node2)" in res.stderr
    assert next(c for c in fake_libvirt.calls if c[0] == "migrate")[4] & 32768
    assert "vm1" in fake_libvirt.hosts["node2"] and "vm1" not in fake_libvirt.domains
    assert registered_and_closed(fake_libvirt)


def test_a_migration_that_completes_within_its_first_pass_never_asks_for_postcopy(
        agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=0.6, iterations=[(0.0, 1)])
    res = migrate(agent)
    assert res.code == 0, res.stderr
    assert postcopy_calls(fake_libvirt) == 0
    assert "completed within its first pass over memory: no post-copy" in res.stderr
    assert "vm1" in fake_libvirt.hosts["node2"]
    assert registered_and_closed(fake_libvirt)


def test_first_pass_ending_in_the_switch_over_asks_for_no_postcopy(agent, fake_libvirt: FakeLibvirt) -> None:
    """QEMU completes right after a first pass that nearly converged: the vCPUs are stopped as event 2 comes."""
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=1.5, iterations=[(0.0, 1), (0.2, 2)], paused_at_pass=True)
    res = migrate(agent)
    assert res.code == 0, res.stderr
    assert postcopy_calls(fake_libvirt) == 0
    assert "vCPUs were already stopped for the switch-over" in res.stderr
    assert "the pre-copy migration's own result decides" in res.stderr
    assert "vm1" in fake_libvirt.hosts["node2"]


@pytest.mark.parametrize("error, said", [
    (None, "Domain not found"),  # the transient domain has left: VIR_ERR_NO_DOMAIN
    ((VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: post-copy can only be started while "
      "outgoing migration is in progress"), "post-copy can only be started while outgoing migration"),
    ((VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running"),
     "domain is not running"),
])
def test_postcopy_refused_because_the_job_completed_is_the_jobs_success(
        agent, fake_libvirt: FakeLibvirt, error: Any, said: str) -> None:
    fake_libvirt.add("vm1", persistent=error is not None)
    fake_libvirt.migration.update(duration=60, iterations=[(0.0, 1), (0.2, 2)], postcopy_completes_first=True,
                                  postcopy_error=error)
    res = migrate(agent, timeout_ms=30000)
    assert res.code == 0, res.stderr
    assert postcopy_calls(fake_libvirt) == 1
    assert said in res.stderr and "no post-copy; the pre-copy migration's own result decides" in res.stderr
    assert "post-copy migration of vm1" not in res.stderr
    assert "vm1" in fake_libvirt.hosts["node2"] and "vm1" not in fake_libvirt.domains
    assert fake_libvirt.hosts["node2"]["vm1"].state_ == (1, 1)  # running on the target, not paused


def test_postcopy_accepted_but_completed_in_precopy_is_the_jobs_success(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=1.2, iterations=[(0.0, 1), (0.2, 2)], postcopy_ignored=True)
    res = migrate(agent)
    assert res.code == 0, res.stderr
    assert postcopy_calls(fake_libvirt) == 1
    assert "the switch was accepted, but the job ended in pre-copy" in res.stderr
    assert "switched to post-copy" not in res.stderr
    assert "vm1" in fake_libvirt.hosts["node2"]


def test_postcopy_refused_by_qemu_goes_on_in_precopy_and_is_aborted_at_the_deadline(
        agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=60, iterations=[(0.0, 1), (0.2, 2)], postcopy_error=(
        1, "internal error: unable to execute QEMU command 'migrate-start-postcopy': Postcopy is not enabled"))
    res = migrate(agent, timeout_ms=12000)
    assert res.code == 1, res.stderr
    assert postcopy_calls(fake_libvirt) == 1
    assert "could not switch to post-copy" in res.stderr and "it goes on in pre-copy" in res.stderr
    assert ("abortJob", "vm1") in fake_libvirt.calls
    assert "vm1 still runs on" in res.reason
    assert "vm1" in fake_libvirt.domains


def test_a_postcopy_that_then_fails_is_the_postcopy_failure(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=60, iterations=[(0.0, 1), (0.2, 2)],
                                  error="operation failed: migration out job: unexpectedly failed")
    res = migrate(agent, timeout_ms=30000)
    assert res.code == 1, res.stderr
    assert "switched to post-copy" in res.stderr
    assert res.reason.startswith("post-copy migration of vm1 to node2 failed: its memory is split"), res.reason
    assert not [c for c in fake_libvirt.calls if c[0] == "abortJob"]


def test_no_iteration_event_no_migration(agent, fake_libvirt: FakeLibvirt) -> None:
    """As virsh: when libvirt cannot register the event, nothing moves."""
    fake_libvirt.add("vm1")

    def refuse() -> None:
        raise libvirtError("this function is not supported by the connection driver: "
                           "virConnectDomainEventRegisterAny", 3)

    fake_libvirt.hooks["eventRegister"] = refuse
    res = migrate(agent)
    assert res.code == 1, res.stderr
    assert res.reason.startswith("cannot migrate vm1 with --postcopy-after-precopy: libvirt cannot report"), res.reason
    assert not [c for c in fake_libvirt.calls if c[0] == "migrate"]
    assert "vm1" in fake_libvirt.domains


def test_without_the_option_no_event_is_registered(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(iterations=[(0.0, 1), (0.0, 2)])
    res = migrate(agent, migrate_options="--postcopy")
    assert res.code == 0, res.stderr
    assert not [c for c in fake_libvirt.calls if c[0] in ("eventRegister", "postcopy")]


def test_postcopy_accepted_but_not_shown_is_taken_as_postcopy(agent, fake_libvirt: FakeLibvirt) -> None:
    """A post-copy cannot be aborted: an accepted switch that libvirt does not show within 3 s is one."""
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=60, iterations=[(0.0, 1), (0.2, 2)], postcopy_ignored=True)
    res = migrate(agent, timeout_ms=12000)
    assert res.code == 0, res.stderr
    assert "post-copy accepted but libvirt does not show it yet; taken as started" in res.stderr
    assert "still running at the deadline" in res.stderr
    assert not [c for c in fake_libvirt.calls if c[0] == "abortJob"]


def test_no_postcopy_asked_just_before_the_deadline_aborts_the_job(agent, fake_libvirt: FakeLibvirt) -> None:
    """libvirt refuses to abort a post-copy: the request is not made when the abort is under 2 s away."""
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=60, iterations=[(0.0, 1), (3.8, 2)])
    res = migrate(agent, timeout_ms=12000)  # the migration's own deadline: about 5 s
    assert res.code == 1, res.stderr
    assert postcopy_calls(fake_libvirt) == 0
    assert "the migration's deadline, where it is aborted, is too close" in res.stderr
    assert res.reason.startswith("migration to node2 aborted at its"), res.reason
    assert "vm1" in fake_libvirt.domains
