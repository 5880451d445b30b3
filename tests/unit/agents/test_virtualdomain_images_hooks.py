"""The hooks that wire agents/virtualdomain/images.py into ocf:livemig:VirtualDomain's actions.

Through the agent's main() with the fake libvirt: start prepares the overlay before it creates
the domain (and only then), validate-all checks the combinations, tools and files, stop runs
csync2 after save_config_on_stop's save.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import pytest

from livemig.run import CommandResult
from tests.support.scripted import ScriptedRunner
from tests.unit.fake_libvirt import FakeLibvirt

RAW_INFO = json.dumps({"format": "raw", "virtual-size": 1048576})


class Runner(ScriptedRunner):
    """Scripted by the first words of argv; records how many libvirt calls had happened at each command."""

    def __init__(self, world: FakeLibvirt, answers: Mapping[str, object], missing: Sequence[str] = ()) -> None:
        super().__init__(dict(answers))  # type: ignore[arg-type]
        self.world = world
        self.missing = set(missing)
        self.libvirt_calls_before: List[List[object]] = []

    def which(self, program: str) -> Optional[str]:
        return None if program in self.missing else f"/usr/bin/{program}"

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        self.libvirt_calls_before.append(list(self.world.calls))
        return super().run(argv, timeout, stdin, env)


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    path = tmp_path / "base.raw"
    path.write_bytes(b"\0" * 4096)
    return path


def use(monkeypatch: pytest.MonkeyPatch, runner: Runner) -> Runner:
    monkeypatch.setattr("livemig.agents.virtualdomain.agent.CommandRunner", lambda: runner)
    return runner


def overlay_config(config_file: Path) -> Path:
    overlay = config_file.with_suffix(".qcow2")
    config_file.write_text(f"""<domain type='qemu'><name>vm1</name><memory unit='MiB'>128</memory><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{overlay}'/>
  <target dev='vda'/></disk></devices></domain>""")
    return overlay


def test_start_creates_the_overlay_before_the_domain(agent, fake_libvirt: FakeLibvirt, monkeypatch: pytest.MonkeyPatch,
                                                     config_file: Path, backing: Path) -> None:
    overlay = overlay_config(config_file)
    runner = use(monkeypatch, Runner(fake_libvirt, {"qemu-img info": (0, RAW_INFO), "qemu-img create": (0, "")}))
    res = agent("start", backingfile=str(backing), stateless="true")
    assert res.code == 0, res.stderr
    assert runner.calls == [["qemu-img", "info", "--output=json", str(backing)],
                            ["qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", str(backing), str(overlay)]]
    assert all(("create", "vm1") not in before for before in runner.libvirt_calls_before)
    assert ("create", "vm1") in fake_libvirt.calls


def test_start_of_a_running_domain_leaves_its_overlay(agent, fake_libvirt: FakeLibvirt,
                                                      monkeypatch: pytest.MonkeyPatch, config_file: Path,
                                                      backing: Path) -> None:
    overlay_config(config_file)
    fake_libvirt.add("vm1")
    runner = use(monkeypatch, Runner(fake_libvirt, {}))
    assert agent("start", backingfile=str(backing), stateless="true").code == 0
    assert runner.calls == []  # recreating the disk under a running guest would destroy it


def test_start_restoring_a_saved_state_leaves_the_overlay(agent, fake_libvirt: FakeLibvirt,
                                                          monkeypatch: pytest.MonkeyPatch, config_file: Path,
                                                          tmp_path: Path, backing: Path) -> None:
    overlay_config(config_file)
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "vm1.state").write_text("<domain><name>vm1</name></domain>")
    runner = use(monkeypatch, Runner(fake_libvirt, {}))
    res = agent("start", backingfile=str(backing), stateless="true", snapshot=str(snap))
    assert res.code == 0, res.stderr
    assert ("restore", "vm1", str(snap / "vm1.state")) in fake_libvirt.calls
    assert runner.calls == []  # the saved RAM state belongs to the disk as it is


def test_failed_overlay_fails_the_start_before_the_domain(agent, fake_libvirt: FakeLibvirt,
                                                          monkeypatch: pytest.MonkeyPatch, config_file: Path,
                                                          backing: Path) -> None:
    overlay_config(config_file)
    use(monkeypatch, Runner(fake_libvirt, {"qemu-img info": (0, RAW_INFO),
                                           "qemu-img create": CommandResult([], 1, "", "qemu-img: disk full\n")}))
    res = agent("start", backingfile=str(backing))
    assert res.code == 1
    assert res.reason and res.reason.startswith("qemu-img could not create the overlay")
    assert ("create", "vm1") not in fake_libvirt.calls


@pytest.mark.parametrize(("params", "missing", "code", "reason"), [
    ({"stateless": "true"}, [], 6, "stateless=true needs backingfile"),
    ({"backingfile": "/nonexistent/base.raw"}, [], 5, "backingfile /nonexistent/base.raw does not exist"),
    ({"backingfile": "{backing}"}, ["qemu-img"], 5, "qemu-img is not installed"),
    ({"sync_config_on_stop": "true"}, ["csync2"], 5, "needs csync2"),
    ({"backingfile": "{backing}", "copyindirs": "/nonexistent/inject"}, [], 5, "copyindirs: /nonexistent/inject"),
])
def test_validate_all_checks(agent, fake_libvirt: FakeLibvirt, monkeypatch: pytest.MonkeyPatch, backing: Path,
                             params: Mapping[str, str], missing: List[str], code: int, reason: str) -> None:
    use(monkeypatch, Runner(fake_libvirt, {}, missing))
    res = agent("validate-all", **{k: v.replace("{backing}", str(backing)) for k, v in params.items()})
    assert res.code == code, res.stderr
    assert res.reason and reason in res.reason


def test_validate_all_accepts_a_heartbeat_stateless_resource(agent, fake_libvirt: FakeLibvirt,
                                                             monkeypatch: pytest.MonkeyPatch, config_file: Path,
                                                             tmp_path: Path, backing: Path) -> None:
    overlay_config(config_file)
    (tmp_path / "inject" / "etc").mkdir(parents=True)
    runner = use(monkeypatch, Runner(fake_libvirt, {}))
    res = agent("validate-all", backingfile=str(backing), stateless="1", copyindirs=f"{tmp_path}/inject/*",
                sync_config_on_stop="yes")
    assert res.code == 0, res.stderr
    assert "WARNING" not in res.stderr
    assert runner.calls == []


def test_validate_all_warns_when_no_disk_is_the_overlay(agent, fake_libvirt: FakeLibvirt,
                                                        monkeypatch: pytest.MonkeyPatch, backing: Path) -> None:
    use(monkeypatch, Runner(fake_libvirt, {}))
    res = agent("validate-all", backingfile=str(backing))
    assert res.code == 0, res.stderr
    assert "no disk of" in res.stderr and "is the overlay" in res.stderr


def test_stop_syncs_the_saved_config_with_csync2(agent, fake_libvirt: FakeLibvirt, monkeypatch: pytest.MonkeyPatch,
                                                 config_file: Path) -> None:
    new_xml = "<domain type='qemu'><name>vm1</name><memory>262144</memory></domain>"
    fake_libvirt.add("vm1", xml=new_xml)
    runner = use(monkeypatch, Runner(fake_libvirt, {"csync2": (0, "")}))
    res = agent("stop", sync_config_on_stop="true")  # save_config_on_stop is implied
    assert res.code == 0, res.stderr
    assert config_file.read_text() == new_xml
    assert runner.calls == [["csync2", "-x", str(config_file)]]


def test_stop_does_not_fail_on_csync2(agent, fake_libvirt: FakeLibvirt, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_libvirt.add("vm1", xml="<domain type='qemu'><name>vm1</name><memory>262144</memory></domain>")
    use(monkeypatch, Runner(fake_libvirt, {"csync2": CommandResult([], 1, "", "csync2: node2 unreachable\n")}))
    res = agent("stop", sync_config_on_stop="true")
    assert res.code == 0, res.stderr
    assert "the peers keep their copy" in res.stderr
    assert "vm1" not in fake_libvirt.domains  # and it was stopped


def test_stop_of_a_stopped_domain_runs_no_csync2(agent, fake_libvirt: FakeLibvirt,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    runner = use(monkeypatch, Runner(fake_libvirt, {"csync2": (0, "")}))
    assert agent("stop", sync_config_on_stop="true").code == 0
    assert runner.calls == []  # nothing saved, nothing to sync (as heartbeat)
