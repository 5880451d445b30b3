"""Which DRBD devices are behind a domain's disks: disk types, backing chains, untraceable storage.

Every test builds what it reads under ``tmp_path``: a fake sysfs tree (device
directories, ``dev/block`` links, ``slaves``, ``partition``, ``loop/backing_file``),
a fake mount table, a fake ``/proc/drbd`` (present: DRBD loaded), and a stat
table; nothing of the machine running the tests is looked at.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pytest

from livemig.domain_xml import DiskLayer, DomainDisk
from livemig.drbd.mapping import (
    DRBD_MAJOR,
    DrbdMappingError,
    _read_bounded,
    domain_disks,
    drbd_loaded,
    drbd_minors_below,
    drbd_refs_for_disk,
    resources_from_domain_xml,
)
from livemig.ocf.deadline import Deadline
from tests.unit.drbd.builders import PROC9, TextProcReader, status9
from tests.unit.drbd.scripted import ScriptedRunner


def blk(major: int, minor: int) -> os.stat_result:
    return os.stat_result((stat.S_IFBLK | 0o660, 0, 0, 1, 0, 0, 0, 0, 0, 0), {"st_rdev": os.makedev(major, minor)})


def reg(major: int, minor: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | 0o600, 1, os.makedev(major, minor), 1, 0, 0, 1 << 20, 0, 0, 0))


def chr_dev(major: int, minor: int) -> os.stat_result:
    return os.stat_result((stat.S_IFCHR | 0o600, 0, 0, 1, 0, 0, 0, 0, 0, 0), {"st_rdev": os.makedev(major, minor)})


class Node:
    """A fake machine: sysfs, mount table, /proc/drbd and what stat says about paths."""

    def __init__(self, root: Path, *, drbd: bool = True) -> None:
        self.root = root
        self.sys = root / "sys"
        (self.sys / "dev" / "block").mkdir(parents=True)
        self.proc_drbd = root / "proc-drbd"
        if drbd:
            self.proc_drbd.write_text(PROC9)
        self.mountinfo = root / "mountinfo"
        self.mountinfo.write_text("22 27 0:21 / /proc rw,relatime - proc proc rw\n")
        self.stats: Dict[str, os.stat_result] = {}

    # -- sysfs -------------------------------------------------------------
    def device(self, name: str, major: int, minor: int, slaves: Iterable[str] = (),
               parent: Optional[str] = None, backing: Optional[str] = None) -> Path:
        """A block device directory, linked from dev/block/MAJ:MIN; ``backing``: a loop device's backing_file."""
        base = self.sys / "devices" / "block"
        path = (base / parent / name) if parent else (base / name)
        path.mkdir(parents=True)
        (path / "dev").write_text(f"{major}:{minor}\n")
        if parent:
            (path / "partition").write_text("1\n")
        else:
            (path / "slaves").mkdir()
            for slave in slaves:
                os.symlink(self.device_dir(slave), path / "slaves" / slave)
        if backing is not None:
            (path / "loop").mkdir()
            (path / "loop" / "backing_file").write_text(backing + "\n")
        os.symlink(path, self.sys / "dev" / "block" / f"{major}:{minor}")
        return path

    def device_dir(self, name: str) -> Path:
        found = list((self.sys / "devices" / "block").glob(f"**/{name}"))
        assert found, name
        return found[0]

    def mount(self, major: int, minor: int, fs_type: str, where: str = "/srv") -> None:
        with self.mountinfo.open("a") as handle:
            handle.write(f"40 27 {major}:{minor} / {where} rw,relatime shared:9 - {fs_type} src rw\n")

    # -- looking -----------------------------------------------------------
    def stat(self, path: str) -> os.stat_result:
        if path not in self.stats:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.stats[path]

    def kwargs(self) -> Dict[str, str]:
        return {"sysfs_root": str(self.sys), "proc_drbd": str(self.proc_drbd), "mountinfo": str(self.mountinfo)}

    def refs(self, disk: DomainDisk, **extra: bool) -> List[Tuple[Optional[str], Optional[int], str]]:
        found = drbd_refs_for_disk(disk, self.stat, **self.kwargs(), **extra)  # type: ignore[arg-type]
        return [(r.resource, r.minor, r.where) for r in found]

    def resources(self, xml: str, reader_runner: Optional[ScriptedRunner] = None, **extra: object) -> List[str]:
        runner = reader_runner or ScriptedRunner({"drbdsetup status": (0, status9(name="r9"))})
        deadline = Deadline(10)
        reader = TextProcReader(runner, deadline, PROC9)
        return resources_from_domain_xml(xml, runner, deadline, reader=reader, stat=self.stat,
                                         **self.kwargs(), **extra)  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def domain(*disks: str) -> str:
    return f"<domain type='kvm'><name>vm1</name><devices>{''.join(disks)}</devices></domain>"


