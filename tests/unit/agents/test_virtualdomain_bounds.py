"""Long jobs bounded by the action's deadline, an abort that always reaches libvirt, post-copy never undone.

Issue 13, findings 3 and 4 (post-copy). Each test here failed before the change that it names.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from tests.unit.fake_libvirt import FakeLibvirt


@pytest.fixture
def bounds(monkeypatch: pytest.MonkeyPatch) -> List[Tuple[str, float]]:
    """Records the bound of every libvirt call made through the connection's bounded call."""
    import livemig.virt.connection as connection

    seen: List[Tuple[str, float]] = []
    real = connection.bounded_call

    def recording(what: str, seconds: float, fn: Any, *args: Any) -> Any:
        seen.append((what, seconds))
        return real(what, seconds, fn, *args)

    monkeypatch.setattr(connection, "bounded_call", recording)
    return seen


def _bound_of(seen: List[Tuple[str, float]], call: str) -> float:
    found = [seconds for what, seconds in seen if what.split(":")[-1] == call]
    assert found, f"no {call} call among {seen}"
    return found[0]


def test_create_gets_the_start_deadline_not_30s(agent, fake_libvirt: FakeLibvirt, bounds) -> None:
    assert agent("start", timeout_ms=300000).code == 0
    assert _bound_of(bounds, "create") > 200  # a large guest may take minutes to set up


def test_save_and_restore_get_the_deadline_not_30s(agent, fake_libvirt: FakeLibvirt, bounds,
                                                     tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    assert agent("start", timeout_ms=300000, snapshot=str(snapshots)).code == 0
    assert agent("stop", timeout_ms=300000, snapshot=str(snapshots)).code == 0
    assert (snapshots / "vm1.state").exists()
    assert _bound_of(bounds, "save") > 200
    bounds.clear()
    assert agent("start", timeout_ms=300000, snapshot=str(snapshots)).code == 0
    assert _bound_of(bounds, "restore") > 200
    assert not (snapshots / "vm1.state").exists()


def test_a_save_slower_than_the_stop_is_aborted_not_killed(agent, fake_libvirt: FakeLibvirt, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the save timing out marked libvirtd stuck, and stop went looking for QEMU in /proc."""
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    fake_libvirt.add("vm1")
    fake_libvirt.hooks["save"] = lambda: fake_libvirt.aborted.wait(60)  # until the agent aborts the save
    killed: List[int] = []
    monkeypatch.setattr("os.kill", lambda pid, sig: killed.append(pid))
    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: [4242])
    started = time.monotonic()
    res = agent("stop", timeout_ms=12000, snapshot=str(snapshots))
    assert time.monotonic() - started < 12
    assert ("abortJob", "vm1") in fake_libvirt.calls
    assert not killed
    assert res.code == 0, res.stderr  # the abort let the guest run on; it was shut down instead
    assert "vm1" not in fake_libvirt.domains
    assert ("shutdown", "vm1", 0) in fake_libvirt.calls


def test_a_slow_progress_query_does_not_block_the_abort(agent, fake_libvirt: FakeLibvirt) -> None:
    """Before: one jobStats slower than its 5 s cap marked the connection stuck; abortJob was never sent."""
    dom = fake_libvirt.add("vm1")
    fake_libvirt.migration["duration"] = 30.0
    slow = threading.Event()
    real_stats = dom.jobStats

    def slow_stats(flags: int = 0) -> Any:
        if not slow.is_set():
            slow.set()
            time.sleep(6)  # longer than the 5 s cap of a progress query
        return real_stats(flags)

    dom.jobStats = slow_stats  # type: ignore[method-assign]
    res = agent("migrate_to", timeout_ms=12000, migration_transport="tcp",
                OCF_RESKEY_CRM_meta_migrate_target="node2")
    assert slow.is_set()
    assert ("abortJob", "vm1") in fake_libvirt.calls, res.stderr
    assert res.code == 1 and "aborted" in res.reason
    assert "vm1" in fake_libvirt.domains


def test_postcopy_at_the_deadline_is_not_a_failure(agent, fake_libvirt: FakeLibvirt) -> None:
    """Once post-copy has started the VM runs on the target: a failure would make Pacemaker stop both halves."""
    fake_libvirt.add("vm1")
    fake_libvirt.migration.update(duration=30.0, postcopy_finishes=False)
    res = agent("migrate_to", timeout_ms=12000, migration_transport="tcp", migration_convergence="postcopy-after",
                OCF_RESKEY_CRM_meta_migrate_target="node2")
    assert ("postcopy", "vm1") in fake_libvirt.calls
    assert res.code == 0, res.stderr
    assert "post-copy" in res.reason and "node2" in res.reason
    assert ("abortJob", "vm1") not in fake_libvirt.calls


@pytest.mark.parametrize("state", [(3, 12), (1, 10), (3, 13), (1, 11)],
                         ids=["source-paused-postcopy", "target-running-postcopy", "source-postcopy-failed",
                              "target-running-postcopy-failed"])
def test_stop_never_destroys_a_domain_in_postcopy(agent, fake_libvirt: FakeLibvirt, state: Tuple[int, int]) -> None:
    fake_libvirt.add("vm1", state=state)
    res = agent("stop", timeout_ms=5000)
    assert res.code == 1 and "post-copy" in res.reason, res.stderr
    assert not [c for c in fake_libvirt.calls if c[0] in ("shutdown", "destroy")]
    assert "vm1" in fake_libvirt.domains


def test_stop_waits_for_postcopy_to_end(agent, fake_libvirt: FakeLibvirt) -> None:
    dom = fake_libvirt.add("vm1", state=(1, 10))
    timer = threading.Timer(1.0, lambda: setattr(dom, "state_", (1, 2)))  # the migration completed here
    timer.start()
    try:
        res = agent("stop", timeout_ms=20000)
    finally:
        timer.cancel()
    assert res.code == 0, res.stderr
    assert "vm1" not in fake_libvirt.domains
    assert ("shutdown", "vm1", 0) in fake_libvirt.calls


def test_source_domain_gone_when_postcopy_ends_is_stopped(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1", state=(3, 12))
    timer = threading.Timer(1.0, lambda: fake_libvirt.domains.pop("vm1"))
    timer.start()
    try:
        res = agent("stop", timeout_ms=20000)
    finally:
        timer.cancel()
    assert res.code == 0, res.stderr
    assert not [c for c in fake_libvirt.calls if c[0] in ("shutdown", "destroy")]


def test_migrate_from_at_its_deadline_in_postcopy_has_arrived(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1", state=(1, 10))  # runs here, still pulling memory from the source
    res = agent("migrate_from", timeout_ms=5000, OCF_RESKEY_CRM_meta_migrate_source="node1")
    assert res.code == 0, res.stderr
    assert "post-copy" in res.reason
