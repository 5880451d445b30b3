"""The one NODE=HOST parser (livemig.names), as the agent and both livemig commands use it."""

from __future__ import annotations

import io
from typing import List

import pytest

from livemig.names import PeerNameError, parse_peer_name, parse_peer_names, split_peer_names


def test_node_host_pairs() -> None:
    assert parse_peer_name("node1=drbd-a") == ("node1", "drbd-a")
    assert parse_peer_name(" node1 = drbd-a ") == ("node1", "drbd-a")  # blanks around a name: an option's quoting
    assert parse_peer_names(["a=x", "b=y", "a=z"]) == {"a": "z", "b": "y"}
    assert split_peer_names("a=x, b=y") == {"a": "x", "b": "y"} and split_peer_names("") == {}


@pytest.mark.parametrize("item", ["nonsense", "=host", "node=", "node1=--force", "-n=host", "node=$(reboot)",
                                  "nöde=host", "node=host name", "node=a=b", "x" * 129 + "=host"])
def test_what_is_not_node_host(item: str) -> None:
    with pytest.raises(PeerNameError) as refused:
        parse_peer_name(item)
    assert refused.value.item == item


def test_agent_keeps_its_message() -> None:
    from livemig.agents.virtualdomain.drbd import parse_peer_names as agent_parse
    from livemig.ocf.errors import ConfigurationError

    assert agent_parse("node1=h1,node2=h2") == {"node1": "h1", "node2": "h2"}
    with pytest.raises(ConfigurationError, match=r"drbd_peer_names: 'node1=--force' is not NODE=DRBD_HOST"):
        agent_parse("node1=--force")


@pytest.mark.parametrize("command", [
    ["guard", "--peer", "b", "--resource", "r0"],
    ["check", "vm1", "--skip-runtime", "--skip-libvirt", "--peer", "b"],
])
@pytest.mark.parametrize("item", ["node2=--force", "node2=a b", "nöde2=h"])
def test_both_commands_refuse_what_the_agent_refuses(command: List[str], item: str) -> None:
    """Before, livemig guard and check took any text around '=' (only the agent's parser validated)."""
    from livemig.cli.main import main
    from tests.unit.drbd.scripted import ScriptedRunner

    out, err = io.StringIO(), io.StringIO()
    code = main(command + ["--peer-name", item], runner=ScriptedRunner(), stdout=out, stderr=err)
    assert code == 2, (out.getvalue(), err.getvalue())
    assert f"--peer-name wants NODE=HOST, got {item!r}" in err.getvalue()
