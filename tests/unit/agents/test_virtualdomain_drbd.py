"""The agent's DRBD checks, with the fake drbdsetup/drbdadm of tests/fakes/drbd on PATH."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

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


# -- DrbdPolicy on its own: one local rule, explicit resources plus the traceable disks' ------------

PLAN_DOMAIN = """<domain type='kvm'><name>vm1</name><devices>
<disk type='block' device='disk'><source dev='{a}'/><target dev='vda'/></disk>
<disk type='block' device='disk'><source dev='{b}'/><target dev='vdb'/></disk>
</devices></domain>"""


def _plan(monkeypatch: pytest.MonkeyPatch, answers: Dict[str, Any], xml: Optional[str] = None,
          proc: str = "drbd9-proc-synthetic-version-only.txt", **values: str) -> Any:
    from livemig.agents.virtualdomain.drbd import DrbdPolicy
    from livemig.ocf.deadline import Deadline
    from tests.unit.drbd.scripted import ScriptedRunner

    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(FIXTURES / proc))
    runner = ScriptedRunner(dict(answers, cibadmin=(0, (FIXTURES / "cib-synthetic-empty.xml").read_text())))
    return DrbdPolicy(values, xml, runner, Deadline(20), logging.getLogger("test"))


def _status9(*docs: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"drbdsetup status": (0, json.dumps([res for doc in docs for res in doc]))}


@pytest.mark.parametrize("change, statement, advice", [
    ({"suspended": True}, "DRBD resource r0: I/O is suspended", "the VM would hang on its I/O"),
    ({"suspended": "maybe"}, "DRBD resource r0: I/O is of unknown state (suspended or not)",
     "the VM would hang on its I/O"),
    ({"quorum": False}, "DRBD resource r0 volume 0: quorum is lost", "starting the VM on it would write without "
                                                                     "quorum"),
    ({"role": "Secondary"}, "DRBD resource r0 is Secondary", "the VM needs it Primary: check the promotable clone "
                                                             "(promoted-max=2)"),
    ({"disk": "Outdated"}, "DRBD resource r0 volume 0: local disk is Outdated, not UpToDate",
     "starting the VM on it would use data that is not current"),
])
def test_start_monitor_and_arrival_apply_the_one_local_rule(monkeypatch: pytest.MonkeyPatch, change: Dict[str, Any],
                                                            statement: str, advice: str) -> None:
    from livemig.ocf.errors import GenericError
    from tests.unit.drbd.builders import status9_doc

    plan = _plan(monkeypatch, _status9(status9_doc(**change)), drbd_resources="r0")
    with pytest.raises(GenericError) as raised:
        plan.check_start()
    assert str(raised.value).startswith(f"{statement} on this node; {advice}"), raised.value
    with pytest.raises(GenericError) as raised:
        plan.check_monitor()
    assert str(raised.value) == f"{statement} under the running domain"
    with pytest.raises(GenericError) as raised:
        plan.check_arrived("beta")
    assert str(raised.value) == f"arrived from beta but {statement} under the arrived domain: it must not run on " \
                                "this node's data"
    healthy = _plan(monkeypatch, _status9(status9_doc()), drbd_resources="r0")
    healthy.check_start()
    healthy.check_monitor()
    healthy.check_arrived("beta")


def test_start_on_drbd8_refuses_a_configured_minor_that_is_down(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    from livemig.ocf.errors import GenericError
    from tests.unit.drbd.builders import drbd8_answers, proc8, proc8_line

    (tmp_path / "proc").write_text(proc8(proc8_line(minor=0)))
    plan = _plan(monkeypatch, drbd8_answers("r0", (0, 1)), proc=str(tmp_path / "proc"), drbd_resources="r0")
    with pytest.raises(GenericError) as raised:
        plan.check_start()
    assert str(raised.value) == ("DRBD resource r0: minor 1 is not in /proc/drbd on this node; the VM needs it up "
                                 "and Primary here (is the DRBD clone running and promoted on this node?)")
    assert plan.runner.argv_list() == [["drbdadm", "sh-minor", "r0"]]  # no peer needed for a local check


def test_explicit_resources_are_joined_by_those_of_traceable_disks(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.drbd.builders import status9_doc

    xml = PLAN_DOMAIN.format(a="/dev/drbd/by-res/r0/0", b="/dev/drbd/by-res/r9/0")
    plan = _plan(monkeypatch, _status9(status9_doc(name="r9"), status9_doc(name="r0", peer_disk="Inconsistent")),
                 xml, drbd_resources="r9 r5")
    assert plan.resources == ["r9", "r5", "r0"]
    assert _plan(monkeypatch, {}, xml).resources == ["r0", "r9"]
    assert _plan(monkeypatch, {}, xml, drbd_resources="r0").resources == ["r0", "r9"]
    assert _plan(monkeypatch, {}, None, drbd_resources="r9").resources == ["r9"]  # no XML: the list alone
    assert _plan(monkeypatch, {}, xml, drbd_guard="off", drbd_resources="r0").resources == []  # nothing to check


def test_guard_checks_a_detected_resource_the_explicit_list_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from livemig.ocf.errors import GenericError
    from tests.unit.drbd.builders import status9_doc

    xml = PLAN_DOMAIN.format(a="/dev/drbd/by-res/r9/0", b="/dev/drbd/by-res/r0/0")
    show = [{"resource": n, "options": {"quorum": "off"}, "connections": [{"_peer_node_id": 1, "net": {}}]}
            for n in ("r9", "r0")]
    answers = dict(_status9(status9_doc(name="r9"), status9_doc(name="r0", peer_disk="Inconsistent")))
    answers["drbdsetup show"] = (0, json.dumps(show))
    plan = _plan(monkeypatch, answers, xml, drbd_resources="r9")
    with pytest.raises(GenericError, match="^DRBD guard refused migration to beta: r0: volume 0: beta disk is "
                                           "Inconsistent; needs UpToDate"):
        plan.guard("beta")


def test_detection_error_with_an_explicit_list_refuses_naming_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    from livemig.ocf.errors import GenericError
    from tests.unit.drbd.builders import status9_doc

    # /dev/drbd11 is minor 11, which drbdsetup status does not show: its resource cannot be told.
    xml = PLAN_DOMAIN.format(a="/dev/drbd/by-res/r9/0", b="/dev/drbd11")
    plan = _plan(monkeypatch, _status9(status9_doc(name="r9")), xml, drbd_resources="r9")
    assert plan.resources == ["r9"] and plan.detection_error
    with pytest.raises(GenericError) as raised:
        plan.guard("beta")
    assert str(raised.value).startswith("DRBD guard refused migration to beta: disk vdb is on DRBD minor 11")
    assert "drbd_resources stands only for" in str(raised.value)


@pytest.mark.parametrize("explicit, expected", [("r9", True), ("", False)])
def test_detection_leaves_untraceable_disks_to_an_explicit_list(monkeypatch: pytest.MonkeyPatch, explicit: str,
                                                                 expected: bool) -> None:
    seen: List[bool] = []

    def fake(xml_text: str, runner: Any, deadline: Any, *, reader: Any = None,
             untraceable_ok: bool = False) -> List[str]:
        seen.append(untraceable_ok)
        return ["r0"]

    monkeypatch.setattr("livemig.drbd.mapping.resources_from_domain_xml", fake)
    plan = _plan(monkeypatch, {}, DRBD_DOMAIN, drbd_resources=explicit)
    assert seen == [expected] and plan.resources == ([explicit] if explicit else []) + ["r0"]