def file_disk(path: str, target: str = "vda", inner: str = "") -> str:
    return f"<disk type='file' device='disk'><source file='{path}'/>{inner}<target dev='{target}'/></disk>"


# -- 1. the source attribute follows the disk's type ---------------------------

def test_source_attribute_is_the_one_of_the_disk_type() -> None:
    disks = domain_disks(domain(
        "<disk type='block'><source file='/dev/drbd/by-res/r0/0'/><target dev='vda'/></disk>",
        "<disk type='file'><source dev='/dev/drbd/by-res/r1/0'/><target dev='vdb'/></disk>",
        "<disk type='file'><source file='/srv/a.img' dev='/dev/drbd/by-res/r2/0'/><target dev='vdc'/></disk>",
        "<disk device='disk'><source dev='/dev/drbd/by-res/r3/0'/><target dev='vdd'/></disk>",
        "<disk device='disk'><source file='/srv/d.img'/><target dev='vde'/></disk>",
        "<disk type='dir'><source dir='/srv/tree' file='/x'/><target dev='hda'/></disk>",
        "<disk type='block'><source dev='/dev/vg/lv' dir='/y'/><target dev='vdf'/></disk>",
    ))
    assert [(d.target, d.disk_type, d.source) for d in disks] == [
        ("vda", "block", None),                 # libvirt ignores file= on a block disk
        ("vdb", "file", None),                  # and dev= on a file disk
        ("vdc", "file", "/srv/a.img"),
        ("vdd", "file", None),                  # no type is libvirt's default, file
        ("vde", "file", "/srv/d.img"),
        ("hda", "dir", "/srv/tree"),
        ("vdf", "block", "/dev/vg/lv"),
    ]


def test_other_disk_types_name_their_own_source() -> None:
    disks = domain_disks(domain(
        "<disk type='volume'><source pool='p' volume='v'/><target dev='vda'/></disk>",
        "<disk type='network'><source protocol='rbd' name='pool/img'><host name='mon1'/></source>"
        "<target dev='vdb'/></disk>",
        "<disk type='nvme'><source type='pci' managed='yes' namespace='1'>"
        "<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source><target dev='vdc'/></disk>",
        "<disk type='vhostuser'><source type='unix' path='/run/vhost-blk.sock'/><target dev='vdd'/></disk>",
        "<disk type='vhostvdpa'><source dev='/dev/vhost-vdpa-0'/><target dev='vde'/></disk>",
    ))
    assert [d.layers for d in disks] == [
        (DiskLayer("volume", "p/v"),),
        (DiskLayer("network", "rbd:pool/img"),),
        (DiskLayer("nvme", "NVMe namespace 1 at PCI 0x0000:0x01:0x00:0x0"),),
        (DiskLayer("vhostuser", "/run/vhost-blk.sock"),),
        (DiskLayer("vhostvdpa", "/dev/vhost-vdpa-0"),),
    ]


