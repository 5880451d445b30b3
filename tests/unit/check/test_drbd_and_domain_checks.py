"""DRBD configuration (dump-xml of 8.3, 8.4 and 9 configs), domain disks, runtime and libvirt rows."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from livemig.check.domain import check_domain, check_guard_resources
from livemig.check.drbd_config import check_drbd_config, parse_views
from livemig.check.libvirt import check_libvirt, target_uri
from livemig.check.runtime import check_runtime
from livemig.ocf.deadline import Deadline
from tests.unit.check.helpers import CIB, DRBD, problems, run_check
from tests.unit.drbd.scripted import FIXTURES, ScriptedRunner, fixture


def drbd_rows(name: str) -> list:
    return check_drbd_config((DRBD / name).read_text(encoding="utf-8"), ["r0"])


@pytest.mark.parametrize("name, generation", [
    ("check-9-good.dump-xml.txt", "9"), ("check-9-two-primaries-resource-level.dump-xml.txt", "9"),
    ("check-84-good.dump-xml.txt", "8.4"), ("check-83-good.dump-xml.txt", "8.3"),
])
def test_good_configs_of_each_generation_pass(name: str, generation: str) -> None:
    text = (DRBD / name).read_text(encoding="utf-8")
    assert parse_views(text)["r0"].generation == generation
    rows = check_drbd_config(text, ["r0"])
    assert [r for r in rows if r.status != "ok"] == []
    assert {r.name for r in rows} == {"allow-two-primaries", "protocol", "fencing", "fence-peer-handler",
                                      "unfence-peer-handler", "after-sb"}


def test_83_flag_and_protocol_attribute_are_read() -> None:
    rows = drbd_rows("check-83-good.dump-xml.txt")
    assert [r.found for r in rows if r.name in ("allow-two-primaries", "protocol")] == [
        "allow-two-primaries yes", "protocol C"]


# (dump, failing check, status, found, fix)
CONFIG_DEFECTS = [
    ("check-9-no-two-primaries.dump-xml.txt", "allow-two-primaries", "fail",
     "allow-two-primaries not set (no) (connection to beta)", "net { allow-two-primaries yes; }"),
    ("check-9-connection-overrides-no.dump-xml.txt", "allow-two-primaries", "fail",
     "allow-two-primaries no (connection to beta)", "each connection section"),
    ("check-84-no-two-primaries.dump-xml.txt", "allow-two-primaries", "fail", "not set",
     "net { allow-two-primaries yes; }; then run `drbdadm adjust r0` on both nodes"),
    ("check-83-no-two-primaries.dump-xml.txt", "allow-two-primaries", "fail", "not set",
     "net { allow-two-primaries; }"),
    ("check-9-protocol-a.dump-xml.txt", "protocol", "fail", "protocol A", "net { protocol C; }"),
    ("check-83-protocol-b.dump-xml.txt", "protocol", "fail", "protocol B", "protocol C; (at resource level)"),
    ("check-9-fencing-resource-only.dump-xml.txt", "fencing", "fail", "fencing resource-only",
     "net { fencing resource-and-stonith; }"),
    ("check-9-no-fence-handler.dump-xml.txt", "fence-peer-handler", "fail", "no fence-peer handler",
     'handlers { fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh"; }'),
    ("check-84-fence-handler-9.dump-xml.txt", "fence-peer-handler", "fail", "needs crm-fence-peer.sh",
     'fence-peer "/usr/lib/drbd/crm-fence-peer.sh"'),
    ("check-9-no-unfence-handler.dump-xml.txt", "unfence-peer-handler", "fail", "crm-unfence-peer.9.sh",
     'handlers { unfence-peer "/usr/lib/drbd/crm-unfence-peer.9.sh"; }'),
    ("check-9-after-sb-discard.dump-xml.txt", "after-sb", "warn",
     "after-sb-1pri discard-secondary, after-sb-2pri violently-as0p",
     "net { after-sb-1pri disconnect; after-sb-2pri disconnect; }"),
]


@pytest.mark.parametrize("dump, check, status, found, fix", CONFIG_DEFECTS, ids=[d[0] for d in CONFIG_DEFECTS])
def test_each_config_defect_is_found_with_its_fix(dump: str, check: str, status: str, found: str, fix: str) -> None:
    rows = [r for r in drbd_rows(dump) if r.status != "ok"]
    assert [(r.name, r.status) for r in rows] == [(check, status)], [r.found for r in rows]
    assert found in rows[0].found
    assert fix in rows[0].fix.render() and "drbdadm adjust r0" in rows[0].fix.render()
    if dump.startswith("check-9") or dump.startswith("check-84"):
        assert f"in /etc/drbd.d/{dump.replace('.dump-xml.txt', '.res')}" in rows[0].fix.render()


def test_become_primary_on_both_without_two_primaries() -> None:
    rows = [r for r in drbd_rows("derived-83-become-primary-both.dump-xml.txt") if r.status != "ok"]
    assert [r.name for r in rows] == ["allow-two-primaries", "become-primary-on"]


def test_missing_resource_and_bad_dump() -> None:
    rows = check_drbd_config((DRBD / "check-9-good.dump-xml.txt").read_text(), ["r9"])
    assert rows[0].status == "fail" and "r9 is not in the DRBD configuration" in rows[0].found
    assert check_drbd_config("<resource", ["r0"])[0].status == "fail"


def test_existing_shared_dump_fixtures_parse() -> None:
    text = (FIXTURES / "drbd9-dump-xml-livemig-r0-two-volumes-verbose.txt").read_text()
    rows = check_drbd_config(text, ["r0"])
    bad = {r.name for r in rows if r.status != "ok"}
    assert bad == {"allow-two-primaries", "unfence-peer-handler"}  # the resource overrides common's yes


def test_domain_disks() -> None:
    xml = (CIB / "domain-vm1.xml").read_text()
    findings = check_domain(xml, {0: "r0", 1: "r0"})
    assert findings.drbd_resources == ["r0"] and findings.name == "vm1"
    assert all(r.status == "ok" for r in findings.results)
    local = check_domain((CIB / "domain-vm1-local-disk.xml").read_text(), {0: "r0"})
    bad = [r for r in local.results if r.status != "ok"]
    assert [r.subject for r in bad] == ["vdb"] and "is not on DRBD" in bad[0].found
    unknown_minor = check_domain(xml, {0: "r0"})
    assert [r.status for r in unknown_minor.results if r.subject == "vdb"] == ["fail"]


def test_domain_local_disk_through_check_vm() -> None:
    report = run_check(domain=CIB / "domain-vm1-local-disk.xml")
    assert [(r.layer, r.name, r.subject) for r in problems(report)] == [("domain", "disk-on-drbd", "vdb")]


def test_guard_resources_parameter() -> None:
    assert check_guard_resources("vm1", None, ["r0"]) == []
    rows = check_guard_resources("vm1", "r1", ["r0", "r1"])
    assert rows[0].status == "fail" and 'crm resource param vm1 set drbd_resources "r1 r0"' in rows[0].fix.render()


def test_runtime_rows_from_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(FIXTURES / "drbd9-proc-synthetic-version-only.txt"))
    cib = fixture("cib-synthetic-empty.xml")
    good = ScriptedRunner({"drbdsetup status": (0, fixture("drbd9-status-json-derived-dual-primary.txt"))})
    rows = check_runtime(["beijing"], "salt-node3", runner=good, deadline=Deadline(10), cib_xml=cib,
                         clones={"beijing": "ms_drbd_beijing"})
    assert [r.status for r in rows] == ["ok"]
    secondary = ScriptedRunner({"drbdsetup status": (0, fixture("drbd9-status-json-salt-beijing-primary.txt"))})
    rows = check_runtime(["beijing"], "salt-node3", runner=secondary, deadline=Deadline(10), cib_xml=cib,
                         clones={"beijing": "ms_drbd_beijing"})
    assert [(r.name, r.status) for r in rows] == [("peer-role", "fail")]
    assert "crm resource cleanup ms_drbd_beijing" in rows[0].fix.render()
    broken = ScriptedRunner({"drbdsetup status": (1, "")})
    rows = check_runtime(["beijing"], "salt-node3", runner=broken, deadline=Deadline(10), cib_xml=cib, clones={})
    assert [r.status for r in rows] == ["unknown"]


def test_runtime_through_check_vm_unreadable_is_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(tmp_path / "absent"))
    report = run_check(runtime=True)
    assert report.exit_code == 2 and report.by_name("drbd-state")[0].status == "unknown"


def test_libvirt_rows() -> None:
    calls = []

    def connect(uri: str, deadline: Deadline) -> None:
        calls.append(uri)
        assert deadline.remaining() <= 10.0
        if "down" in uri:
            raise RuntimeError("Connection refused")

    rows = check_libvirt("beta", "qemu+ssh://beta/system", "/etc/libvirt/qemu/vm1.xml", deadline=Deadline(30),
                         connect=connect)
    assert [(r.name, r.status) for r in rows] == [("peer-uri", "ok"), ("config-on-target", "warn")]
    assert "ssh beta test -r /etc/libvirt/qemu/vm1.xml" in rows[1].fix.render()
    rows = check_libvirt("down", "qemu+ssh://down/system", None, deadline=Deadline(30), connect=connect)
    assert rows[0].status == "fail" and "virsh -c qemu+ssh://down/system version" in rows[0].fix.render()
    assert check_libvirt("beta", "x", None, deadline=Deadline(30), skip_connect=True)[0].status == "warn"
    assert calls == ["qemu+ssh://beta/system", "qemu+ssh://down/system"]


@pytest.mark.parametrize("params,expected", [
    # the three settings the issue names: check used to test qemu+ssh://beta/system for each
    ({"hypervisor": "qemu:///system"}, "qemu://beta/system"),
    ({"hypervisor": "qemu:///system", "migration_transport": "ssh", "migration_network_suffix": "-mig"},
     "qemu+ssh://beta-mig/system"),
    ({"hypervisor": "qemu:///session", "migration_transport": "ssh"}, "qemu+ssh://beta/session"),
    ({"hypervisor": "qemu:///system", "migration_transport": "tls", "migration_user": "mig"},
     "qemu+tls://mig@beta/system"),
    ({"hypervisor": "qemu:///system", "remoteuri": "qemu+ssh://%n.san/system"}, "qemu+ssh://beta.san/system"),
])
def test_target_uri_is_the_one_migrate_to_plans(params: Dict[str, str], expected: str) -> None:
    target = target_uri("beta", {"config": "/etc/libvirt/qemu/vm1.xml", **params}, deadline=Deadline(30))
    assert (target.uri, target.problem) == (expected, None)


def test_target_uri_when_hypervisor_is_unset_or_refused() -> None:
    config = {"config": "/etc/libvirt/qemu/vm1.xml"}
    asked = target_uri("beta", config, deadline=Deadline(30), local_uri=lambda _d: "qemu:///session")
    assert asked.uri == "qemu://beta/session" and "libvirt's default URI here is qemu:///session" in asked.note
    assumed = target_uri("beta", config, deadline=Deadline(30), skip_connect=True,
                         local_uri=lambda _d: pytest.fail("asked the local libvirtd under --skip-libvirt"))
    assert assumed.uri == "qemu://beta/system" and "assumed" in assumed.note

    def down(_deadline: Deadline) -> str:
        raise RuntimeError("Failed to connect socket")

    unknown = target_uri("beta", config, deadline=Deadline(30), local_uri=down)
    assert unknown.uri is None and unknown.problem is not None and unknown.problem.status == "unknown"
    refused = target_uri("beta", {**config, "hypervisor": "qemu:///system", "migration_transport": "unix"},
                         deadline=Deadline(30))
    assert refused.uri is None and refused.problem is not None and refused.problem.status == "fail"
    assert "cannot reach another node" in refused.problem.found
    given = target_uri("beta", config, deadline=Deadline(30), template="qemu+tcp://%n/system")
    assert given.uri == "qemu+tcp://beta/system" and not given.planned


def test_libvirt_through_check_vm_uses_the_connector() -> None:
    seen = []
    report = run_check(libvirt=True, connect=lambda uri, deadline: seen.append(uri))
    # the fixture's VM: hypervisor=qemu:///system and no migration_transport, so migrate_to goes to
    # qemu://beta/system (check used to test qemu+ssh://beta/system, a URI the agent never uses)
    assert seen == ["qemu://beta/system"] and report.by_name("peer-uri")[0].status == "ok"
