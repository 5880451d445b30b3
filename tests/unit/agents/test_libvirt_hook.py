"""livemig's libvirt QEMU hook against the DRBD simulator: what it promotes, refuses and demotes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import List

import pytest

from livemig.agents import libvirt_hook
from livemig.agents.libvirt_hook import Hook, HookRefusal
from livemig.ocf.deadline import Deadline
from tests.support.drbdworld import DOMAIN_XML, DrbdWorld


def role(world: DrbdWorld, node: str) -> str:
    return json.loads(world.nodes[node].tool(["drbdsetup", "status", "--json"]).stdout)[0]["role"]


def hook(world: DrbdWorld, node: str, tmp: Path) -> Hook:
    return Hook(world.nodes[node], Deadline(15), str(tmp / f"hook-{node}"))


def promoted_source(tmp: Path, allow: bool) -> DrbdWorld:
    world = DrbdWorld(tmp, ["alpha", "beta"], two_primaries_in_config=allow)
    assert world.nodes["alpha"].tool(["drbdsetup", "primary", "r0"]).ok
    return world


@pytest.mark.parametrize("args", [[], ["vm1"], ["vm1", "prepare", "begin", "-"], ["vm1", "start", "begin", "-"],
                                  ["vm1", "migrate", "end", "-"], ["vm1", "release", "begin", "-"]])
def test_other_operations_return_at_once_without_reading_stdin(args: List[str]) -> None:
    class Untouchable(io.StringIO):
        def read(self, *_: object) -> str:
            raise AssertionError("stdin read")

    assert libvirt_hook.main(args, stdin=Untouchable()) == 0


def test_incoming_promotes_where_the_window_is_open_and_release_demotes(tmp_path: Path) -> None:
    world = promoted_source(tmp_path, allow=True)
    with world.as_node("beta"):
        hook(world, "beta", tmp_path).incoming("vm1", DOMAIN_XML)
    assert role(world, "beta") == "Primary"
    marker = json.loads((tmp_path / "hook-beta" / "r0.json").read_text())
    assert marker == {"domain": "vm1"}
    with world.as_node("beta"):
        hook(world, "beta", tmp_path).released("another-vm")
    assert role(world, "beta") == "Primary"  # not the domain it promoted for
    with world.as_node("beta"):
        hook(world, "beta", tmp_path).released("vm1")
    assert role(world, "beta") == "Secondary"
    assert not (tmp_path / "hook-beta" / "r0.json").exists()


def test_incoming_refuses_when_the_connection_does_not_allow_two_primaries(tmp_path: Path) -> None:
    world = promoted_source(tmp_path, allow=False)
    with world.as_node("beta"), pytest.raises(HookRefusal) as refused:
        hook(world, "beta", tmp_path).incoming("vm1", DOMAIN_XML)
    assert "alpha is Primary and the connection does not allow two primaries" in str(refused.value)
    assert role(world, "beta") == "Secondary"
    assert not (tmp_path / "hook-beta").exists() or not list((tmp_path / "hook-beta").iterdir())


def test_incoming_refuses_a_target_whose_data_is_not_uptodate(tmp_path: Path) -> None:
    world = promoted_source(tmp_path, allow=True)
    assert world.sim(["disk", "r0", "beta", "Outdated"]).ok
    with world.as_node("beta"), pytest.raises(HookRefusal) as refused:
        hook(world, "beta", tmp_path).incoming("vm1", DOMAIN_XML)
    assert "Outdated on this node, not UpToDate" in str(refused.value)
    assert role(world, "beta") == "Secondary"


def test_incoming_leaves_an_already_primary_target_and_a_lone_node_alone(tmp_path: Path) -> None:
    world = promoted_source(tmp_path, allow=True)
    assert world.nodes["beta"].tool(["drbdsetup", "primary", "r0"]).ok  # the always mode
    with world.as_node("beta"):
        hook(world, "beta", tmp_path).incoming("vm1", DOMAIN_XML)
    assert not (tmp_path / "hook-beta").exists()
    alone = DrbdWorld(tmp_path / "alone", ["alpha", "beta"])
    with alone.as_node("beta"):
        hook(alone, "beta", tmp_path / "alone").incoming("vm1", DOMAIN_XML)
    assert role(alone, "beta") == "Secondary"  # no Primary peer: nothing to open a window for


def test_main_reports_a_refusal_on_stderr_with_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    world = promoted_source(tmp_path, allow=False)
    monkeypatch.setenv("LIVEMIG_HOOK_DIR", str(tmp_path / "hook"))
    monkeypatch.setattr(libvirt_hook, "Hook",
                        lambda runner, deadline, where: Hook(world.nodes["beta"], deadline, where))
    with world.as_node("beta"):
        code = libvirt_hook.main(["vm1", "migrate", "begin", "-"], stdin=io.StringIO(DOMAIN_XML))
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("livemig: r0: alpha is Primary") and err.count("\n") == 1


def test_incoming_refuses_a_target_that_would_lose_quorum_without_the_source(tmp_path: Path) -> None:
    world = DrbdWorld(tmp_path, ["alpha", "beta", "gamma"], two_primaries_in_config=True)
    assert world.sim(["config", "r0", "--quorum=majority"]).ok
    for node in world.names:
        assert world.nodes[node].tool(["drbdadm", "adjust", "r0"]).ok
    assert world.nodes["alpha"].tool(["drbdsetup", "primary", "r0"]).ok
    assert world.sim(["link", "r0", "beta", "gamma", "down"]).ok  # beta's only other vote
    with world.as_node("beta"), pytest.raises(HookRefusal) as refused:
        hook(world, "beta", tmp_path).incoming("vm1", DOMAIN_XML)
    assert str(refused.value).startswith("r0: quorum on this node without alpha: ")
    assert role(world, "beta") == "Secondary"
    assert world.sim(["link", "r0", "beta", "gamma", "up"]).ok
    with world.as_node("beta"):
        hook(world, "beta", tmp_path).incoming("vm1", DOMAIN_XML)
    assert role(world, "beta") == "Primary"
