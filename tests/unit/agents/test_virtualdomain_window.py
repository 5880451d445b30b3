"""drbd_two_primaries=migration through the agent's actions, DRBD being the lab's simulator on PATH.

Two nodes, alpha (this process's agent) and beta; the fake libvirt moves the domain to beta's
world and runs beta's libvirt hook where libvirt would ("migrate begin" before the incoming
QEMU, "release end" after a failed one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from livemig.agents.libvirt_hook import Hook, HookRefusal
from livemig.ocf.deadline import Deadline
from tests.support.drbdworld import DOMAIN_XML, DrbdWorld
from tests.unit.fake_libvirt import FakeLibvirt, libvirtError

SIM = Path(__file__).resolve().parents[2] / "lab" / "drbdsim.py"
WINDOW = {"drbd_two_primaries": "migration", "drbd_allow_two_node_quorum": "true",
          "migration_transport": "tcp"}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_file: Path) -> DrbdWorld:
    config_file.write_text(DOMAIN_XML)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("drbdsetup", "drbdadm"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec {sys.executable} {SIM} {tool} "$@"\n')
        script.chmod(0o755)
    fakes = Path(__file__).resolve().parents[2] / "fakes" / "drbd" / "pacemaker"
    monkeypatch.setenv("PATH", f"{bin_dir}:{fakes}:/usr/bin:/bin")
    monkeypatch.setenv("CIB_file", str(Path(__file__).resolve().parents[2] / "fixtures" / "drbd"
                                       / "cib-synthetic-empty.xml"))
    w = DrbdWorld(tmp_path / "drbd", ["alpha", "beta"])
    with w.as_node("alpha"):
        yield w


def state(world: DrbdWorld) -> Dict[str, Any]:
    roles = {}
    allowed = set()
    for name, node in world.nodes.items():
        roles[name] = json.loads(node.tool(["drbdsetup", "status", "--json"]).stdout)[0]["role"]
        for conn in json.loads(node.tool(["drbdsetup", "show", "--json"]).stdout)[0]["connections"]:
            if conn["net"].get("allow-two-primaries") is True:
                allowed.add(name)
    return {"roles": roles, "allowed": sorted(allowed)}


def beta_hook(world: DrbdWorld, tmp: Path, operation: str) -> None:
    with world.as_node("beta"):
        hook = Hook(world.nodes["beta"], Deadline(15), str(tmp / "hook-beta"))
        if operation == "migrate":
            try:
                hook.incoming("vm1", DOMAIN_XML)
            except HookRefusal as exc:
                raise libvirtError(f"Hook script execution failed: {exc}", 1) from None
        else:
            hook.released("vm1")


def two_nodes(fake_libvirt: FakeLibvirt, world: DrbdWorld, tmp: Path) -> FakeLibvirt:
    beta = FakeLibvirt()
    fake_libvirt.peers["beta"] = beta
    fake_libvirt.migration["prepare"] = lambda: beta_hook(world, tmp, "migrate")
    fake_libvirt.migration["release"] = lambda: beta_hook(world, tmp, "release")
    return beta


def test_start_makes_this_node_primary_and_stop_secondary(agent, fake_libvirt: FakeLibvirt, world) -> None:
    assert agent("start", **WINDOW).code == 0
    assert state(world)["roles"] == {"alpha": "Primary", "beta": "Secondary"}
    assert agent("stop", **WINDOW).code == 0
    assert state(world)["roles"] == {"alpha": "Secondary", "beta": "Secondary"}
    assert "vm1" not in fake_libvirt.domains


def test_start_refused_while_the_peer_is_primary(agent, fake_libvirt: FakeLibvirt, world) -> None:
    assert world.nodes["beta"].tool(["drbdsetup", "primary", "r0"]).ok
    res = agent("start", **WINDOW)
    assert res.code == 1
    assert res.reason.startswith("r0 is Primary on beta: the VM may be running there"), res.reason
    assert "vm1" not in fake_libvirt.domains and state(world)["roles"]["alpha"] == "Secondary"


def test_migration_opens_the_window_for_the_move_only(agent, fake_libvirt: FakeLibvirt, world,
                                                      tmp_path: Path) -> None:
    beta = two_nodes(fake_libvirt, world, tmp_path)
    assert agent("start", **WINDOW).code == 0
    seen = []

    def prepare() -> None:
        beta_hook(world, tmp_path, "migrate")
        seen.append(state(world))  # the incoming QEMU starts here

    fake_libvirt.migration["prepare"] = prepare
    res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="beta", **WINDOW)
    assert res.code == 0, res.stderr
    assert "vm1" in beta.domains
    assert seen and seen[0] == {"roles": {"alpha": "Primary", "beta": "Primary"}, "allowed": ["alpha", "beta"]}
    assert state(world) == {"roles": {"alpha": "Secondary", "beta": "Primary"}, "allowed": []}
    assert not list((tmp_path / "rsctmp").glob("*-window.json"))


def test_failed_migration_closes_the_window_and_keeps_one_primary(agent, fake_libvirt: FakeLibvirt, world,
                                                                  tmp_path: Path) -> None:
    two_nodes(fake_libvirt, world, tmp_path)
    assert agent("start", **WINDOW).code == 0
    fake_libvirt.migration["error"] = "operation failed: migration failed"
    res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="beta", **WINDOW)
    assert res.code == 1
    assert "vm1" in fake_libvirt.domains
    assert state(world) == {"roles": {"alpha": "Primary", "beta": "Secondary"}, "allowed": []}


def test_a_refusing_hook_fails_the_migration_before_anything_moved(agent, fake_libvirt: FakeLibvirt, world,
                                                                   tmp_path: Path) -> None:
    two_nodes(fake_libvirt, world, tmp_path)
    assert agent("start", **WINDOW).code == 0
    assert world.sim(["disk", "r0", "beta", "Outdated"]).ok
    res = agent("migrate_to", OCF_RESKEY_CRM_meta_migrate_target="beta", **WINDOW)
    assert res.code == 1
    assert "vm1" in fake_libvirt.domains
    assert state(world) == {"roles": {"alpha": "Primary", "beta": "Secondary"}, "allowed": []}


def test_a_leftover_allowance_is_cleared_by_the_next_monitor(agent, fake_libvirt: FakeLibvirt, world) -> None:
    assert agent("start", **WINDOW).code == 0
    assert world.nodes["alpha"].tool(["drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes"]).ok
    assert state(world)["allowed"] == ["alpha", "beta"]
    assert agent("monitor", interval_ms=10000, OCF_CHECK_LEVEL="10", **WINDOW).code == 0
    assert state(world) == {"roles": {"alpha": "Primary", "beta": "Secondary"}, "allowed": []}


@pytest.mark.parametrize("extra", [{"migrate_options": "--postcopy"}, {"migration_convergence": "postcopy-after"},
                                   {"drbd_guard": "off"}, {"drbd_two_primaries": "sometimes"}])
def test_combinations_the_mode_cannot_work_with(agent, fake_libvirt: FakeLibvirt, world,
                                                extra: Dict[str, str]) -> None:
    res = agent("validate-all", **{**WINDOW, **extra})
    assert res.code == 6, res.stderr


def test_drbd_8_is_refused_as_a_configuration_error(agent, fake_libvirt: FakeLibvirt, world) -> None:
    assert world.sim(["mode", "8.4"]).ok
    res = agent("start", **WINDOW)
    assert res.code == 6 and "needs DRBD 9" in res.reason, res.stderr
