"""livemig.files, the one bounded read, and the readers that now go through it.

A FIFO stands for every input that could block a plain ``open()``: each test
that reads one runs the read in a thread, and the test's cleanup opens the
FIFO's write end, which lets a reader that did block (the code before this
change) return, so a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

from livemig import files
from livemig.drbd.proc import read_proc_drbd
from livemig.drbd.state import DrbdStateError
from livemig.files import FileNotText, FileTooLarge, FileUnreadable

#: how long a read that must not block is given before the test calls it blocked
NOT_BLOCKED = 20.0


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    yield path
    try:  # release a reader blocked in open(): a writer appears and goes
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass  # nobody is reading it: nothing blocked


def outcome(call: Callable[[], Any]) -> Dict[str, Any]:
    """What ``call()`` returned or raised; {"blocked": True} when it did not return."""
    box: Dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(NOT_BLOCKED)
    return box if box else {"blocked": True}


def test_read_regular_file_limits(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert files.read_regular_file(str(path), 100, 5.0) == b"x" * 100
    with pytest.raises(FileTooLarge, match="larger than"):
        files.read_regular_file(str(path), 99, 5.0)
    with pytest.raises(FileUnreadable) as missing:
        files.read_regular_file(str(tmp_path / "absent"), 10, 5.0)
    assert missing.value.missing and missing.value.errno == 2
    with pytest.raises(FileUnreadable, match="not a regular file"):
        files.read_regular_file(str(tmp_path), 10, 5.0)


def test_read_text_file(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_bytes("grüß\n".encode())
    assert files.read_text_file(str(path), 64, 5.0) == "grüß\n"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(FileNotText, match="not UTF-8"):
        files.read_text_file(str(path), 64, 5.0)


def test_read_small_file_kernel_files_count_what_is_read(tmp_path: Path) -> None:
    path = tmp_path / "attr"
    path.write_bytes(b"253:2\n")
    assert files.read_small_file(str(path), 64, kernel=True) == b"253:2\n"
    with pytest.raises(FileTooLarge):
        files.read_small_file(str(path), 5, kernel=True)


def test_read_owned_file_refuses_links_and_writable_files(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    os.chmod(path, 0o600)
    assert files.read_owned_file(str(path), 64) == b"{}"
    link = tmp_path / "link.json"
    link.symlink_to(path)
    with pytest.raises(FileUnreadable):
        files.read_owned_file(str(link), 64)
    os.chmod(path, 0o620)
    with pytest.raises(FileUnreadable, match="others may write"):
        files.read_owned_file(str(path), 64)


@pytest.mark.parametrize("reader", [
    lambda p: files.read_small_file(p, 64),
    lambda p: files.read_owned_file(p, 64),
    lambda p: files.read_regular_file(p, 64, 5.0),
])
def test_no_read_waits_on_a_fifo(fifo: Path, reader: Callable[[str], bytes]) -> None:
    result = outcome(lambda: reader(str(fifo)))
    assert isinstance(result.get("error"), FileUnreadable), result


def test_read_stream_limits() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"abc")
        os.close(w)
        w = -1
        assert files.read_stream(r, 3, 5.0) == b"abc"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    r, w = os.pipe()
    try:
        os.write(w, b"abcd")
        with pytest.raises(FileTooLarge, match="standard input is larger than 3 bytes"):
            files.read_stream(r, 3, 5.0)
        with pytest.raises(FileUnreadable, match="did not reach its end") as late:
            files.read_stream(r, 64, 0.2)
        assert late.value.timed_out
    finally:
        os.close(r)
        os.close(w)


# -- the readers that used to have a read of their own ---------------------------------

def test_proc_drbd_named_as_a_fifo_is_refused_not_waited_on(fifo: Path) -> None:
    """LIVEMIG_PROC_DRBD naming a FIFO: before, open() waited for a writer for ever (the guard hung)."""
    result = outcome(lambda: read_proc_drbd(str(fifo)))
    assert isinstance(result.get("error"), DrbdStateError), result
    assert "not a regular file" in str(result["error"])


def test_proc_drbd_absent_is_not_loaded_and_too_large_is_refused(tmp_path: Path) -> None:
    assert read_proc_drbd(str(tmp_path / "absent")) is None
    big = tmp_path / "drbd"
    big.write_bytes(b"version: 8.4.11 (api:1/proto:86-101)\n" + b" " * (4 * 1024 * 1024))
    with pytest.raises(DrbdStateError, match="larger than"):  # before: cut at 4 MiB and parsed as if whole
        read_proc_drbd(str(big))


def test_mount_table_named_as_a_fifo_fails_closed_not_waited_on(tmp_path: Path, fifo: Path) -> None:
    """The disk tracer's mount table: before, a FIFO there blocked the trace until its bound."""
    from livemig.domain_xml import DomainDisk
    from livemig.drbd.mapping import DrbdMappingError, drbd_refs_for_disk

    anonymous = os.stat_result((0o100600, 1, os.makedev(0, 45), 1, 0, 0, 1, 0, 0, 0))
    proc_drbd = tmp_path / "proc-drbd"
    proc_drbd.write_text("version: 9.2.4 (api:2/proto:86-122)\n")  # DRBD loaded: untraceable fails closed
    disk = DomainDisk("vda", "file", "/srv/vm.img")
    result = outcome(lambda: drbd_refs_for_disk(disk, lambda _p: anonymous, str(tmp_path),
                                                proc_drbd=str(proc_drbd), mountinfo=str(fifo)))
    assert isinstance(result.get("error"), DrbdMappingError), result
    assert "could not be read" in str(result["error"])


def test_state_file_through_the_owned_read(tmp_path: Path, fifo: Path) -> None:
    from livemig.ocf.statefile import StateFile

    state = StateFile("Agent", "r", {"HA_RSCTMP": str(tmp_path)})
    os.rename(fifo, state.path)  # a FIFO planted where the state file goes
    try:
        assert outcome(state.load) == {"value": {}}
    finally:
        os.rename(state.path, fifo)