def test_a_by_res_path_in_the_wrong_attribute_is_not_a_drbd_disk(node: Node) -> None:
    xml = domain("<disk type='block'><source file='/dev/drbd/by-res/r0/0'/><target dev='vda'/></disk>",
                 "<disk><source dev='/dev/drbd/by-res/r1/0'/><target dev='vdb'/></disk>",
                 "<disk type='block'><source dev='/dev/drbd/by-res/r2/0' file='/srv/x'/><target dev='vdc'/></disk>")
    assert node.resources(xml) == ["r2"]


# -- 2. backing chains and block-copy mirrors ------------------------------------

CHAIN = """<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source file='/var/lib/libvirt/images/domain.qcow'/>
  <backingStore type='file' index='1'>
    <format type='qcow2'/>
    <source file='/var/lib/libvirt/images/snapshot.qcow'/>
    <backingStore type='block' index='2'>
      <format type='raw'/>
      <source dev='/dev/mapper/base' file='/ignored'/>
      <backingStore/>
    </backingStore>
  </backingStore>
  <target dev='vdd' bus='virtio'/>
</disk>"""


def test_every_layer_of_a_backing_chain_is_read() -> None:
    (disk,) = domain_disks(domain(CHAIN))
    assert disk.source == "/var/lib/libvirt/images/domain.qcow"
    assert disk.layers == (DiskLayer("file", "/var/lib/libvirt/images/domain.qcow", "source"),
                           DiskLayer("file", "/var/lib/libvirt/images/snapshot.qcow", "backingStore 1"),
                           DiskLayer("block", "/dev/mapper/base", "backingStore 2"))


def test_qcow2_overlay_on_local_disk_with_backing_on_drbd(node: Node) -> None:
    node.device("sda", 8, 0)
    node.device("sda1", 8, 1, parent="sda")
    node.stats["/var/lib/libvirt/images/vm.qcow2"] = reg(8, 1)  # the overlay: ext4 on sda1
    xml = domain(file_disk("/var/lib/libvirt/images/vm.qcow2", inner=(
        "<backingStore type='block'><format type='raw'/><source dev='/dev/drbd/by-res/r1/0'/>"
        "<backingStore/></backingStore>")))
    assert node.resources(xml) == ["r1"]
    (disk,) = domain_disks(xml)
    assert node.refs(disk) == [("r1", None, "backingStore 1")]


def test_deeper_backing_layer_on_lvm_on_drbd_is_found(node: Node) -> None:
    node.device("sda", 8, 0)
    node.device("drbd10", DRBD_MAJOR, 10)
    node.device("dm-2", 253, 2, slaves=["drbd10"])
    node.stats["/srv/top.qcow2"] = reg(8, 0)
    node.stats["/srv/mid.qcow2"] = reg(8, 0)
    node.stats["/dev/vg/base"] = blk(253, 2)
    xml = domain(file_disk("/srv/top.qcow2", inner=(
        "<backingStore type='file'><source file='/srv/mid.qcow2'/>"
        "<backingStore type='block'><source dev='/dev/vg/base'/></backingStore></backingStore>")))
    (disk,) = domain_disks(xml)
    assert node.refs(disk) == [(None, 10, "backingStore 2")]
    assert node.resources(xml) == ["r9"]  # r9 volume 0 is minor 10


def test_block_copy_mirror_destination_on_drbd_is_found(node: Node) -> None:
    node.device("sda", 8, 0)
    node.stats["/srv/vm.img"] = reg(8, 0)
    xml = domain(
        file_disk("/srv/vm.img", "vda", "<mirror type='block' job='copy' ready='yes'><format type='raw'/>"
                                        "<source dev='/dev/drbd/by-res/r5/0'/></mirror>"),
        file_disk("/srv/vm.img", "vdb", "<mirror file='/dev/drbd/by-res/r6/0' format='raw' job='copy'/>"),
        file_disk("/srv/vm.img", "vdc", "<mirror type='file' job='copy'><source file='/srv/copy.qcow2'/>"
                                        "<backingStore type='block'><source dev='/dev/drbd/by-res/r7/1'/>"
                                        "</backingStore></mirror>"),
    )
    node.stats["/srv/copy.qcow2"] = reg(8, 0)
    assert node.resources(xml) == ["r5", "r6", "r7"]
    assert [layer.where for layer in domain_disks(xml)[2].layers] == ["source", "mirror", "mirror backingStore 1"]


