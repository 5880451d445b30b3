"""agents/virtualdomain/images.py with a ScriptedRunner: the commands built and the errors they map to.

The real qemu-img, and fake virt-copy-in / csync2 executables, are in
test_virtualdomain_images_tools.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import pytest

from livemig.agents.virtualdomain import images
from livemig.domain_xml import DomainDisk
from livemig.ocf.deadline import Deadline
from livemig.ocf.errors import ConfigurationError, GenericError, NotInstalledError
from livemig.run import CommandNotFound, CommandOutputTooLarge, CommandResult, CommandTimeout
from tests.support.scripted import Answer, ScriptedRunner

RAW_INFO = json.dumps({"virtual-size": 1048576, "filename": "base.raw", "format": "raw"})
QCOW2_INFO = json.dumps({"virtual-size": 1048576, "filename": "base.qcow2", "format": "qcow2"})


class Runner(ScriptedRunner):
    """A ScriptedRunner whose programs are installed (or not) as the test says."""

    def __init__(self, answers: Optional[Mapping[str, Answer]] = None, missing: Sequence[str] = ()) -> None:
        super().__init__(answers or {})
        self.missing = set(missing)

    def which(self, program: str) -> Optional[str]:
        return None if program in self.missing else f"/usr/bin/{program}"


def values(tmp_path: Path, **kw: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {"config": str(tmp_path / "vm1.xml"), "backingfile": "", "stateless": False,
                            "copyindirs": "", "sync_config_on_stop": False, "save_config_on_stop": False}
    base.update(kw)
    return base


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "base.raw"
    path.parent.mkdir()
    path.write_bytes(b"\0" * 4096)
    return path


def log() -> logging.Logger:
    return logging.getLogger("test.virtualdomain_images")


# -- the overlay's name -------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "overlay"), [
    ("/etc/libvirt/qemu/vm1.xml", "/etc/libvirt/qemu/vm1.qcow2"),
    ("/srv/vm1.xml.bak", "/srv/vm1.qcow2"),  # cut at the first dot
    ("/srv/vms.d/vm1.xml", "/srv/vms.qcow2"),  # ... even in a directory's name, as ${config%%.*}
    ("/etc/vm1", "/etc/vm1.qcow2"),  # no dot: the whole path
])
def test_overlay_is_heartbeats_config_cut_at_its_first_dot(config: str, overlay: str) -> None:
    assert images.overlay_path(config) == overlay


def test_relative_backing_file_is_relative_to_the_overlay(tmp_path: Path) -> None:
    assert images.backing_path(values(tmp_path, backingfile="images/base.raw")) == str(tmp_path / "images/base.raw")
    assert images.backing_path(values(tmp_path, backingfile=" /b/base.raw ")) == "/b/base.raw"


# -- the parameters -----------------------------------------------------------------------------


def test_sync_config_on_stop_implies_save_config_on_stop(tmp_path: Path) -> None:
    v = values(tmp_path, sync_config_on_stop=True)
    images.apply_implied(v)
    assert v["save_config_on_stop"] is True
    v = values(tmp_path)
    images.apply_implied(v)
    assert v["save_config_on_stop"] is False


@pytest.mark.parametrize(("kw", "reason"), [
    ({"stateless": True}, "stateless=true needs backingfile"),
    ({"stateless": True, "backingfile": "  "}, "stateless=true needs backingfile"),
    ({"backingfile": "{tmp}/vm1.qcow2"}, "is the overlay itself"),
    ({"backingfile": "vm1.qcow2"}, "is the overlay itself"),  # relative: next to the overlay
    ({"backingfile": "{tmp}/vm1.xml"}, "three different files"),
    ({"backingfile": "/b/base.raw", "copyindirs": "/etc/x relative/y"}, "'relative/y' must be an absolute path"),
])
def test_refused_combinations_are_configuration_errors(tmp_path: Path, kw: Dict[str, Any], reason: str) -> None:
    kw = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in kw.items()}
    with pytest.raises(ConfigurationError) as err:
        images.check_parameters(values(tmp_path, **kw))
    assert err.value.code == 6
    assert reason in err.value.reason


def test_config_named_like_its_overlay_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="three different files"):
        images.check_parameters(values(tmp_path, config=str(tmp_path / "vm1.qcow2"), backingfile="/b/base.raw"))


@pytest.mark.parametrize("kw", [
    {},
    {"stateless": False, "backingfile": " ", "copyindirs": ""},
    {"backingfile": "/b/base.raw"},
    {"backingfile": "/b/base.raw", "stateless": True, "copyindirs": "/srv/inject/etc /srv/inject/root"},
    {"sync_config_on_stop": True},
])
def test_heartbeat_combinations_are_accepted(tmp_path: Path, kw: Dict[str, Any]) -> None:
    assert images.check_parameters(values(tmp_path, **kw)) is None


def test_copyindirs_without_backingfile_is_only_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=log().name):
        images.check_parameters(values(tmp_path, copyindirs="relative/too"), log())
    assert "copyindirs is ignored without backingfile" in caplog.text


# -- the node's tools and files -----------------------------------------------------------------


def test_check_node_passes_with_tools_and_files(tmp_path: Path, backing: Path) -> None:
    inject = tmp_path / "inject"
    inject.mkdir()
    runner = Runner()
    images.check_node(values(tmp_path, backingfile=str(backing), copyindirs=str(inject), sync_config_on_stop=True),
                      runner, Deadline(10))
    assert runner.calls == []  # looked up, nothing run


@pytest.mark.parametrize(("kw", "missing", "reason"), [
    ({"sync_config_on_stop": True}, ["csync2"], "needs csync2"),
    ({"backingfile": "{backing}"}, ["qemu-img"], "qemu-img is not installed"),
    ({"backingfile": "{backing}", "copyindirs": "{tmp}"}, ["virt-copy-in"], "virt-copy-in is not installed"),
    ({"backingfile": "{tmp}/images/nothere.qcow2"}, [], "does not exist on this node"),
    ({"backingfile": "{tmp}/images"}, [], "is a directory"),
    ({"backingfile": "{backing}", "config": "{tmp}/gone/vm1.xml"}, [], "directory {tmp}/gone of the overlay"),
    ({"backingfile": "{backing}", "copyindirs": "{tmp}/nothere"}, [], "copyindirs: {tmp}/nothere does not exist"),
    ({"backingfile": "{backing}", "copyindirs": "{tmp}/nothere*"}, [], "copyindirs: {tmp}/nothere* does not exist"),
])
def test_check_node_missing_things_are_not_installed(tmp_path: Path, backing: Path, kw: Dict[str, Any],
                                                     missing: List[str], reason: str) -> None:
    def fill(text: str) -> str:
        return text.replace("{backing}", str(backing)).replace("{tmp}", str(tmp_path))

    with pytest.raises(NotInstalledError) as err:
        images.check_node(values(tmp_path, **{k: fill(v) if isinstance(v, str) else v for k, v in kw.items()}),
                          Runner(missing=missing), Deadline(10))
    assert err.value.code == 5
    assert fill(reason) in err.value.reason


def test_check_node_without_the_parameters_needs_nothing(tmp_path: Path) -> None:
    images.check_node(values(tmp_path), Runner(missing=["qemu-img", "virt-copy-in", "csync2"]), Deadline(10))


def test_check_node_refuses_an_overlay_that_is_a_directory(tmp_path: Path, backing: Path) -> None:
    (tmp_path / "vm1.qcow2").mkdir()
    with pytest.raises(NotInstalledError, match="is a directory"):
        images.check_node(values(tmp_path, backingfile=str(backing)), Runner(), Deadline(10))


def test_check_node_refuses_a_backing_file_linked_to_the_overlay(tmp_path: Path, backing: Path) -> None:
    link = tmp_path / "images" / "link.qcow2"
    (tmp_path / "vm1.qcow2").write_bytes(b"x")
    link.symlink_to(tmp_path / "vm1.qcow2")
    with pytest.raises(ConfigurationError, match="through a link"):
        images.check_node(values(tmp_path, backingfile=str(link)), Runner(), Deadline(10))


def test_check_node_warns_when_no_disk_is_the_overlay(tmp_path: Path, backing: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    v = values(tmp_path, backingfile=str(backing))
    other = (DomainDisk(target="vda", disk_type="file", source="/var/lib/libvirt/images/vm1.qcow2"),)
    ours = (DomainDisk(target="vda", disk_type="file", source=str(tmp_path / "vm1.qcow2")),)
    with caplog.at_level(logging.WARNING, logger=log().name):
        images.check_node(v, Runner(), Deadline(10), ours, log())
        assert caplog.text == ""
        images.check_node(v, Runner(), Deadline(10), other, log())
    assert f"no disk of {tmp_path / 'vm1.xml'} is the overlay {tmp_path / 'vm1.qcow2'}" in caplog.text


# -- start: the overlay -------------------------------------------------------------------------


def test_no_backing_file_runs_nothing(tmp_path: Path) -> None:
    runner = Runner()
    assert images.prepare_disk(values(tmp_path, stateless=False, copyindirs="/x"), "vm1", runner, Deadline(10)) is None
    assert runner.calls == []


def test_stateless_creates_the_overlay_with_the_backing_format(tmp_path: Path, backing: Path) -> None:
    overlay = tmp_path / "vm1.qcow2"
    overlay.write_bytes(b"old overlay")
    runner = Runner({"qemu-img info": (0, RAW_INFO), "qemu-img create": (0, "Formatting ...")})
    got = images.prepare_disk(values(tmp_path, backingfile=str(backing), stateless=True), "vm1", runner, Deadline(10))
    assert got == str(overlay)
    assert runner.calls == [
        ["qemu-img", "info", "--output=json", str(backing)],
        ["qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", str(backing), str(overlay)],
    ]


def test_backing_file_is_passed_as_given_and_read_where_qemu_img_reads_it(tmp_path: Path, backing: Path) -> None:
    runner = Runner({"qemu-img info": (0, QCOW2_INFO), "qemu-img create": (0, "")})
    images.prepare_disk(values(tmp_path, backingfile="images/base.raw"), "vm1", runner, Deadline(10))
    assert runner.calls[0][-1] == str(backing)  # info: the file itself
    assert runner.calls[1][-4:] == ["qcow2", "-b", "images/base.raw", str(tmp_path / "vm1.qcow2")]


def test_persistent_mode_keeps_an_existing_overlay(tmp_path: Path, backing: Path) -> None:
    (tmp_path / "vm1.qcow2").write_bytes(b"the guest's changes")
    runner = Runner()
    v = values(tmp_path, backingfile=str(backing), stateless=False, copyindirs=str(tmp_path))
    assert images.prepare_disk(v, "vm1", runner, Deadline(10)) is None
    assert runner.calls == []  # neither qemu-img nor virt-copy-in


@pytest.mark.parametrize("empty", [True, False])
def test_persistent_mode_creates_a_missing_or_empty_overlay(tmp_path: Path, backing: Path, empty: bool) -> None:
    if empty:
        (tmp_path / "vm1.qcow2").write_bytes(b"")  # heartbeat's [ ! -s overlay ]
    runner = Runner({"qemu-img info": (0, RAW_INFO), "qemu-img create": (0, "")})
    assert images.prepare_disk(values(tmp_path, backingfile=str(backing)), "vm1", runner, Deadline(10)) \
        == str(tmp_path / "vm1.qcow2")
    assert [c[:2] for c in runner.calls] == [["qemu-img", "info"], ["qemu-img", "create"]]


def test_copyindirs_are_copied_into_a_new_overlay(tmp_path: Path, backing: Path) -> None:
    inject = tmp_path / "inject"
    for name in ("etc", "root", ".hidden"):
        (inject / name).mkdir(parents=True)
    odd = tmp_path / "a;b$(id)`c`|d>e"
    odd.mkdir()
    runner = Runner({"qemu-img info": (0, RAW_INFO), "qemu-img create": (0, ""), "virt-copy-in": (0, "")})
    v = values(tmp_path, backingfile=str(backing), stateless=True, copyindirs=f"{inject}/*  {odd}\t/nomatch/*")
    images.prepare_disk(v, "vm1", runner, Deadline(10))
    # sh's expansion: sorted matches, dotfiles left out, an unmatched pattern as it is
    assert runner.calls[2] == ["virt-copy-in", "--format=qcow2", "-a", str(tmp_path / "vm1.qcow2"),
                               str(inject / "etc"), str(inject / "root"), str(odd), "/nomatch/*", "/"]


@pytest.mark.parametrize(("answers", "code", "reason"), [
    ({"qemu-img info": CommandNotFound(["qemu-img"], "qemu-img: command not found")}, 5, "command not found"),
    ({"qemu-img info": (1, "")}, 1, "cannot read the backing file"),
    ({"qemu-img info": (0, "not json")}, 1, "did not say the backing file's format"),
    ({"qemu-img info": (0, json.dumps({"format": "raw --oops"}))}, 1, "did not say the backing file's format"),
    ({"qemu-img info": (0, RAW_INFO),
      "qemu-img create": CommandResult([], 1, "", "qemu-img: vm1.qcow2: Permission denied\n")},
     1, "qemu-img could not create the overlay {overlay} of vm1 on {backing} (exit 1): qemu-img: vm1.qcow2: "
        "Permission denied"),
    ({"qemu-img info": (0, RAW_INFO),
      "qemu-img create": CommandTimeout(["qemu-img"], "qemu-img did not finish within 3.0s and was killed")},
     1, "raise the operation's timeout"),
    ({"qemu-img info": CommandOutputTooLarge(["qemu-img"], "stdout", 16)}, 1, "wrote more than 16 bytes"),
])
def test_qemu_img_failures(tmp_path: Path, backing: Path, answers: Dict[str, Answer], code: int, reason: str) -> None:
    with pytest.raises((GenericError, NotInstalledError)) as err:
        images.prepare_disk(values(tmp_path, backingfile=str(backing), stateless=True), "vm1", Runner(answers),
                            Deadline(10))
    assert err.value.code == code
    assert reason.format(overlay=tmp_path / "vm1.qcow2", backing=backing) in err.value.reason


def test_copy_in_failure_is_code_1_and_removes_a_fresh_overlay(tmp_path: Path, backing: Path) -> None:
    overlay = tmp_path / "vm1.qcow2"
    overlay.write_bytes(b"")  # as if qemu-img had created it (it is scripted here)
    runner = Runner({"qemu-img info": (0, RAW_INFO), "qemu-img create": (0, ""),
                     "virt-copy-in": CommandResult([], 1, "", "libguestfs: error: no operating system was found\n")})
    with pytest.raises(GenericError) as err:
        images.prepare_disk(values(tmp_path, backingfile=str(backing), copyindirs=str(tmp_path)), "vm1", runner,
                            Deadline(10))
    assert err.value.reason.startswith(f"virt-copy-in could not copy copyindirs into vm1's overlay {overlay}")
    assert err.value.reason.endswith("no operating system was found")
    assert not overlay.exists()  # the next start creates it (and copies) again


def test_failure_over_a_stateless_overlay_leaves_it(tmp_path: Path, backing: Path) -> None:
    overlay = tmp_path / "vm1.qcow2"
    overlay.write_bytes(b"previous run")
    runner = Runner({"qemu-img info": (0, RAW_INFO), "qemu-img create": (1, "")})
    with pytest.raises(GenericError):
        images.prepare_disk(values(tmp_path, backingfile=str(backing), stateless=True), "vm1", runner, Deadline(10))
    assert overlay.exists()  # not ours to remove: the next stateless start recreates it anyway


def test_missing_virt_copy_in_is_code_5(tmp_path: Path, backing: Path) -> None:
    runner = Runner({"qemu-img info": (0, RAW_INFO), "qemu-img create": (0, ""),
                     "virt-copy-in": CommandNotFound(["virt-copy-in"], "virt-copy-in: command not found")})
    with pytest.raises(NotInstalledError, match="virt-copy-in: command not found"):
        images.prepare_disk(values(tmp_path, backingfile=str(backing), copyindirs=str(tmp_path)), "vm1", runner,
                            Deadline(10))


def test_every_command_is_bounded_by_what_is_left(tmp_path: Path, backing: Path) -> None:
    runner = Runner({"qemu-img info": (0, RAW_INFO), "qemu-img create": (0, ""), "virt-copy-in": (0, "")})
    deadline = Deadline(7.5)
    images.prepare_disk(values(tmp_path, backingfile=str(backing), copyindirs=str(tmp_path)), "vm1", runner, deadline)
    assert len(runner.records) == 3
    assert all(0 < timeout <= 7.5 for _argv, timeout, _env in runner.records)


def test_no_time_left_runs_nothing(tmp_path: Path, backing: Path) -> None:
    runner = Runner()
    with pytest.raises(GenericError, match="no time left"):
        images.prepare_disk(values(tmp_path, backingfile=str(backing), stateless=True), "vm1", runner, Deadline(0))
    assert runner.calls == []


# -- stop: csync2 -------------------------------------------------------------------------------


def test_sync_config_runs_csync2_on_the_config(tmp_path: Path) -> None:
    runner = Runner({"csync2": (0, "")})
    assert images.sync_config(values(tmp_path, sync_config_on_stop=True), runner, Deadline(80)) is True
    assert runner.calls == [["csync2", "-x", str(tmp_path / "vm1.xml")]]
    assert 0 < runner.records[0][1] <= images.SYNC_CAP  # capped: the shutdown still has its time


def test_sync_config_takes_a_quarter_of_a_short_deadline(tmp_path: Path) -> None:
    runner = Runner({"csync2": (0, "")})
    images.sync_config(values(tmp_path, sync_config_on_stop=True), runner, Deadline(8))
    assert 0 < runner.records[0][1] <= 2.0


def test_sync_config_off_runs_nothing(tmp_path: Path) -> None:
    runner = Runner()
    assert images.sync_config(values(tmp_path, save_config_on_stop=True), runner, Deadline(80)) is False
    assert runner.calls == []


@pytest.mark.parametrize("answer", [
    CommandResult([], 1, "", "csync2: connection to node2 refused\n"),
    CommandNotFound(["csync2"], "csync2: command not found"),
    CommandTimeout(["csync2"], "csync2 did not finish within 20.0s and was killed"),
])
def test_sync_failures_are_warnings_only(tmp_path: Path, answer: Answer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=log().name):
        ok = images.sync_config(values(tmp_path, sync_config_on_stop=True), Runner({"csync2": answer}),
                                Deadline(80), log())
    assert ok is False
    assert "the peers keep their copy" in caplog.text


def test_sync_with_no_time_left_runs_nothing(tmp_path: Path) -> None:
    runner = Runner({"csync2": (0, "")})
    assert images.sync_config(values(tmp_path, sync_config_on_stop=True), runner, Deadline(0)) is False
    assert runner.calls == []


def test_nothing_reaches_a_shell() -> None:
    source = Path(images.__file__).read_text()
    assert "shell=True" not in source and "os.system" not in source and "subprocess" not in source
