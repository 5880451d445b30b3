"""agents/virtualdomain/images.py against real programs.

qemu-img and qemu-io are the real ones (Debian's qemu-utils, in the Makefile's APT_PACKAGES): real
overlays on real backing files in tmp_path. virt-copy-in (libguestfs boots an appliance) and
csync2 (needs peers) are fake executables put first on PATH that record their argv, one
NUL-terminated word each, and exit as told; a fake that sleeps stands for a hung tool.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from livemig.agents.virtualdomain import images
from livemig.ocf.deadline import Deadline
from livemig.ocf.errors import GenericError
from livemig.run import CommandRunner

FAKE = """#!/bin/sh
{{ for word in "$@"; do printf '%s\\0' "$word"; done; printf '\\n'; }} >> "$FAKE_LOG/$(basename "$0")"
{body}
"""


class Tools:
    """A CommandRunner whose PATH starts with tmp_path/bin, where the fakes are."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.logs = tmp_path / "argv"
        self.bin.mkdir()
        self.logs.mkdir()
        self.runner = CommandRunner(env={"FAKE_LOG": str(self.logs)},
                                    path=f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}")

    def fake(self, name: str, body: str = "exit 0") -> None:
        path = self.bin / name
        path.write_text(FAKE.format(body=body))
        path.chmod(0o755)

    def argv(self, name: str) -> List[List[str]]:
        """Each call's words (a call is one line of NUL-terminated words)."""
        path = self.logs / name
        if not path.exists():
            return []
        return [[w.decode() for w in line.split(b"\0")[:-1]] for line in path.read_bytes().split(b"\n")[:-1]]


def qemu(*argv: str) -> Any:
    result = CommandRunner().run(list(argv), timeout=60)
    assert result.ok, result.describe()
    return result


def info(path: Path) -> Dict[str, Any]:
    data = json.loads(qemu("qemu-img", "info", "--output=json", str(path)).stdout)
    assert isinstance(data, dict)
    return data


def holds(path: Path, pattern: str) -> bool:
    """Whether the image's first 4 KiB read as ``pattern`` (a byte, e.g. 0xab) through qemu-io."""
    result = CommandRunner().run(["qemu-io", "-c", f"read -P {pattern} 0 4k", str(path)], timeout=60)
    return result.ok and "Pattern verification failed" not in result.stdout + result.stderr


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    return Tools(tmp_path)


