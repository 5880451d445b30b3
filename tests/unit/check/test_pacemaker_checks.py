"""Pacemaker layer: CIBs made by crmsh, pcs and cibadmin (tests/fixtures/cib/generate.sh)."""

from __future__ import annotations

import pytest

from tests.unit.check.helpers import problems, run_check


@pytest.mark.parametrize("cib", ["crmsh-good.xml", "pcs-good.xml", "crmsh-ms-good.xml", "crmsh-nested-meta.xml"])
def test_correct_configurations_pass(cib: str) -> None:
    report = run_check(cib)
    assert problems(report) == []
    assert report.exit_code == 0
    assert {r.name for r in report.results} >= {
        "vm-agent", "allow-migrate", "fencing-enabled", "fencing-device", "maintenance-mode", "drbd-clone",
        "promoted-max", "notify", "colocation", "order", "fence-constraint", "disk-on-drbd", "allow-two-primaries"}


def test_legacy_ms_form_is_recognised() -> None:
    report = run_check("crmsh-ms-good.xml")
    clone = report.by_name("drbd-clone")[0]
    assert "legacy ms (master) ms_drbd_r0" in clone.found
    assert report.by_name("promoted-max")[0].found == "ms_drbd_r0: master-max=2"
    assert "ms_drbd_r0:Master" in report.by_name("colocation")[0].found


# (fixture, failing check, text in what was found, crm fix, pcs fix)
DEFECTS = [
    ("crmsh-promoted-max-1.xml", "promoted-max", "promoted-max=1",
     "crm resource meta ms_drbd_r0 set promoted-max 2", "pcs resource meta ms_drbd_r0 promoted-max=2"),
    ("pcs-promoted-max-1.xml", "promoted-max", "promoted-max=1",
     "crm resource meta ms_drbd_r0 set promoted-max 2", "pcs resource meta ms_drbd_r0 promoted-max=2"),
    ("crmsh-ms-master-max-1.xml", "promoted-max", "master-max=1",
     "crm resource meta ms_drbd_r0 set promoted-max 2; crm resource meta ms_drbd_r0 delete master-max",
     "pcs resource meta ms_drbd_r0 promoted-max=2 master-max="),
    ("crmsh-notify-false.xml", "notify", "notify=false",
     "crm resource meta ms_drbd_r0 set notify true", "pcs resource meta ms_drbd_r0 notify=true"),
    ("crmsh-no-allow-migrate.xml", "allow-migrate", "allow-migrate not set",
     "crm resource meta vm1 set allow-migrate true", "pcs resource meta vm1 allow-migrate=true"),
    ("pcs-no-allow-migrate.xml", "allow-migrate", "allow-migrate not set",
     "crm resource meta vm1 set allow-migrate true", "pcs resource meta vm1 allow-migrate=true"),
    ("crmsh-no-colocation.xml", "colocation", "no colocation of vm1 with the Promoted role of ms_drbd_r0",
     "crm configure colocation col_vm1_on_ms_drbd_r0 inf: vm1:Started ms_drbd_r0:Promoted",
     "pcs constraint colocation add vm1 with Promoted ms_drbd_r0 score=INFINITY id=col_vm1_on_ms_drbd_r0"),
    ("crmsh-colocation-no-role.xml", "colocation", "needs the Promoted role",
     "crm configure delete col_vm1_on_ms_drbd_r0; crm configure colocation col_vm1_on_ms_drbd_r0 inf: vm1:Started "
     "ms_drbd_r0:Promoted", "pcs constraint delete col_vm1_on_ms_drbd_r0; pcs constraint colocation add vm1 "
     "with Promoted ms_drbd_r0 score=INFINITY id=col_vm1_on_ms_drbd_r0"),
    ("crmsh-no-order.xml", "order", "no order: ms_drbd_r0:promote then vm1:start",
     "crm configure order ord_ms_drbd_r0_before_vm1 Mandatory: ms_drbd_r0:promote vm1:start",
     "pcs constraint order promote ms_drbd_r0 then start vm1 kind=Mandatory id=ord_ms_drbd_r0_before_vm1"),
    ("crmsh-order-start-start.xml", "order", "ms_drbd_r0:start then vm1:start",
     "crm configure delete ord_ms_drbd_r0_before_vm1; crm configure order", "pcs constraint order promote"),
    ("crmsh-stonith-disabled.xml", "fencing-enabled", "stonith-enabled=false",
     "crm configure property stonith-enabled=true", "pcs property set stonith-enabled=true"),
    ("crmsh-no-fencing-device.xml", "fencing-device", "no fencing (stonith) device",
     "crm configure primitive fence-NODE stonith:", "pcs stonith create fence-NODE"),
    ("crmsh-fence-constraint.xml", "fence-constraint", "drbd-fence-by-handler-r0-ms_drbd_r0 is in the CIB",
     "crm configure delete drbd-fence-by-handler-r0-ms_drbd_r0",
     "pcs constraint delete drbd-fence-by-handler-r0-ms_drbd_r0"),
    ("crmsh-maintenance-mode.xml", "maintenance-mode", "maintenance-mode=true",
     "crm configure property maintenance-mode=false", "pcs property set maintenance-mode=false"),
    ("crmsh-vm-unmanaged.xml", "vm-managed", "is-managed=false",
     "crm resource manage vm1", "pcs resource manage vm1"),
    ("crmsh-agent-dummy.xml", "vm-agent", "ocf:heartbeat:Dummy, which cannot live-migrate",
     "livemig config", "livemig config"),
    ("crmsh-drbd-not-cloned.xml", "drbd-clone", "drbd_r0 for r0 is not in a promotable clone",
     "crm configure clone ms_drbd_r0 drbd_r0 meta promotable=true promoted-max=2",
     "--no-default-ops; pcs resource promotable drbd_r0 ms_drbd_r0 meta promoted-max=2"),
]


@pytest.mark.parametrize("cib, check, found, crm_fix, pcs_fix", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_each_defect_alone_is_found_with_its_fix(cib: str, check: str, found: str, crm_fix: str,
                                                 pcs_fix: str) -> None:
    report = run_check(cib)
    bad = problems(report)
    assert [r.name for r in bad] == [check], [f"{r.name}: {r.found}" for r in bad]
    assert bad[0].status == "fail" and bad[0].layer == "pacemaker"
    assert found in bad[0].found
    assert crm_fix in bad[0].fix.render()
    assert pcs_fix in bad[0].fix.render(pcs=True)
    assert report.exit_code == 1


def test_heartbeat_virtualdomain_is_a_warning() -> None:
    report = run_check("crmsh-agent-heartbeat-VirtualDomain.xml")
    assert problems(report) == []
    agent = report.by_name("vm-agent")[0]
    assert agent.status == "warn" and "ocf:livemig:VirtualDomain" in agent.fix.render()
    assert report.exit_code == 0


def test_vm_by_domain_name_and_missing_vm() -> None:
    assert run_check(vm="nosuchvm").by_name("vm-resource")[0].status == "fail"
    # the domain name resolves when --domain-xml names it and one VirtualDomain primitive exists
    report = run_check(vm="vm1")
    assert report.vm == "vm1" and report.domain == "vm1"


def test_unreadable_cib_is_exit_2() -> None:
    from tests.unit.drbd.scripted import ScriptedRunner
    report = run_check(runner=ScriptedRunner({"cibadmin": (1, "")}))
    assert report.exit_code == 2 and report.results[0].name == "cib"
