"""The agent's DRBD checks, with the fake drbdsetup/drbdadm of tests/fakes/drbd on PATH."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.unit.fake_libvirt import FakeLibvirt

ROOT = Path(__file__).resolve().parents[3]
FAKES = ROOT / "tests" / "fakes" / "drbd"
FIXTURES = ROOT / "tests" / "fixtures" / "drbd"

DRBD_DOMAIN = """<domain type='qemu'><name>vm1</name><memory unit='MiB'>128</memory><devices>
<disk type='block' device='disk'><source dev='/dev/drbd/by-res/beijing/0'/><target dev='vda'/></disk>
</devices></domain>"""


@pytest.fixture
def drbd9(monkeypatch: pytest.MonkeyPatch, config_file: Path):
    config_file.write_text(DRBD_DOMAIN)
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{FAKES / 'pacemaker'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(FIXTURES / "drbd9-proc-synthetic-version-only.txt"))
    monkeypatch.setenv("FAKE_DRBD_FIXTURES", str(FIXTURES))
    monkeypatch.setenv("CIB_file", str(FIXTURES / "cib-synthetic-empty.xml"))
    monkeypatch.setenv("FAKE_DRBDSETUP_SHOW", "drbd9-show-json-derived-beijing-two-primaries.txt")

    def status(name: str) -> None:
        monkeypatch.setenv("FAKE_DRBDSETUP_STATUS", f"drbd9-status-json-{name}.txt")

    return status


def test_start_requires_local_primary(agent, fake_libvirt: FakeLibvirt, drbd9) -> None:
    drbd9("salt-shanghai-secondary")
    res = agent("start", drbd_resources="shanghai")
    assert res.code == 1
    assert "DRBD resource shanghai is Secondary on this node" in res.reason
    assert "vm1" not in fake_libvirt.domains
    drbd9("derived-dual-primary")
    assert agent("start").code == 0
    assert "vm1" in fake_libvirt.domains


def test_start_with_drbd_guard_off_does_not_read_drbd(agent, fake_libvirt: FakeLibvirt, drbd9,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DRBD_HANG", "all")
    assert agent("start", drbd_guard="off").code == 0


def test_migrate_to_refused_leaves_domain_running(agent, fake_libvirt: FakeLibvirt, drbd9) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)
    for fixture, words in (("derived-peer-inconsistent", "Inconsistent"),
                           ("derived-disconnected", "needs Connected"),
                           ("salt-beijing-primary", "needs Primary")):
        drbd9(fixture)
        res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="salt-node3")  # type: ignore[arg-type]
        assert res.code == 1, res.stderr
        assert res.reason.startswith("DRBD guard refused migration to salt-node3: "), res.reason
        assert words in res.stderr, res.stderr  # every failed check is in the log
        assert fake_libvirt.domains["vm1"].state_ == (1, 1)
    assert not [c for c in fake_libvirt.calls if c[0] in ("shutdown", "destroy", "save")]


def test_migrate_to_allowed_by_guard_migrates(agent, fake_libvirt: FakeLibvirt, drbd9) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)
    drbd9("derived-dual-primary")
    res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="salt-node3",  # type: ignore[arg-type]
                migration_transport="tcp")
    assert res.code == 0, res.stderr
    assert "DRBD guard: migrating to salt-node3 is safe" in res.stderr
    assert "vm1" in fake_libvirt.hosts["salt-node3"] and "vm1" not in fake_libvirt.domains


def test_migrate_to_with_hung_drbd_tool_is_refused_in_time(agent, fake_libvirt: FakeLibvirt, drbd9,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)
    drbd9("derived-dual-primary")
    monkeypatch.setenv("FAKE_DRBD_HANG", "drbdsetup")
    started = time.monotonic()
    res = agent("migrate_to", timeout_ms=8000, OCF_RESKEY_CRM_meta_migrate_target="salt-node3")  # type: ignore
    assert time.monotonic() - started < 8
    assert res.code == 1 and "refused" in res.reason


def test_migrate_to_needs_a_target_and_a_running_domain(agent, fake_libvirt: FakeLibvirt, drbd9) -> None:
    drbd9("derived-dual-primary")
    assert agent("migrate_to").code == 2
    res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="salt-node3")  # type: ignore[arg-type]
    assert res.code == 1 and "not running on this node" in res.reason


def test_deep_monitor_reports_drbd_trouble(agent, fake_libvirt: FakeLibvirt, drbd9,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)
    drbd9("salt-shanghai-secondary")
    assert agent("monitor", interval_ms=10000, drbd_resources="shanghai").code == 0  # level 0: lean
    monkeypatch.setenv("OCF_CHECK_LEVEL", "10")
    res = agent("monitor", interval_ms=10000, drbd_resources="shanghai", OCF_CHECK_LEVEL="10")  # type: ignore
    assert res.code == 1 and "shanghai is Secondary under the running domain" in res.reason


@pytest.mark.parametrize("params,reason", [
    ({"drbd_guard": "sometimes"}, "not one of"),
    ({"drbd_resources": "r0;reboot"}, "not a DRBD resource name"),
    ({"drbd_peer_names": "node1"}, "NODE=DRBD_HOST"),
    ({"drbd_wait": "-5"}, "below the minimum"),
])
def test_drbd_parameter_errors(agent, params, reason) -> None:
    res = agent("validate-all", **params)
    assert res.code == 6 and reason in res.reason


def _later(seconds: float, **env: str) -> threading.Timer:
    """Change the fake tools' environment while the agent runs (they read it on every call)."""
    timer = threading.Timer(seconds, lambda: os.environ.update(env))
    timer.start()
    return timer