# -- 3. storage that cannot be traced fails closed where DRBD is loaded ----------

@pytest.mark.parametrize("fs_type", ["btrfs", "overlay", "zfs", "nfs4", "fuse.sshfs", "ceph"])
def test_file_on_anonymous_device_file_system(tmp_path: Path, fs_type: str) -> None:
    node = Node(tmp_path)
    node.mount(0, 45, fs_type)
    node.stats["/srv/vm.img"] = reg(0, 45)
    (disk,) = domain_disks(domain(file_disk("/srv/vm.img")))
    with pytest.raises(DrbdMappingError) as caught:
        node.refs(disk)
    text = str(caught.value)
    assert text.startswith("disk vda: cannot tell whether it is on DRBD: /srv/vm.img is on ")
    assert f"is on {fs_type} (device 0:45)" in text and "anonymous device" in text
    assert "drbd_resources=<the DRBD resources behind the VM>" in text and "drbd_guard=off" in text
    unloaded = Node(tmp_path / "nodrbd", drbd=False)
    unloaded.mount(0, 45, fs_type)
    unloaded.stats = node.stats
    assert unloaded.refs(disk) == []  # no DRBD on this node: nothing can be on local DRBD


@pytest.mark.parametrize("fs_type", ["tmpfs", "ramfs", "hugetlbfs"])
def test_file_on_memory_file_system_is_not_on_drbd(node: Node, fs_type: str) -> None:
    node.mount(0, 50, fs_type)
    node.stats["/dev/shm/vm.img"] = reg(0, 50)
    (disk,) = domain_disks(domain(file_disk("/dev/shm/vm.img")))
    assert node.refs(disk) == []


def test_anonymous_device_not_in_the_mount_table_or_table_unreadable(node: Node) -> None:
    node.stats["/srv/vm.img"] = reg(0, 77)  # e.g. overlayfs's per-layer pseudo device
    (disk,) = domain_disks(domain(file_disk("/srv/vm.img")))
    with pytest.raises(DrbdMappingError, match=r"device 0:77, .* no mount in .*mountinfo has that device"):
        node.refs(disk)
    node.mountinfo.unlink()
    with pytest.raises(DrbdMappingError, match="could not be read"):
        node.refs(disk)


def test_file_on_a_file_system_on_a_loop_device_over_a_file_on_drbd(node: Node) -> None:
    node.device("loop3", 7, 3, backing="/mnt/gfs2/images/disk.img")
    node.stats["/srv/inner/vm.img"] = reg(7, 3)            # ext4 mounted from /dev/loop3
    node.stats["/mnt/gfs2/images/disk.img"] = reg(DRBD_MAJOR, 4)  # loop3's backing file: on drbd4
    (disk,) = domain_disks(domain(file_disk("/srv/inner/vm.img")))
    assert node.refs(disk) == [(None, 4, "source")]


def test_loop_device_disk_over_drbd_device_and_over_partition_and_dm(node: Node) -> None:
    node.device("loop5", 7, 5, backing="/dev/drbd5")
    node.device("loop5p1", 259, 0, parent="loop5")
    node.device("dm-1", 253, 1, slaves=["loop5"])
    node.stats["/dev/drbd5"] = blk(DRBD_MAJOR, 5)
    for path, numbers in (("/dev/loop5", (7, 5)), ("/dev/loop5p1", (259, 0)), ("/dev/vg/on-loop", (253, 1))):
        node.stats[path] = blk(*numbers)
        assert node.refs(DomainDisk("vda", "block", path)) == [(None, 5, "source")], path
    assert drbd_minors_below(os.makedev(253, 1), str(node.sys), node.stat) == [5]


