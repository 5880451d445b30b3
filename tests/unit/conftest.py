from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from tests.support.scripted import ScriptedRunner
from tests.unit.fake_libvirt import FakeLibvirt

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <devices>
    <disk type='file' device='disk'><source file='/nonexistent/livemig-test/{name}.img'/><target dev='vda'/></disk>
    <interface type='network'><source network='default'/></interface>
  </devices>
</domain>
"""


@pytest.fixture(autouse=True)
def no_host_drbd(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Unit tests never read this host's /proc/drbd: a test that wants DRBD loaded sets LIVEMIG_PROC_DRBD."""
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(tmp_path_factory.getbasetemp() / "no-drbd-on-this-host"))


@pytest.fixture
def fake_libvirt(monkeypatch: pytest.MonkeyPatch) -> FakeLibvirt:
    world = FakeLibvirt()
    monkeypatch.setattr("livemig.virt.connection.quiet_libvirt", lambda: world)
    yield world
    world.released.set()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> ScriptedRunner:
    fake = ScriptedRunner([])  # answers in order; unscripted calls succeed
    monkeypatch.setattr("livemig.agents.virtualdomain.agent.CommandRunner", lambda: fake)
    return fake


@dataclass
class AgentRun:
    code: int
    stdout: str
    stderr: str

    @property
    def reason(self) -> Optional[str]:
        for line in self.stderr.splitlines():
            if line.startswith("ocf-exit-reason:"):
                return line[len("ocf-exit-reason:"):]
        return None


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "vm1.xml"
    path.write_text(DOMAIN_XML.format(name="vm1"))
    return path


@pytest.fixture
def agent(tmp_path: Path, config_file: Path):
    from livemig.agents.virtualdomain import VirtualDomain

    def run(action: str, timeout_ms: Optional[int] = 20000, interval_ms: Optional[int] = None,
            **params: str) -> AgentRun:
        env = {"HA_RSCTMP": str(tmp_path / "rsctmp"), "OCF_RESOURCE_INSTANCE": "vm1",
               "OCF_RESKEY_config": str(config_file), "OCF_RESKEY_hypervisor": "qemu:///system"}
        if timeout_ms is not None:
            env["OCF_RESKEY_CRM_meta_timeout"] = str(timeout_ms)
        if interval_ms is not None:
            env["OCF_RESKEY_CRM_meta_interval"] = str(interval_ms)
        for key, value in params.items():
            if key.isupper() or key.startswith("OCF_"):
                env[key] = value  # a raw environment variable, e.g. OCF_CHECK_LEVEL
                continue
            if value is None:
                env.pop(f"OCF_RESKEY_{key}", None)
            else:
                env[f"OCF_RESKEY_{key}"] = value
        out, err = io.StringIO(), io.StringIO()
        code = VirtualDomain.main(["VirtualDomain", action], env, stdout=out, stderr=err)
        return AgentRun(code, out.getvalue(), err.getvalue())

    return run