@pytest.fixture
def raw_backing(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "base.raw"
    path.parent.mkdir()
    qemu("qemu-img", "create", "-q", "-f", "raw", str(path), "1M")
    return path


def values(tmp_path: Path, backing: Optional[Path] = None, **kw: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {"config": str(tmp_path / "vm1.xml"), "backingfile": str(backing or ""),
                            "stateless": True, "copyindirs": "", "sync_config_on_stop": False}
    base.update(kw)
    return base


def test_real_overlay_records_its_backing_file_and_format(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    overlay = images.prepare_disk(values(tmp_path, raw_backing), "vm1", tools.runner, Deadline(60))
    assert overlay == str(tmp_path / "vm1.qcow2")
    got = info(Path(overlay))
    assert got["format"] == "qcow2"
    assert got["backing-filename"] == str(raw_backing)
    assert got["backing-filename-format"] == "raw"  # what libvirt needs to start the domain
    assert got["virtual-size"] == 1024 * 1024  # the backing file's


def test_real_overlay_on_a_qcow2_backing_file(tmp_path: Path, tools: Tools) -> None:
    base = tmp_path / "base.qcow2"
    qemu("qemu-img", "create", "-q", "-f", "qcow2", str(base), "2M")
    overlay = images.prepare_disk(values(tmp_path, base), "vm1", tools.runner, Deadline(60))
    assert overlay is not None
    assert info(Path(overlay))["backing-filename-format"] == "qcow2"


def test_real_relative_backing_file_is_read_next_to_the_overlay(tmp_path: Path, tools: Tools,
                                                                raw_backing: Path) -> None:
    overlay = images.prepare_disk(values(tmp_path, None, backingfile="images/base.raw"), "vm1", tools.runner,
                                  Deadline(60))
    assert overlay is not None
    got = info(Path(overlay))
    assert got["backing-filename"] == "images/base.raw"
    assert got["full-backing-filename"] == str(raw_backing)


def test_stateless_start_resets_the_overlay(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    v = values(tmp_path, raw_backing, stateless=True)
    overlay = Path(str(images.prepare_disk(v, "vm1", tools.runner, Deadline(60))))
    qemu("qemu-io", "-c", "write -P 0xab 0 4k", str(overlay))  # what the guest wrote
    assert holds(overlay, "0xab") and not holds(overlay, "0")
    assert images.prepare_disk(v, "vm1", tools.runner, Deadline(60)) == str(overlay)
    assert holds(overlay, "0") and not holds(overlay, "0xab")  # the backing file's zeros again
    assert info(overlay)["backing-filename"] == str(raw_backing)


def test_persistent_start_keeps_the_overlay(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    v = values(tmp_path, raw_backing, stateless=False)
    overlay = Path(str(images.prepare_disk(v, "vm1", tools.runner, Deadline(60))))
    qemu("qemu-io", "-c", "write -P 0xcd 0 4k", str(overlay))
    before = overlay.stat()
    assert images.prepare_disk(v, "vm1", tools.runner, Deadline(60)) is None
    after = overlay.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert holds(overlay, "0xcd")


def test_copyindirs_go_to_virt_copy_in_word_for_word(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    tools.fake("virt-copy-in")
    odd = tmp_path / "in;ject$(id)`id`"
    (odd / "etc").mkdir(parents=True)
    (tmp_path / "root").mkdir()
    v = values(tmp_path, raw_backing, copyindirs=f"{odd}/* {tmp_path}/roo?")
    overlay = images.prepare_disk(v, "vm1", tools.runner, Deadline(60))
    assert tools.argv("virt-copy-in") == [["--format=qcow2", "-a", str(overlay), str(odd / "etc"),
                                           str(tmp_path / "root"), "/"]]
    assert info(Path(str(overlay)))["backing-filename"] == str(raw_backing)  # created before the copy


def test_failed_copy_removes_the_overlay_it_was_for(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    tools.fake("virt-copy-in", "echo 'libguestfs: error: no operating system was found' >&2; exit 1")
    v = values(tmp_path, raw_backing, stateless=False, copyindirs=str(tmp_path))
    with pytest.raises(GenericError) as err:
        images.prepare_disk(v, "vm1", tools.runner, Deadline(60))
    assert err.value.code == 1 and "no operating system was found" in err.value.reason
    assert not (tmp_path / "vm1.qcow2").exists()  # so that the next start copies again
    assert len(tools.argv("virt-copy-in")) == 1


def test_failed_create_says_what_qemu_img_said(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    with pytest.raises(GenericError) as err:
        images.prepare_disk(values(tmp_path / "gone", raw_backing), "vm1", tools.runner, Deadline(60))
    assert err.value.code == 1
    assert f"qemu-img could not create the overlay {tmp_path / 'gone' / 'vm1.qcow2'}" in err.value.reason
    assert "No such file or directory" in err.value.reason


def test_hung_virt_copy_in_ends_at_the_deadline(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    tools.fake("virt-copy-in", "exec sleep 60")
    v = values(tmp_path, raw_backing, copyindirs=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(GenericError) as err:
        images.prepare_disk(v, "vm1", tools.runner, Deadline(3.0))
    assert time.monotonic() - started < 10
    assert "virt-copy-in" in err.value.reason and "did not finish" in err.value.reason


def test_hung_qemu_img_ends_at_the_deadline(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    tools.fake("qemu-img", "exec sleep 60")
    started = time.monotonic()
    with pytest.raises(GenericError, match="did not finish"):
        images.prepare_disk(values(tmp_path, raw_backing), "vm1", tools.runner, Deadline(1.5))
    assert time.monotonic() - started < 8
    assert tools.argv("qemu-img") == [["info", "--output=json", str(raw_backing)]]
    assert not (tmp_path / "vm1.qcow2").exists()


def test_csync2_gets_the_config_file(tmp_path: Path, tools: Tools) -> None:
    tools.fake("csync2")
    assert images.sync_config(values(tmp_path, sync_config_on_stop=True), tools.runner, Deadline(60)) is True
    assert tools.argv("csync2") == [["-x", str(tmp_path / "vm1.xml")]]


def test_failing_csync2_is_not_an_error(tmp_path: Path, tools: Tools) -> None:
    tools.fake("csync2", "echo 'csync2: connection refused' >&2; exit 1")
    assert images.sync_config(values(tmp_path, sync_config_on_stop=True), tools.runner, Deadline(60)) is False
    assert tools.argv("csync2") == [["-x", str(tmp_path / "vm1.xml")]]


def test_hung_csync2_costs_a_quarter_of_what_is_left(tmp_path: Path, tools: Tools) -> None:
    tools.fake("csync2", "exec sleep 60")
    deadline = Deadline(4.0)
    assert images.sync_config(values(tmp_path, sync_config_on_stop=True), tools.runner, deadline) is False
    assert deadline.elapsed() < 2.5  # about 1 s, then killed: the stop still has its time
    assert deadline.remaining() > 1.5


def test_check_node_finds_the_real_qemu_img_and_the_fakes(tmp_path: Path, tools: Tools, raw_backing: Path) -> None:
    tools.fake("virt-copy-in")
    tools.fake("csync2")
    images.check_node(values(tmp_path, raw_backing, copyindirs=str(tmp_path), sync_config_on_stop=True),
                      tools.runner, Deadline(10))
    assert tools.argv("virt-copy-in") == [] and tools.argv("csync2") == []  # looked up, not run
