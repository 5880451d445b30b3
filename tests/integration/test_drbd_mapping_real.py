"""The disk mapping against real kernel components: tmpfs, overlayfs, loop devices, ext4 on a loop device.

Each scenario runs as root in a private mount namespace (``unshare --mount
--propagation private``, re-running this file as ``python -m``), so its mounts
vanish with it; the mapping there reads the real ``/sys``, the real
``/proc/self/mountinfo`` and real ``stat()``. Loop devices are not
namespaced: a scenario records each one it attaches (with its backing inode)
and detaches it; the test detaches any it left, after checking it is still
the same device. "DRBD loaded" is a ``/proc/drbd`` stand-in file (this machine
has no DRBD module). A component that cannot be set up is a test error, never
a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROC_DRBD = str(ROOT / "tests" / "fixtures" / "drbd" / "drbd9-proc-synthetic-version-only.txt")
TOOLS = ("unshare", "mount", "losetup", "mkfs.ext4", "findmnt")
SETUP_FAILED = 3


# -- the parent: run a scenario in its own mount namespace ----------------------

def run_scenario(name: str, tmp_path: Path) -> Dict[str, Any]:
    if os.geteuid() != 0:
        pytest.fail("these tests mount file systems and attach loop devices: run them as root", pytrace=False)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"cannot set up the real components: {', '.join(missing)} not found", pytrace=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "lib"), str(ROOT)]))
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
            "tests.integration.test_drbd_mapping_real", name, str(tmp_path)]
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        _detach_leftover_loops(tmp_path / "loops.jsonl")
    if proc.returncode == SETUP_FAILED:
        pytest.fail(f"cannot set up scenario {name}: {proc.stderr.strip()}", pytrace=False)
    assert proc.returncode == 0, f"scenario {name} failed:\n{proc.stdout}\n{proc.stderr}"
    result: Dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _loop_identity(device: str) -> Any:
    out = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-INO,BACK-MAJ:MIN", device],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    (entry,) = json.loads(out.stdout)["loopdevices"]
    return [entry["back-ino"], str(entry["back-maj:min"]).strip()]


def _detach_leftover_loops(record: Path) -> None:
    """Detach a loop device a scenario attached and left behind: only if it still has the same backing file."""
    if not record.exists():
        return
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        if _loop_identity(entry["device"]) == entry["identity"]:
            subprocess.run(["losetup", "-d", entry["device"]], capture_output=True, timeout=30)


def error_of(outcome: Dict[str, Any]) -> str:
    assert "error" in outcome, f"expected a DrbdMappingError, got {outcome}"
    return str(outcome["error"])


# -- the tests -------------------------------------------------------------------

def test_file_on_tmpfs_is_not_on_drbd(tmp_path: Path) -> None:
    result = run_scenario("tmpfs", tmp_path)
    assert result["fs_type"] == "tmpfs"
    assert result["file"] == {"refs": []}       # DRBD loaded: still no error, tmpfs has no block device
    assert result["dir"] == {"refs": []}
    assert result["chain"] == {"resources": []}


def test_file_on_overlayfs_fails_closed(tmp_path: Path) -> None:
    result = run_scenario("overlay", tmp_path)
    assert result["fs_type"] == "overlay"
    text = error_of(result["loaded"])
    assert text.startswith("disk vda: cannot tell whether it is on DRBD: ") and result["path"] in text
    assert "is on overlay (device 0:" in text and "drbd_resources=<the DRBD resources behind the VM>" in text
    assert result["not_loaded"] == {"refs": []}
    assert result["untraceable_ok"] == {"resources": ["r0"]}  # the by-res disk is still found
    assert "is on overlay" in error_of(result["strict"])


def test_file_on_ext4_on_a_loop_device(tmp_path: Path) -> None:
    result = run_scenario("ext4-on-loop", tmp_path)
    assert result["major"] == 7  # the file's st_dev is the loop device
    assert result["on_tmpfs_backing"] == {"refs": []}  # traced: loop -> backing file on tmpfs -> no block device
    text = error_of(result["on_overlay_backing"])
    assert f"is on the loop device {result['loop2']} over {result['backing2']}" in text
    assert "is on overlay (device 0:" in text


def test_loop_device_as_block_disk(tmp_path: Path) -> None:
    result = run_scenario("loop-block", tmp_path)
    assert result["attached"] == {"refs": []}
    text = error_of(result["deleted"])
    assert f"{result['loop']} is on the loop device {result['loop']} over {result['backing']}, " \
           "which has been deleted" in text
    assert result["detached"], "the scenario's loop device is still attached"


def test_missing_source_on_a_real_file_system(tmp_path: Path) -> None:
    result = run_scenario("missing", tmp_path)
    assert "does not exist here" in error_of(result["loaded"])
    assert result["not_loaded"] == {"refs": []}


# -- the child: runs inside the private mount namespace --------------------------

class SetupFailed(Exception):
    pass


def _sh(*argv: str) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupFailed(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        raise SetupFailed(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def _mount_tmpfs(where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    _sh("mount", "-t", "tmpfs", "-o", "size=64m", "livemig-test", str(where))


def _mount_overlay(base: Path) -> Path:
    for name in ("lower", "upper", "work", "ov"):
        (base / name).mkdir()
    _sh("mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}", str(base / "ov"))
    return base / "ov"


def _record_loop(base: Path, device: str) -> None:
    identity = _loop_identity(device)
    with open(base / "loops.jsonl", "a") as handle:
        handle.write(json.dumps({"device": device, "identity": identity}) + "\n")


def _mount_ext4_loop(base: Path, image: Path, where: Path) -> str:
    _sh("truncate", "-s", "16M", str(image))
    _sh("mkfs.ext4", "-q", "-F", str(image))
    where.mkdir()
    _sh("mount", "-o", "loop", str(image), str(where))
    device = _sh("findmnt", "-n", "-o", "SOURCE", str(where))
    _record_loop(base, device)
    return device


def _fs_type(path: Path) -> str:
    return _sh("findmnt", "-n", "-o", "FSTYPE", "--target", str(path))


def _refs(disk: Any, **kwargs: Any) -> Dict[str, Any]:
    from livemig.drbd.mapping import DrbdMappingError, drbd_refs_for_disk

    try:
        refs = drbd_refs_for_disk(disk, **kwargs)
    except DrbdMappingError as exc:
        return {"error": str(exc)}
    return {"refs": [[r.resource, r.minor, r.where] for r in refs]}


def _resources(xml: str, **kwargs: Any) -> Dict[str, Any]:
    from livemig.drbd.mapping import DrbdMappingError, resources_from_domain_xml
    from livemig.ocf.deadline import Deadline
    from livemig.run import CommandRunner

    try:
        return {"resources": resources_from_domain_xml(xml, CommandRunner(), Deadline(30), proc_drbd=PROC_DRBD,
                                                       **kwargs)}
    except DrbdMappingError as exc:
        return {"error": str(exc)}


def _domain(*disks: str) -> str:
    return f"<domain type='kvm'><name>vm1</name><devices>{''.join(disks)}</devices></domain>"


def scenario_tmpfs(base: Path) -> Dict[str, Any]:
    from livemig.domain_xml import DomainDisk

    _mount_tmpfs(base / "t")
    (base / "t" / "vm.img").write_bytes(b"\0" * 4096)
    (base / "t" / "base.img").write_bytes(b"\0" * 4096)
    (base / "t" / "tree").mkdir()
    chain = _domain(f"<disk type='file'><source file='{base}/t/vm.img'/><backingStore type='file'>"
                    f"<source file='{base}/t/base.img'/></backingStore><target dev='vda'/></disk>")
    return {"fs_type": _fs_type(base / "t" / "vm.img"),
            "file": _refs(DomainDisk("vda", "file", f"{base}/t/vm.img"), proc_drbd=PROC_DRBD),
            "dir": _refs(DomainDisk("hda", "dir", f"{base}/t/tree"), proc_drbd=PROC_DRBD),
            "chain": _resources(chain)}


def scenario_overlay(base: Path) -> Dict[str, Any]:
    from livemig.domain_xml import DomainDisk

    _mount_tmpfs(base / "t")
    ov = _mount_overlay(base / "t")
    (ov / "vm.img").write_bytes(b"\0" * 4096)
    path = str(ov / "vm.img")
    xml = _domain("<disk type='block'><source dev='/dev/drbd/by-res/r0/0'/><target dev='vda'/></disk>",
                  f"<disk type='file'><source file='{path}'/><target dev='vdb'/></disk>")
    return {"fs_type": _fs_type(ov / "vm.img"), "path": path,
            "loaded": _refs(DomainDisk("vda", "file", path), proc_drbd=PROC_DRBD),
            "not_loaded": _refs(DomainDisk("vda", "file", path), proc_drbd=str(base / "absent")),
            "untraceable_ok": _resources(xml, untraceable_ok=True),
            "strict": _resources(xml)}


def scenario_ext4_on_loop(base: Path) -> Dict[str, Any]:
    from livemig.domain_xml import DomainDisk

    _mount_tmpfs(base / "t")
    loop1 = _mount_ext4_loop(base, base / "t" / "fs.img", base / "t" / "m")
    (base / "t" / "m" / "vm.img").write_bytes(b"\0" * 4096)
    ov = _mount_overlay(base / "t")
    loop2 = _mount_ext4_loop(base, ov / "fs2.img", base / "t" / "m2")
    (base / "t" / "m2" / "vm.img").write_bytes(b"\0" * 4096)
    return {"major": os.major(os.stat(base / "t" / "m" / "vm.img").st_dev), "loop1": loop1, "loop2": loop2,
            "backing2": str(ov / "fs2.img"),
            "on_tmpfs_backing": _refs(DomainDisk("vda", "file", f"{base}/t/m/vm.img"), proc_drbd=PROC_DRBD),
            "on_overlay_backing": _refs(DomainDisk("vda", "file", f"{base}/t/m2/vm.img"), proc_drbd=PROC_DRBD)}


def scenario_loop_block(base: Path) -> Dict[str, Any]:
    from livemig.domain_xml import DomainDisk

    _mount_tmpfs(base / "t")
    backing = base / "t" / "raw.img"
    _sh("truncate", "-s", "8M", str(backing))
    device = _sh("losetup", "--find", "--show", str(backing))
    _record_loop(base, device)
    try:
        attached = _refs(DomainDisk("vda", "block", device), proc_drbd=PROC_DRBD)
        backing.unlink()
        deleted = _refs(DomainDisk("vda", "block", device), proc_drbd=PROC_DRBD)
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True, timeout=30)
    detached = not os.path.exists(f"/sys/block/{os.path.basename(device)}/loop/backing_file")
    return {"loop": device, "backing": str(backing), "attached": attached, "deleted": deleted,
            "detached": detached}


def scenario_missing(base: Path) -> Dict[str, Any]:
    from livemig.domain_xml import DomainDisk

    _mount_tmpfs(base / "t")
    disk = DomainDisk("vda", "file", f"{base}/t/not-there.img")
    return {"loaded": _refs(disk, proc_drbd=PROC_DRBD), "not_loaded": _refs(disk, proc_drbd=str(base / "absent"))}


SCENARIOS: Dict[str, Callable[[Path], Dict[str, Any]]] = {
    "tmpfs": scenario_tmpfs, "overlay": scenario_overlay, "ext4-on-loop": scenario_ext4_on_loop,
    "loop-block": scenario_loop_block, "missing": scenario_missing,
}


def main(args: List[str]) -> int:
    name, base = args[0], Path(args[1])
    try:
        result = SCENARIOS[name](base)
    except SetupFailed as exc:
        print(exc, file=sys.stderr)
        return SETUP_FAILED
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
