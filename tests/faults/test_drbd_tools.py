"""DRBD tools missing, hanging, printing garbage or exiting with errors.

The agent runs in-process against a scripted libvirt, with the fake
drbdsetup/drbdadm of tests/fakes/drbd (or none at all) on PATH. start and
migrate_to must refuse with a reason, within the operation timeout, and leave
the VM where it was: not started, or still running on the source.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest

from tests.unit.conftest import AgentRun
from tests.unit.fake_libvirt import FakeLibvirt

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes" / "drbd"
FIXTURES = ROOT / "tests" / "fixtures" / "drbd"
TIMEOUT_MS = 8000
TIMEOUT_S = TIMEOUT_MS / 1000

DRBD_DOMAIN = """<domain type='qemu'><name>vm1</name><memory unit='MiB'>128</memory><devices>
<disk type='block' device='disk'><source dev='/dev/drbd/by-res/beijing/0'/><target dev='vda'/></disk>
</devices></domain>"""

#: fault -> environment for the fakes ("PATH" without the fakes: the tools are missing)
FAULTS: Dict[str, Dict[str, str]] = {
    "missing": {"PATH": "/nonexistent-livemig-bin"},
    "hanging": {"FAKE_DRBD_HANG": "all"},
    "garbage": {"FAKE_DRBDSETUP_STATUS": "{garbage}"},
    "truncated-json": {"FAKE_DRBDSETUP_STATUS": "{truncated}"},
    "exit-10": {"FAKE_DRBDSETUP_EXIT": "10"},
    "exit-20-no-output": {"FAKE_DRBDSETUP_STATUS": ""},
}

AgentFn = Callable[..., AgentRun]


@pytest.fixture
def drbd_fault(monkeypatch: pytest.MonkeyPatch, config_file: Path, tmp_path: Path) -> Callable[[str], None]:
    config_file.write_text(DRBD_DOMAIN)
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"\x00\xff{{{ not json ]]]\n" * 100)
    truncated = tmp_path / "truncated.json"
    truncated.write_text((FIXTURES / "drbd9-status-json-derived-dual-primary.txt").read_text()[:200])
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{FAKES / 'pacemaker'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(FIXTURES / "drbd9-proc-synthetic-version-only.txt"))
    monkeypatch.setenv("FAKE_DRBD_FIXTURES", str(FIXTURES))
    monkeypatch.setenv("CIB_file", str(FIXTURES / "cib-synthetic-empty.xml"))
    monkeypatch.setenv("FAKE_DRBDSETUP_SHOW", "drbd9-show-json-derived-beijing-two-primaries.txt")
    monkeypatch.setenv("FAKE_DRBDSETUP_STATUS", "drbd9-status-json-derived-dual-primary.txt")

    def inject(fault: str) -> None:
        for key, value in FAULTS[fault].items():
            monkeypatch.setenv(key, value.replace("{garbage}", str(garbage)).replace("{truncated}", str(truncated)))

    return inject


def _timed(agent: AgentFn, action: str, **params: str) -> Tuple[AgentRun, float]:
    started = time.monotonic()
    res = agent(action, timeout_ms=TIMEOUT_MS, **params)
    return res, time.monotonic() - started


@pytest.mark.parametrize("fault", list(FAULTS))
def test_start_refuses_in_time(agent: AgentFn, fake_libvirt: FakeLibvirt, drbd_fault: Callable[[str], None],
                               fault: str) -> None:
    drbd_fault(fault)
    res, elapsed = _timed(agent, "start")
    print(f"FAULT drbd-{fault} start -> {res.code} in {elapsed:.2f}s: {res.reason}")
    assert res.code == 1, res.stderr[-600:]
    assert res.reason and "DRBD" in res.reason, res.reason
    assert elapsed < TIMEOUT_S
    assert "vm1" not in fake_libvirt.domains, "started although DRBD's state could not be read"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_migrate_to_refuses_in_time_and_vm_stays(agent: AgentFn, fake_libvirt: FakeLibvirt,
                                                 drbd_fault: Callable[[str], None], fault: str) -> None:
    fake_libvirt.add("vm1", xml=DRBD_DOMAIN)  # the running domain, as started from its config
    drbd_fault(fault)
    res, elapsed = _timed(agent, "migrate_to", OCF_RESKEY_CRM_meta_migrate_target="salt-node3")
    print(f"FAULT drbd-{fault} migrate_to -> {res.code} in {elapsed:.2f}s: {res.reason}")
    assert res.code == 1, res.stderr[-600:]
    assert res.reason and res.reason.startswith("DRBD guard refused migration to salt-node3"), res.reason
    assert elapsed < TIMEOUT_S
    assert fake_libvirt.domains["vm1"].state_ == (1, 1), "the VM must keep running on the source"
    assert "vm1" not in fake_libvirt.hosts.get("salt-node3", {})
    assert not [c for c in fake_libvirt.calls if c[0] in ("shutdown", "destroy", "save")]


@pytest.mark.parametrize("fault", ["missing", "hanging", "garbage"])
def test_stop_and_monitor_do_not_need_drbd(agent: AgentFn, fake_libvirt: FakeLibvirt,
                                           drbd_fault: Callable[[str], None], fault: str) -> None:
    """A level-0 monitor and stop never read DRBD: broken tools cannot fail them."""
    fake_libvirt.add("vm1")
    drbd_fault(fault)
    res, elapsed = _timed(agent, "monitor", interval_ms="10000")
    assert res.code == 0 and elapsed < TIMEOUT_S, res.stderr[-400:]
    res, elapsed = _timed(agent, "stop")
    assert res.code == 0 and elapsed < TIMEOUT_S, res.stderr[-400:]
