"""Every file the livemig command reads: a FIFO, a device, a directory, a huge or a missing file.

Each is refused with exit code 2 and a message naming the option and the file,
and none can block the command: each run happens in a thread that must finish
(a FIFO with no writer blocked plain open() for ever). ``--cib`` goes to
cibadmin through CIB_file, so it is checked to be a regular file first.
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from livemig.cli.main import main
from livemig.run import CommandResult, CommandRunner
from tests.unit.check.helpers import CIB, DRBD

DOMAIN = CIB / "domain-vm1.xml"
GOOD_CIB = CIB / "crmsh-good.xml"
DRBD_XML = DRBD / "check-9-good.dump-xml.txt"
HANG_GUARD = 30.0  # a run still going after this long is blocked (the base blocked for ever)


class RecordingRunner(CommandRunner):
    """Answers cibadmin from the file CIB_file names; records what it was asked to run."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[List[str]] = []

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Dict[str, str]] = None, **_caps: int) -> CommandResult:
        self.calls.append(list(argv))
        if list(argv) == ["cibadmin", "--query"] and env and "CIB_file" in env:
            return CommandResult(list(argv), 0, Path(env["CIB_file"]).read_text(encoding="utf-8"), "")
        return CommandResult(list(argv), 1, "", "not scripted")


