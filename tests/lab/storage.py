"""The lab's shared storage: the image and loop device under the simulated DRBD resource, the
simulator's state store, and the VM's definition (its disk on that DRBD device)."""

from __future__ import annotations

import inspect
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Sequence

from tests.lab import drbdsim
from tests.lab.core import (
    DRBD_MINOR,
    DRBD_RES,
    HERE,
    LAB_DIR,
    PY,
    SHARED,
    VM_NAME,
    LabError,
    console_log_path,
    node_ip,
    proc_drbd_path,
    run,
    vm_config_path,
    write_file,
)
from tests.lab.state import LabState


def prepare_shared(names: List[str], state: LabState, vm: bool = True, diskless: Sequence[str] = (),
                   quorum: str = "", two_primaries: str = "always") -> None:
    """The disk image and its loop device, the simulator's store (``diskless`` nodes without a
    backing disk, resource option ``quorum`` if given, allow-two-primaries off in the
    configuration for ``two_primaries`` "migration") and the VM definition."""
    (SHARED / "drbd").mkdir(parents=True)
    (SHARED / "vm").mkdir(parents=True)
    img = SHARED / "drbd" / (DRBD_RES + ".img")
    with open(str(img), "wb") as f:
        f.truncate(64 * 1024 * 1024)
    loop = run(["losetup", "--find", "--show", str(img)]).stdout.strip()
    state.loop = loop
    state.save()
    store = str(SHARED / "drbd" / "state.json")
    drbdsim.init_store(store, DRBD_RES, DRBD_MINOR, loop, [(n, node_ip(n)) for n in names],
                       proc_paths={n: proc_drbd_path(n) for n in names}, **store_options(diskless, quorum))
    if diskless and "diskless" not in _init_store_keywords():
        # The simulator's own command for a node's disk state: Diskless from the start (what a
        # node configured with `disk none` shows), kept across up/down and a crash.
        for n in diskless:
            _drbdsim(store, "disk", DRBD_RES, n, "Diskless")
    if two_primaries == "migration":
        _drbdsim(store, "config", DRBD_RES, "--allow-two-primaries=no")
    if vm:
        write_file(Path(vm_config_path()), vm_domain_xml())


def _drbdsim(store: str, *args: str) -> None:
    run([PY, str(HERE / "drbdsim.py"), "drbdsim", *args],
        env={"LIVEMIG_DRBDSIM_STORE": store, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def _init_store_keywords() -> List[str]:
    return list(inspect.signature(drbdsim.init_store).parameters)


def store_options(diskless: Sequence[str], quorum: str) -> Dict[str, Any]:
    """init_store's keyword arguments for a diskless node and DRBD quorum, where it has them.

    ``quorum`` has no other way into the store: without the simulator's ``options`` keyword
    (``init_store(..., options={"quorum": "majority"})``) the lab refuses it rather than build a
    resource without quorum that a test would take for one with it.
    """
    kw: Dict[str, Any] = {}
    known = _init_store_keywords()
    if diskless and "diskless" in known:
        kw["diskless"] = list(diskless)
    if quorum:
        if "options" not in known:
            raise LabError(f"DRBD quorum {quorum}: the simulator's init_store has no resource options yet "
                           f"(tests/lab/drbdsim.py: init_store(..., options={{'quorum': '{quorum}'}}))")
        kw["options"] = {"quorum": quorum}
    return kw


def vm_domain_xml() -> str:
    """The lab VM: the shared guest image, disk on the simulated DRBD device."""
    try:
        from tests.support import guest
    except ImportError as exc:
        raise LabError(f"tests/support/guest.py is not available ({exc})") from exc
    img = guest.ensure_guest_image()
    xml = guest.domain_xml(VM_NAME, img, console_log=Path(console_log_path()),
                           uuid="6c6d6c61-622d-4c6d-766d-000000000001")
    return with_drbd_disk(xml)


def with_drbd_disk(xml: str) -> str:
    """Domain XML ``xml`` with its disks replaced by one on the simulated DRBD device."""
    root = ET.fromstring(xml)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    for old in devices.findall("disk"):
        devices.remove(old)
    disk = ET.SubElement(devices, "disk", type="block", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none", io="native")
    ET.SubElement(disk, "source", dev=f"/dev/drbd/by-res/{DRBD_RES}/0")
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    return ET.tostring(root, encoding="unicode")


def release_loops() -> None:
    """Detach every loop device backed by a file under the lab directory."""
    for line in run(["losetup", "-a"], check=False).stdout.splitlines():
        if str(LAB_DIR) in line:
            run(["losetup", "-d", line.split(":")[0]], check=False)