def test_drbd_change_during_the_migration_aborts_it(agent, fake_libvirt: FakeLibvirt, drbd9,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)
    fake_libvirt.migration["duration"] = 30
    drbd9("derived-dual-primary")
    monkeypatch.setenv("FAKE_DRBDSETUP_STATUS", "drbd9-status-json-derived-dual-primary.txt")  # restored after
    _later(1.5, FAKE_DRBDSETUP_STATUS="drbd9-status-json-derived-peer-inconsistent.txt").join(0)
    started = time.monotonic()
    res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="salt-node3",  # type: ignore[arg-type]
                migration_transport="tcp")
    elapsed = time.monotonic() - started
    assert res.code == 1, res.stderr
    assert res.reason.startswith("migration to salt-node3 aborted, vm1 still runs on"), res.reason
    assert "DRBD changed: beijing: " in res.reason and "Inconsistent" in res.stderr
    assert ("abortJob", "vm1") in fake_libvirt.calls
    assert 1.5 < elapsed < 5, elapsed  # within a watch interval of the change, not at the deadline
    assert "vm1" in fake_libvirt.domains and "vm1" not in fake_libvirt.hosts.get("salt-node3", {})


def test_drbd_tool_hanging_during_the_migration_aborts_it_in_bounded_time(
        agent, fake_libvirt: FakeLibvirt, drbd9, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)
    fake_libvirt.migration["duration"] = 60
    drbd9("derived-dual-primary")
    monkeypatch.setenv("FAKE_DRBD_HANG", "")
    _later(1.5, FAKE_DRBD_HANG="drbdsetup").join(0)
    started = time.monotonic()
    res = agent("migrate_to", timeout_ms=40000, OCF_RESKEY_CRM_meta_migrate_target="salt-node3",  # type: ignore
                migration_transport="tcp")
    elapsed = time.monotonic() - started
    assert res.code == 1, res.stderr
    assert "aborted, vm1 still runs on" in res.reason and "could not read DRBD state" in res.reason, res.reason
    assert elapsed < 1.5 + 1 + 5 + 3, elapsed  # the watch's own bound (5 s), far from the 40 s timeout
    assert "vm1" in fake_libvirt.domains


def test_migration_without_drbd_is_not_watched(agent, fake_libvirt: FakeLibvirt, config_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake_libvirt.add("vm1", xml=config_file.read_text())  # no disk on DRBD
    fake_libvirt.migration["duration"] = 2.5
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DRBD_HANG", "all")  # any DRBD read would hang
    res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="node2",  # type: ignore[arg-type]
                migration_transport="tcp")
    assert res.code == 0, res.stderr
    assert "vm1" in fake_libvirt.hosts["node2"]


def test_migrate_from_checks_drbd_under_the_arrived_domain(agent, fake_libvirt: FakeLibvirt, drbd9) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)  # it has arrived and runs here
    drbd9("salt-shanghai-secondary")
    res = agent("migrate_from", drbd_resources="shanghai",
                OCF_RESKEY_CRM_meta_migrate_source="salt-node3")  # type: ignore[arg-type]
    assert res.code == 1, res.stderr
    assert res.reason.startswith("arrived from salt-node3 but DRBD resource shanghai is Secondary under the "
                                 "arrived domain"), res.reason
    assert "it must not run on this node's data" in res.stderr
    drbd9("derived-dual-primary")
    assert agent("migrate_from", OCF_RESKEY_CRM_meta_migrate_source="salt-node3").code == 0  # type: ignore