def run(argv: List[str], stdin_fd: Optional[int] = None) -> Tuple[int, str, str, RecordingRunner]:
    """The command in a thread: a run that blocks fails the test instead of hanging it."""
    out, err = io.StringIO(), io.StringIO()
    runner = RecordingRunner()
    box: Dict[str, int] = {}

    def target() -> None:
        extra = {"stdin_fd": stdin_fd} if stdin_fd is not None else {}
        box["code"] = main(argv, runner=runner, stdout=out, stderr=err, **extra)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(HANG_GUARD)
    assert not worker.is_alive(), f"livemig {' '.join(argv)} blocked"
    return box["code"], out.getvalue(), err.getvalue(), runner


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "input.fifo"
    os.mkfifo(path)
    yield path
    try:  # release a reader still blocked in open() (only the base code did that)
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def huge(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "huge.xml"
    with open(path, "wb") as handle:
        handle.truncate(size)  # sparse: costs no disk
    return path


GUARD = ["guard", "--peer", "beta", "--resource", "r0"]
GUARD_DOMAIN = ["guard", "--peer", "beta"]
CHECK = ["check", "vm1", "--skip-runtime", "--skip-libvirt", "--peer", "beta"]
CONFIG = ["config", "vm1", "--drbd-resource", "r0"]


def commands(bad: str) -> List[Tuple[str, List[str]]]:
    """(option, argv) for every file option of every command, ``bad`` in that option's place."""
    return [
        ("--cib", GUARD + ["--cib", bad]),
        ("--domain-xml", GUARD_DOMAIN + ["--domain-xml", bad]),
        ("--cib", CHECK + ["--cib", bad, "--drbd-xml", str(DRBD_XML), "--domain-xml", str(DOMAIN)]),
        ("--drbd-xml", CHECK + ["--cib", str(GOOD_CIB), "--drbd-xml", bad, "--domain-xml", str(DOMAIN)]),
        ("--domain-xml", CHECK + ["--cib", str(GOOD_CIB), "--drbd-xml", str(DRBD_XML), "--domain-xml", bad]),
        ("--domain-xml", CONFIG + ["--domain-xml", bad]),
    ]


def assert_refused(bad: str, expected: str) -> None:
    for option, argv in commands(bad):
        code, out, err, runner = run(argv)
        assert code == 2, (argv, out, err)
        assert f"{option} {bad}" in err and expected in err, (argv, err)
        assert "Traceback" not in err and out == ""
        assert runner.calls == [], f"{argv}: ran {runner.calls} on an unusable input"


def test_a_fifo_is_refused_without_blocking(fifo: Path) -> None:
    assert_refused(str(fifo), "is not a regular file")


def test_a_symlink_to_a_fifo_is_refused(fifo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.xml"
    link.symlink_to(fifo)
    assert_refused(str(link), "is not a regular file")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused(device: str) -> None:
    assert_refused(device, "is not a regular file")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert_refused(str(tmp_path), "is not a regular file")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    assert_refused(str(tmp_path / "missing.xml"), "No such file or directory")


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    assert_refused(str(huge(tmp_path, 64 * 1024 * 1024)), "is larger than")


def test_the_domain_xml_limits_differ_per_command(tmp_path: Path) -> None:
    five_mib = str(huge(tmp_path, 5 * 1024 * 1024))  # guard: at most 4 MiB; check and config: 16 MiB
    code, _, err, _ = run(GUARD_DOMAIN + ["--domain-xml", five_mib])
    assert code == 2 and "is larger than 4096 KiB" in err


def test_good_files_still_work() -> None:
    code, out, err, runner = run(CHECK + ["--cib", str(GOOD_CIB), "--drbd-xml", str(DRBD_XML),
                                          "--domain-xml", str(DOMAIN)])
    assert code == 0, out + err
    assert runner.calls == [["cibadmin", "--query"]]
    code, out, err, _ = run(CONFIG + ["--domain-xml", str(DOMAIN)])
    assert code == 0 and "primitive vm1 ocf:livemig:VirtualDomain" in out, err


def test_stdin_is_read_bounded_in_size(tmp_path: Path) -> None:
    big = huge(tmp_path, 5 * 1024 * 1024)
    with open(big, "rb") as handle:
        code, _, err, _ = run(GUARD_DOMAIN + ["--domain-xml", "-"], stdin_fd=handle.fileno())
    assert code == 2 and "--domain-xml -: standard input is larger than 4 MiB" in err


def test_stdin_is_read_bounded_in_time() -> None:
    r, w = os.pipe()  # a writer that never closes: plain read() waited for ever
    try:
        os.write(w, b"<domain>")
        code, _, err, _ = run(GUARD_DOMAIN + ["--domain-xml", "-", "--timeout", "0.5"], stdin_fd=r)
    finally:
        os.close(r)
        os.close(w)
    assert code == 2 and "standard input did not reach its end" in err


def test_stdin_is_read() -> None:
    r, w = os.pipe()
    os.write(w, DOMAIN.read_bytes())
    os.close(w)
    try:
        code, out, err, runner = run(GUARD_DOMAIN + ["--domain-xml", "-", "--json"], stdin_fd=r)
    finally:
        os.close(r)
    # the fixture's disk is on DRBD resource r0: the guard goes on to read DRBD state
    assert "standard input" not in err and "--domain-xml" not in err, err
    assert code in (1, 2) and '"allowed": false' in out


def test_stdin_that_is_closed() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    code, _, err, _ = run(GUARD_DOMAIN + ["--domain-xml", "-"], stdin_fd=r)
    assert code == 2 and "--domain-xml -: cannot read standard input" in err


def test_the_config_file_named_in_the_cib_is_read_fifo_safe(fifo: Path, tmp_path: Path) -> None:
    """`livemig check` without --domain-xml reads the resource's config parameter: a FIFO there too."""
    cib = tmp_path / "cib.xml"
    cib.write_text(GOOD_CIB.read_text(encoding="utf-8").replace("/etc/libvirt/qemu/vm1.xml", str(fifo)),
                   encoding="utf-8")
    code, out, err, _ = run(CHECK + ["--cib", str(cib), "--drbd-xml", str(DRBD_XML), "--json"])
    assert code == 2, out + err
    rows = [c for c in json.loads(out)["checks"] if c["name"] == "domain-xml"]
    assert [(r["status"], r["found"]) for r in rows] == [
        ("unknown", f"cannot read the config file: {fifo} is not a regular file")]
