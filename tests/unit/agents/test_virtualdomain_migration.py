"""migrate_to / migrate_from against the scripted two-host fake libvirt."""

from __future__ import annotations

import time

import pytest

from tests.unit.fake_libvirt import FakeLibvirt, libvirtError

TARGET = {"OCF_RESKEY_CRM_meta_migrate_target": "node2", "migration_transport": "tcp"}


def migrate(agent, **kw):  # type: ignore[no-untyped-def]
    params = dict(TARGET)
    params.update(kw)
    return agent("migrate_to", **params)


def test_migrate_to_moves_the_domain_and_logs_final_stats(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    res = migrate(agent, migration_speed="100", migrateport="49152", migration_downtime="250")
    assert res.code == 0, res.stderr
    call = next(c for c in fake_libvirt.calls if c[0] == "migrate")
    assert call[2] == "qemu+tcp://node2/system"
    assert call[3] == {"bandwidth": 100, "migrate_uri": "tcp://node2:49152"}
    assert call[4] == 1 | 2
    assert "vm1" in fake_libvirt.hosts["node2"] and "vm1" not in fake_libvirt.domains
    assert "completed: total time 1234 ms, downtime 42 ms, data 150 MiB" in res.stderr


def test_downtime_set_once_the_job_exists_and_progress_logged(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 2.5
    res = migrate(agent, migration_downtime="250", migration_progress_interval="1")
    assert res.code == 0, res.stderr
    assert ("downtime", "vm1", 250) in fake_libvirt.calls
    assert "processed 64 MiB, remaining 32 MiB, dirty rate 10.0 MiB/s, iteration 3" in res.stderr


def test_persistent_source_is_defined_on_target(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1", persistent=True)
    assert migrate(agent).code == 0
    flags = next(c for c in fake_libvirt.calls if c[0] == "migrate")[4]
    assert flags & 8 and flags & 16
    assert fake_libvirt.hosts["node2"]["vm1"].persistent


def test_deadline_aborts_and_the_vm_stays_on_the_source(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 60
    started = time.monotonic()
    res = migrate(agent, timeout_ms=12000)
    elapsed = time.monotonic() - started
    assert res.code == 1
    assert elapsed < 12
    assert ("abortJob", "vm1") in fake_libvirt.calls
    assert res.reason.startswith("migration to node2 aborted at its"), res.reason
    assert "vm1 still runs on" in res.reason
    assert "migration_convergence=auto-converge" in res.stderr  # the full reason is logged
    assert "vm1" in fake_libvirt.domains


def test_postcopy_after_switches_at_half_time(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 60
    res = migrate(agent, timeout_ms=12000, migration_convergence="postcopy-after")
    assert res.code == 0, res.stderr
    assert ("postcopy", "vm1") in fake_libvirt.calls
    assert not [c for c in fake_libvirt.calls if c[0] == "abortJob"]
    assert next(c for c in fake_libvirt.calls if c[0] == "migrate")[4] & 32768


def test_auto_converge_raises_downtime_at_half_time(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 60
    res = migrate(agent, timeout_ms=12000, migration_convergence="auto-converge", migration_downtime="400")
    assert res.code == 1
    assert ("downtime", "vm1", 800) in fake_libvirt.calls
    assert next(c for c in fake_libvirt.calls if c[0] == "migrate")[4] & 8192


def test_failed_migration_says_where_the_vm_runs(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration["error"] = "Unable to read from monitor: Connection reset by peer"
    res = migrate(agent)
    assert res.code == 1
    assert res.reason.startswith("migration to node2 failed, vm1 still runs on")
    assert "Connection reset by peer" in res.stderr


def test_guard_refusal_and_config_errors_touch_nothing(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    res = migrate(agent, migrate_options="--offline")
    assert res.code == 6
    assert not [c for c in fake_libvirt.calls if c[0] == "migrate"]


def test_migrate_from_waits_for_the_domain(agent, fake_libvirt: FakeLibvirt) -> None:
    dom = fake_libvirt.add("vm1", state=(3, 2))  # paused by the incoming migration
    dom.completed = {"time_elapsed": 900, "downtime": 35}

    def resume() -> None:
        time.sleep(0.6)
        dom.state_ = (1, 2)

    import threading

    threading.Thread(target=resume, daemon=True).start()
    res = agent("migrate_from", OCF_RESKEY_CRM_meta_migrate_source="node1")
    assert res.code == 0, res.stderr
    assert "from node1 completed: total time 900 ms, downtime 35 ms" in res.stderr


def test_migrate_from_needs_source_and_a_domain_that_arrives(agent, fake_libvirt: FakeLibvirt) -> None:
    assert agent("migrate_from").code == 2
    started = time.monotonic()
    res = agent("migrate_from", timeout_ms=5000, OCF_RESKEY_CRM_meta_migrate_source="node1")
    assert res.code == 1 and "did not arrive running from node1" in res.reason
    assert time.monotonic() - started < 5


def test_migrate_from_with_libvirtd_not_answering_uses_proc(agent, fake_libvirt: FakeLibvirt, monkeypatch) -> None:
    """The switch-over was confirmed by migrate_to; a hung local libvirtd must not fail the arrival."""
    fake_libvirt.add("vm1")
    fake_libvirt.hooks["lookup"] = fake_libvirt.block_forever
    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: [4242] if name == "vm1" else [])
    started = time.monotonic()
    res = agent("migrate_from", timeout_ms=6000, OCF_RESKEY_CRM_meta_migrate_source="node1")
    assert time.monotonic() - started < 6
    assert res.code == 0, res.stderr
    assert res.reason.startswith("vm1 arrived: its QEMU (pid 4242) runs here (from /proc); "), res.reason


def test_migrate_from_with_libvirtd_down_and_no_qemu_fails(agent, fake_libvirt: FakeLibvirt, monkeypatch) -> None:
    fake_libvirt.open_error = libvirtError("Failed to connect socket: Connection refused", 38)
    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: [])
    res = agent("migrate_from", OCF_RESKEY_CRM_meta_migrate_source="node1")
    assert res.code == 1
    assert res.reason.startswith("migrate_from node1: ") and "no QEMU process of vm1 here" in res.reason, res.reason


def test_failure_with_the_local_libvirtd_gone_names_the_live_qemu(agent, fake_libvirt: FakeLibvirt,
                                                                  monkeypatch) -> None:
    """libvirtd died under the job: never "runs nowhere" while its QEMU is alive here."""
    import threading

    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=0.6, error="End of file while reading data: Input/output error")
    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: [4242] if name == "vm1" else [])
    threading.Timer(0.3, lambda: setattr(fake_libvirt, "open_error",
                                         libvirtError("Failed to connect socket: Connection refused", 38))).start()
    res = migrate(agent)
    assert res.code == 1
    assert res.reason.startswith("migration to node2 failed, libvirtd on ") and \
        "does not answer; vm1's QEMU (pid 4242) is alive there" in res.reason, res.reason


@pytest.mark.parametrize("reason", [2, 11, 0])  # PAUSED_MIGRATION, PAUSED_STARTING_UP, PAUSED_UNKNOWN
def test_incoming_domain_paused_on_the_target_is_not_an_arrival(agent, fake_libvirt: FakeLibvirt,
                                                               monkeypatch, reason: int) -> None:
    """Found in the lab: the source's libvirtd killed mid-job, the target still holding the paused
    incoming domain. That is no switch-over: migrate_to must fail, not report success."""
    import threading

    from tests.unit.fake_libvirt import FakeDomain

    fake_libvirt.add("vm1")
    incoming = FakeDomain(fake_libvirt, "vm1", "<domain><name>vm1</name></domain>", False)
    incoming.state_ = (3, reason)  # VIR_DOMAIN_PAUSED, as libvirt holds the incoming domain
    fake_libvirt.hosts["node2"] = {"vm1": incoming}
    fake_libvirt.migration.update(duration=0.6, error="End of file while reading data: Input/output error")
    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: [4242] if name == "vm1" else [])
    threading.Timer(0.3, lambda: setattr(fake_libvirt, "open_error",
                                         libvirtError("Failed to connect socket: Connection refused", 38))).start()
    res = migrate(agent)
    assert res.code == 1, res.stderr
    assert "vm1's QEMU (pid 4242) is alive there" in res.reason, res.reason


def test_abort_reason_names_a_stalled_stream(agent, fake_libvirt: FakeLibvirt) -> None:
    """The scripted job's byte count never grows: at the deadline the reason says so."""
    fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 60
    res = migrate(agent, timeout_ms=24000, migration_progress_interval="1")
    assert res.code == 1
    assert "no data moved in the last " in res.stderr and "migration network down?" in res.stderr, res.stderr


# -- virsh's convergence options in migrate_options (what heartbeat users have in their CIBs) ------


def test_timeout_suspends_the_guest_at_n_seconds_and_it_arrives(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 60  # converges only once the guest no longer dirties memory
    started = time.monotonic()
    res = migrate(agent, timeout_ms=30000, migrate_options="--timeout 1")
    assert res.code == 0, res.stderr
    assert time.monotonic() - started < 10  # at 1 s, not at half of the migration's time
    assert ("suspend", "vm1") in fake_libvirt.calls
    assert "guest suspended" in res.stderr
    assert fake_libvirt.hosts["node2"]["vm1"].state_[0] == 1  # resumed on the target


def test_a_suspended_guest_is_resumed_when_the_migration_is_aborted(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=60, suspend_finishes=False)
    res = migrate(agent, timeout_ms=12000, migrate_options="--timeout 1 --timeout-suspend")
    assert res.code == 1, res.stderr
    assert [c[0] for c in fake_libvirt.calls if c[0] in ("suspend", "abortJob", "resume")] == \
        ["suspend", "abortJob", "resume"]
    assert fake_libvirt.domains["vm1"].state_[0] == 1
    assert "vm1 still runs on" in res.reason


def test_a_suspended_guest_is_resumed_when_the_migration_fails(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=2.0, suspend_finishes=False, error="Unable to write to socket")
    res = migrate(agent, timeout_ms=20000, migrate_options="--timeout 1")
    assert res.code == 1, res.stderr
    assert ("resume", "vm1") in fake_libvirt.calls
    assert fake_libvirt.domains["vm1"].state_[0] == 1


def test_timeout_postcopy_switches_at_n_seconds(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 60
    started = time.monotonic()
    res = migrate(agent, timeout_ms=30000, migrate_options="--postcopy --timeout 1 --timeout-postcopy")
    assert res.code == 0, res.stderr
    assert time.monotonic() - started < 10
    assert ("postcopy", "vm1") in fake_libvirt.calls and ("suspend", "vm1") not in fake_libvirt.calls


@pytest.mark.parametrize("options, convergence, match", [
    ("--timeout 5 --timeout-postcopy", "none", "needs --postcopy"),
    ("--postcopy-after-precopy", "none", "needs --postcopy"),
    ("--postcopy --postcopy-after-precopy", "auto-converge", "keep one of them"),
    ("--postcopy --postcopy-after-precopy=yes", "none", "takes no value"),
    ("--timeout-suspend", "none", "needs --timeout N"),
    ("--timeout 5 --timeout-suspend --timeout-postcopy --postcopy", "none", "mutually exclusive"),
    ("--timeout 0", "none", "at least 1"),
    ("--timeout", "none", "needs a value"),
    ("--timeout 5", "auto-converge", "keep one of them"),
])
def test_convergence_options_virsh_refuses_are_code_6(agent, fake_libvirt: FakeLibvirt, options: str,
                                                       convergence: str, match: str) -> None:
    fake_libvirt.add("vm1")
    res = migrate(agent, migrate_options=options, migration_convergence=convergence)
    assert res.code == 6, res.stderr
    assert match in res.reason
    assert not [c for c in fake_libvirt.calls if c[0] == "migrate"]
