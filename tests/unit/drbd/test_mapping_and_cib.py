"""Disk -> DRBD mapping, resources behind a domain, the CIB fence constraint, the reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Dict, List

import pytest

from livemig.domain_xml import DiskLayer, DomainDisk
from livemig.drbd.byres import scan_by_res
from livemig.drbd.mapping import (
    DRBD_MAJOR,
    DrbdMappingError,
    domain_disks,
    drbd_minors_below,
    drbd_refs_for_disk,
    resources_from_domain_xml,
)
from livemig.drbd.state import DrbdStateError
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.pacemaker.cib import CibError, fence_constraint_ids, parse_cib, read_cib_xml
from tests.unit.drbd.builders import PROC9, TextProcReader, proc8, proc8_line, status9
from tests.unit.drbd.scripted import FIXTURES, ScriptedRunner, fixture, hung

DOMAIN = """<domain type='kvm'><name>vm1</name><devices>
  <disk type='block' device='disk'><source dev='{a}'/><target dev='vda'/></disk>
  <disk type='block' device='disk'><source dev='{b}'/><target dev='vdb'/></disk>
  <disk type='file' device='cdrom'><target dev='hdc'/></disk>
  <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdc'/></disk>
</devices></domain>"""


def fake_stat(table: Dict[str, os.stat_result]):  # type: ignore[no-untyped-def]
    def _stat(path: str) -> os.stat_result:
        if path not in table:
            raise FileNotFoundError(2, "No such file or directory", path)
        return table[path]
    return _stat


def block(major: int, minor: int) -> os.stat_result:
    return os.stat_result((stat.S_IFBLK | 0o660, 0, 0, 1, 0, 0, 0, 0, 0, 0), {"st_rdev": os.makedev(major, minor)})


def test_domain_disks() -> None:
    disks = domain_disks(DOMAIN.format(a="/dev/drbd/by-res/r0/0", b="/dev/drbd3"))
    assert [(d.target, d.disk_type, d.source) for d in disks] == [
        ("vda", "block", "/dev/drbd/by-res/r0/0"), ("vdb", "block", "/dev/drbd3"),
        ("hdc", "file", None), ("vdc", "network", "rbd:pool/img")]
    assert disks[0].layers == (DiskLayer("block", "/dev/drbd/by-res/r0/0"),) and disks[2].layers == ()
    with pytest.raises(DrbdMappingError):
        domain_disks("<domain><devices>")
    with pytest.raises(DrbdMappingError):
        domain_disks("<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><notdomain>&x;</notdomain>")


def test_refs_by_res_by_minor_and_not_drbd(tmp_path: Path) -> None:
    st = fake_stat({"/dev/drbd_srv00-sql1_0": block(DRBD_MAJOR, 7), "/dev/vg/lv": block(253, 1)})
    absent = {"proc_drbd": str(tmp_path / "absent")}  # DRBD not loaded here
    loaded = {"proc_drbd": str(FIXTURES / "drbd9-proc-synthetic-version-only.txt")}
    assert drbd_refs_for_disk(DomainDisk("vda", "block", "/dev/drbd/by-res/r0/1"), st, **absent)[0].volume == 1
    ref = drbd_refs_for_disk(DomainDisk("vda", "block", "/dev/drbd/by-res/r0"), st, **absent)[0]  # 8.3
    assert (ref.resource, ref.volume) == ("r0", None)
    assert drbd_refs_for_disk(DomainDisk("vda", "block", "/dev/drbd_srv00-sql1_0"), st, **absent)[0].minor == 7
    assert drbd_refs_for_disk(DomainDisk("vda", "block", "/dev/drbd12"), st, **absent)[0].minor == 12  # no node
    assert drbd_refs_for_disk(DomainDisk("vda", "block", "/dev/vg/lv"), st, sysfs_root="/nonexistent",
                              **absent) == []
    assert drbd_refs_for_disk(DomainDisk("vda", "block", "/srv/missing.img"), st, **absent) == []
    with pytest.raises(DrbdMappingError, match="names DRBD"):  # whether DRBD is loaded or not
        drbd_refs_for_disk(DomainDisk("vda", "block", "/dev/drbd/by-disk/vg/x"), st, **absent)
    assert drbd_refs_for_disk(DomainDisk("vda", "volume", "pool/vol"), st, **absent) == []
    with pytest.raises(DrbdMappingError, match="storage-pool volume"):
        drbd_refs_for_disk(DomainDisk("vda", "volume", "pool/vol"), st, **loaded)


def test_lvm_on_drbd_through_sysfs_slaves(tmp_path: Path) -> None:
    def node(major: int, minor: int, slaves: List[str]) -> None:
        base = tmp_path / "dev" / "block" / f"{major}:{minor}"
        (base / "slaves").mkdir(parents=True)
        for name in slaves:
            number = name.split("-")[1]
            slave = base / "slaves" / name
            slave.mkdir()
            (slave / "dev").write_text(number.replace("_", ":") + "\n")
    node(253, 4, ["dm-253_3"])
    node(253, 3, ["drbd-147_2", "sda-8_0"])
    assert drbd_minors_below(os.makedev(253, 4), str(tmp_path)) == [2]
    assert drbd_minors_below(os.makedev(DRBD_MAJOR, 9), str(tmp_path)) == [9]
    assert drbd_minors_below(os.makedev(8, 0), str(tmp_path)) == []


def test_scan_by_res(tmp_path: Path) -> None:
    (tmp_path / "r0").mkdir()
    os.symlink("/dev/drbd5", tmp_path / "r0" / "0")
    os.symlink("/dev/drbd6", tmp_path / "r0" / "1")
    os.symlink("/dev/drbd9", tmp_path / "old83")
    assert scan_by_res(str(tmp_path)) == {5: ("r0", 0), 6: ("r0", 1), 9: ("old83", None)}
    assert scan_by_res(str(tmp_path / "absent")) == {}


def test_resources_from_domain_xml_drbd9() -> None:
    runner = ScriptedRunner({"drbdsetup status": (0, status9(name="r1"))})  # r1 volume 0 is minor 10
    deadline = Deadline(10)
    reader = TextProcReader(runner, deadline, PROC9)
    xml = DOMAIN.format(a="/dev/drbd/by-res/r0/0", b="/dev/drbd10")
    assert resources_from_domain_xml(xml, runner, deadline, reader=reader) == ["r0", "r1"]
    no_drbd = ("<domain><name>x</name><devices><disk type='file'><source file='/nonexistent.img'/></disk>"
               "</devices></domain>")
    absent = str(FIXTURES / "absent")
    assert resources_from_domain_xml(no_drbd, runner, deadline, reader=reader, proc_drbd=absent) == []
    runner.answers["drbdsetup status"] = hung("drbdsetup")
    with pytest.raises(DrbdStateError):
        resources_from_domain_xml(xml, runner, deadline, reader=reader)


def test_resources_from_domain_xml_drbd8() -> None:
    runner = ScriptedRunner({"drbdadm sh-resource minor-10": (0, "r1\n")})
    deadline = Deadline(10)
    reader = TextProcReader(runner, deadline, proc8(proc8_line(minor=10)))
    xml = DOMAIN.format(a="/dev/drbd10", b="/dev/drbd10")
    assert resources_from_domain_xml(xml, runner, deadline, reader=reader) == ["r1"]
    assert runner.argv_list() == [["drbdadm", "sh-resource", "minor-10"]]
    with pytest.raises(DrbdStateError):
        resources_from_domain_xml(DOMAIN.format(a="/dev/drbd11", b="/dev/drbd10"), runner, deadline, reader=reader)


def test_reader_generation_and_errors(tmp_path: Path) -> None:
    runner = ScriptedRunner({"drbdsetup status": (0, status9()), "drbdadm sh-resource minor-1": (0, "r9\n")})
    deadline = Deadline(10)
    nine = DrbdReader(runner, deadline, proc_path=str(FIXTURES / "drbd9-proc-synthetic-version-only.txt"))
    assert nine.read_status().generation == 9
    eight = DrbdReader(runner, deadline, by_res_dir=str(tmp_path),
                       proc_path=str(FIXTURES / "drbd84-proc-pacemaker-connected-primary-8.4.11.txt"))
    status = eight.read_status()
    assert (status.drbd_version, status.generation, status.resources[0].name) == ("8.4.11-1", 8, "r9")
    with pytest.raises(DrbdStateError, match="not loaded"):
        DrbdReader(runner, deadline, proc_path=str(tmp_path / "absent")).read_status()
    (tmp_path / "empty").write_text("")
    with pytest.raises(DrbdStateError, match="cannot tell"):
        DrbdReader(runner, deadline, proc_path=str(tmp_path / "empty")).read_status()
    runner.answers["drbdadm -v dump-xml"] = (0, fixture("drbd9-dump-xml-anvil-srv00-sql1-resource.txt"))
    assert nine.dump_xml("srv00-sql1")[0].name == "srv00-sql1"
    assert runner.argv_list()[-1] == ["drbdadm", "-v", "dump-xml", "srv00-sql1"]


def test_proc_path_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", "/tmp/elsewhere")
    assert DrbdReader(ScriptedRunner(), Deadline(1))._proc_path == "/tmp/elsewhere"


def test_cib_fence_constraint() -> None:
    fenced = parse_cib(fixture("cib-synthetic-fence-beijing.xml"))
    assert fence_constraint_ids(fenced, "beijing") == ["drbd-fence-by-handler-beijing-ms_drbd_beijing"]
    assert fence_constraint_ids(fenced, "bei") == []
    assert fence_constraint_ids(fenced, "x' or '1'='1") == []
    assert fence_constraint_ids(parse_cib(fixture("cib-synthetic-empty.xml")), "beijing") == []
    for bad in ["", "<cib>", "<notcib/>", "<cib/>"]:
        with pytest.raises(CibError):
            parse_cib(bad)


def test_read_cib_passes_cib_file_and_fails_closed() -> None:
    runner = ScriptedRunner({"cibadmin": (0, "<cib/>")})
    assert read_cib_xml(runner, Deadline(5), cib_file="/tmp/cib.xml") == "<cib/>"
    argv, timeout, env = runner.records[0]
    assert (argv, env) == (["cibadmin", "--query"], {"CIB_file": "/tmp/cib.xml"}) and 0 < timeout <= 5
    runner.answers["cibadmin"] = (102, "")
    with pytest.raises(CibError):
        read_cib_xml(runner, Deadline(5))
    runner.answers["cibadmin"] = hung("cibadmin")
    with pytest.raises(CibError):
        read_cib_xml(runner, Deadline(5))