def test_loop_device_whose_backing_cannot_be_traced(node: Node) -> None:
    deleted = node.device("loop6", 7, 6, backing="/srv/gone.img (deleted)")
    node.stats["/srv/f.img"] = reg(7, 6)
    disk = DomainDisk("vda", "file", "/srv/f.img")
    with pytest.raises(DrbdMappingError,
                       match=r"/srv/f.img is on the loop device /dev/loop6 over /srv/gone.img, which has been deleted"):
        node.refs(disk)
    (deleted / "loop" / "backing_file").unlink()
    with pytest.raises(DrbdMappingError, match="backing file cannot be read from sysfs"):
        node.refs(disk)


def test_missing_source_fails_closed_where_drbd_is_loaded(tmp_path: Path) -> None:
    node = Node(tmp_path)
    disk = DomainDisk("vdb", "file", "/mnt/ocfs2/vm.img")
    with pytest.raises(DrbdMappingError, match=r"^disk vdb: .*/mnt/ocfs2/vm.img does not exist here"):
        node.refs(disk)
    node.proc_drbd.unlink()
    assert node.refs(disk) == []


def test_block_devices_that_cannot_be_traced(node: Node) -> None:
    node.device("nbd0", 43, 0)
    node.device("dm-4", 253, 4, slaves=["nbd0"])
    node.device("dm-5", 253, 5, slaves=["dm-5"])  # a cycle: bounded, and fails closed
    node.stats.update({"/dev/vg/nbd": blk(253, 4), "/dev/vg/cycle": blk(253, 5), "/dev/unknown": blk(65, 3),
                       "/dev/vg/cdev": chr_dev(10, 1)})
    with pytest.raises(DrbdMappingError, match="/dev/vg/nbd is on /dev/nbd0, a block device served by a user-space"):
        node.refs(DomainDisk("vda", "block", "/dev/vg/nbd"))
    with pytest.raises(DrbdMappingError, match="stacked more than 8 deep"):
        node.refs(DomainDisk("vda", "block", "/dev/vg/cycle"))
    with pytest.raises(DrbdMappingError, match=r"block device 65:3, which is not in .*/dev/block"):
        node.refs(DomainDisk("vda", "block", "/dev/unknown"))
    assert node.refs(DomainDisk("vda", "block", "/dev/vg/cdev")) == []  # not storage DRBD can be under


@pytest.mark.parametrize("disk_xml, words", [
    ("<disk type='volume'><source pool='p' volume='v'/><target dev='vda'/></disk>", "storage-pool volume"),
    ("<disk type='vhostuser'><source type='unix' path='/run/v.sock'/><target dev='vda'/></disk>", "vhost-user"),
    ("<disk type='vhostvdpa'><source dev='/dev/vhost-vdpa-0'/><target dev='vda'/></disk>", "vDPA"),
    ("<disk type='network'><source protocol='nbd'><host transport='unix' socket='/run/nbd.sock'/></source>"
     "<target dev='vda'/></disk>", "served on this node"),
    ("<disk type='network'><source protocol='iscsi' name='iqn.x/1'><host name='127.0.0.1' port='3260'/>"
     "</source><target dev='vda'/></disk>", "served on this node"),
    ("<disk type='network'><source protocol='nbd'><host name='localhost'/></source><target dev='vda'/></disk>",
     "served on this node"),
    ("<disk type='futuretype'><source x='y'/><target dev='vda'/></disk>", "'futuretype' is not one"),
])
def test_disk_types_that_cannot_be_traced(node: Node, disk_xml: str, words: str) -> None:
    (disk,) = domain_disks(domain(disk_xml))
    with pytest.raises(DrbdMappingError, match=words):
        node.refs(disk)
    node.proc_drbd.unlink()
    assert node.refs(disk) == []


def test_remote_network_and_nvme_disks_are_not_on_local_drbd(node: Node) -> None:
    xml = domain("<disk type='network'><source protocol='rbd' name='p/i'><host name='mon1'/></source>"
                 "<target dev='vda'/></disk>",
                 "<disk type='network'><source protocol='iscsi' name='iqn.x/1'><host name='10.0.0.9'/></source>"
                 "<target dev='vdb'/></disk>",
                 "<disk type='nvme'><source type='pci' namespace='1'><address domain='0x0000' bus='0x01' "
                 "slot='0x00' function='0x0'/></source><target dev='vdc'/></disk>")
    assert node.resources(xml) == []


def test_drbd_loaded_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(tmp_path / "absent"))
    assert not drbd_loaded()
    disk = DomainDisk("vda", "file", "/srv/absent.img")
    assert drbd_refs_for_disk(disk, Node(tmp_path / "n").stat) == []
    (tmp_path / "drbd").write_text(PROC9)
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(tmp_path / "drbd"))
    assert drbd_loaded()
    with pytest.raises(DrbdMappingError, match="DRBD is loaded on this node"):
        drbd_refs_for_disk(disk, Node(tmp_path / "m").stat)


def test_untraceable_disk_through_resources_from_domain_xml(node: Node) -> None:
    node.mount(0, 45, "btrfs")
    node.stats["/var/lib/libvirt/images/vm.img"] = reg(0, 45)
    xml = domain(file_disk("/var/lib/libvirt/images/vm.img", "vdb"))
    with pytest.raises(DrbdMappingError) as caught:
        node.resources(xml)
    assert "disk vdb" in str(caught.value) and "/var/lib/libvirt/images/vm.img is on btrfs" in str(caught.value)
    assert "drbd_resources=" in str(caught.value)


def test_bounded_reads(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 11)
    assert _read_bounded(str(tmp_path / "f"), 11) == "x" * 11
    assert _read_bounded(str(tmp_path / "f"), 10) is None  # never more than the limit is taken
    assert _read_bounded(str(tmp_path / "absent"), 10) is None


def test_tracing_that_hangs_is_bounded_and_fails_closed(node: Node) -> None:
    release = threading.Event()

    def hung_stat(path: str) -> os.stat_result:
        release.wait(30)
        raise FileNotFoundError(2, "No such file or directory", path)

    runner = ScriptedRunner()
    deadline = Deadline(10)
    try:
        with pytest.raises(DrbdMappingError, match="did not answer within"):
            resources_from_domain_xml(domain(file_disk("/nfs/vm.img")), runner, deadline, stat=hung_stat,
                                      trace_timeout=0.2, **node.kwargs())  # type: ignore[arg-type]
    finally:
        release.set()


# -- 4. untraceable_ok: the operator named the resources -------------------------

def test_untraceable_ok_skips_what_cannot_be_traced_and_keeps_what_can(node: Node) -> None:
    node.mount(0, 45, "btrfs")
    node.stats["/srv/btrfs/a.img"] = reg(0, 45)
    node.stats["/srv/btrfs/b.qcow2"] = reg(0, 45)
    xml = domain(
        "<disk type='block'><source dev='/dev/drbd/by-res/r0/0'/><target dev='vda'/></disk>",
        file_disk("/srv/btrfs/a.img", "vdb"),
        file_disk("/srv/btrfs/b.qcow2", "vdc", "<backingStore type='block'><source dev='/dev/drbd/by-res/r7/0'/>"
                                             "</backingStore>"),
        "<disk type='block'><source dev='/dev/drbd/by-disk/vg/x'/><target dev='vdd'/></disk>",
    )
    with pytest.raises(DrbdMappingError):
        node.resources(xml)
    assert node.resources(xml, untraceable_ok=True) == ["r0", "r7"]
    (disk,) = [d for d in domain_disks(xml) if d.target == "vdc"]
    assert node.refs(disk, untraceable_ok=True) == [("r7", None, "backingStore 1")]
