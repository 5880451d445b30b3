"""The DRBD simulator on its own (no lab, no root): formats and DRBD's rules."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livemig.drbd.config import parse_dump_xml
from livemig.drbd.guard import evaluate_guard
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.run import CommandResult, CommandRunner
from tests.lab import drbdsim

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "drbd"  # the repo's copies of the real outputs


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state.json"
    drbdsim.init_store(str(path), "r0", 1, "", [("alpha", "10.0.0.1"), ("beta", "10.0.0.2")],
                       proc_paths={"alpha": str(tmp_path / "proc-alpha"), "beta": str(tmp_path / "proc-beta")},
                       devices=False)
    monkeypatch.setenv("LIVEMIG_DRBDSIM_STORE", str(path))
    return path


def sim(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, node: str, *argv: str
        ) -> Tuple[int, str, str]:
    monkeypatch.setenv("LIVEMIG_LAB_NODE", node)
    rc = drbdsim.main(["drbdsim.py"] + list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def both_up(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    for node in ("alpha", "beta"):
        assert sim(capsys, monkeypatch, node, "drbdadm", "up", "r0")[0] == 0


def test_second_primary_refused_without_allow_two_primaries(store, capsys, monkeypatch) -> None:
    both_up(capsys, monkeypatch)
    # The configuration file says no; adjust on one node puts it in force on the connection (the
    # peer takes it over the connection, P_PROTOCOL_UPDATE).
    assert sim(capsys, monkeypatch, "alpha", "drbdsim", "config", "r0", "--allow-two-primaries=no")[0] == 0
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "adjust", "r0")[0] == 0
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "primary", "r0")[0] == 0
    rc, _, err = sim(capsys, monkeypatch, "beta", "drbdadm", "primary", "r0")
    assert rc == 11
    assert err.splitlines() == [
        "r0: State change failed: (-1) Multiple primaries not allowed by config",
        "Command 'drbdsetup primary r0' terminated with exit code 11",
    ]
    assert sim(capsys, monkeypatch, "beta", "drbdadm", "role", "r0")[1] == "Secondary\n"
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "net-options", "--allow-two-primaries=yes", "r0")[0] == 0
    assert sim(capsys, monkeypatch, "beta", "drbdadm", "primary", "r0")[0] == 0
    # Both Primary: allow-two-primaries can no longer be cleared.
    rc, _, err = sim(capsys, monkeypatch, "beta", "drbdadm", "net-options", "--allow-two-primaries=no", "r0")
    assert rc == 10 and "r0: Failure: (164)" in err


def test_dual_primary_needs_protocol_c(store, capsys, monkeypatch) -> None:
    rc, _, err = sim(capsys, monkeypatch, "alpha", "drbdsim", "config", "r0", "--protocol=A")
    assert rc == 10 and err.startswith("r0: Failure: (139) Protocol C required")
    assert sim(capsys, monkeypatch, "alpha", "drbdsim", "config", "r0", "--protocol=A",
               "--allow-two-primaries=no")[0] == 0
    both_up(capsys, monkeypatch)  # up: every connection starts with the file's protocol A
    rc, _, err = sim(capsys, monkeypatch, "alpha", "drbdadm", "net-options", "--allow-two-primaries=yes", "r0")
    assert rc == 10 and "Protocol C required" in err


def test_disconnected_stays_disconnected_until_connect(store, capsys, monkeypatch) -> None:
    both_up(capsys, monkeypatch)
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "cstate", "r0")[1] == "Connected\n"
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "disconnect", "r0")[0] == 0
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "cstate", "r0")[1] == "StandAlone\n"
    assert sim(capsys, monkeypatch, "beta", "drbdadm", "cstate", "r0")[1] == "Connecting\n"
    assert sim(capsys, monkeypatch, "beta", "drbdadm", "dstate", "r0")[1] == "UpToDate/DUnknown\n"
    # The peer going down and up again does not reconnect a StandAlone node.
    sim(capsys, monkeypatch, "beta", "drbdadm", "down", "r0")
    sim(capsys, monkeypatch, "beta", "drbdadm", "up", "r0")
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "cstate", "r0")[1] == "StandAlone\n"
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "connect", "r0")[0] == 0
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "cstate", "r0")[1] == "Connected\n"


def test_promotion_needs_uptodate_data(store, capsys, monkeypatch) -> None:
    both_up(capsys, monkeypatch)
    for node in ("alpha", "beta"):
        sim(capsys, monkeypatch, "alpha", "drbdsim", "disk", "r0", node, "Inconsistent")
    rc, _, err = sim(capsys, monkeypatch, "alpha", "drbdadm", "primary", "r0")
    assert rc == 17 and "r0: State change failed: (-2) Need access to UpToDate data" in err
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "primary", "--force", "r0")[0] == 0


def _keys(obj: object) -> List[str]:
    """Every key path of a JSON document (list items merged), to compare shapes."""
    out: List[str] = []

    def walk(o: object, prefix: str) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                out.append(prefix + k)
                walk(v, prefix + k + ".")
        elif isinstance(o, list):
            for v in o:
                walk(v, prefix)
    walk(obj, "")
    return sorted(set(out))


def test_status_json_has_drbd9_shape(store, capsys, monkeypatch) -> None:
    both_up(capsys, monkeypatch)
    sim(capsys, monkeypatch, "alpha", "drbdadm", "primary", "r0")
    rc, out, _ = sim(capsys, monkeypatch, "alpha", "drbdsetup", "status", "r0", "--json")
    assert rc == 0
    doc = json.loads(out)
    real = json.loads((FIXTURES / "drbd9-status-json-salt-beijing-primary.txt").read_text())
    assert _keys(doc) == _keys(real)
    assert doc[0]["role"] == "Primary"
    assert doc[0]["connections"][0]["peer-role"] == "Secondary"
    assert doc[0]["connections"][0]["peer_devices"][0]["replication-state"] == "Established"


def test_show_json_has_drbd9_shape(store, capsys, monkeypatch) -> None:
    both_up(capsys, monkeypatch)
    rc, out, _ = sim(capsys, monkeypatch, "beta", "drbdsetup", "show", "r0", "--json")
    doc = json.loads(out)
    real = json.loads((FIXTURES / "drbd9-show-json-drbdutils-one-volume.txt").read_text())
    # Option blocks (options, disk, net) list only non-default settings: compare the structure.
    def structure(keys: List[str]) -> set:
        return {k for k in keys if not re.search(r"(^|\.)(options|disk|net)\.", k)}
    assert rc == 0 and structure(_keys(real)) <= structure(_keys(doc))
    assert doc[0]["connections"][0]["net"]["allow-two-primaries"] is True


def test_resync_seen_by_both_sides(store, capsys, monkeypatch) -> None:
    both_up(capsys, monkeypatch)
    sim(capsys, monkeypatch, "alpha", "drbdsim", "resync", "r0", "--target=beta", "--done=40")
    doc = json.loads(sim(capsys, monkeypatch, "alpha", "drbdsetup", "status", "--json")[1])
    pd = doc[0]["connections"][0]["peer_devices"][0]
    got = (pd["replication-state"], pd["peer-disk-state"], pd["percent-in-sync"])
    assert got == ("SyncSource", "Inconsistent", 40.0)
    assert "replication:SyncTarget" in sim(capsys, monkeypatch, "beta", "drbdadm", "status", "r0")[1]
    sim(capsys, monkeypatch, "alpha", "drbdsim", "resync-done", "r0")
    assert sim(capsys, monkeypatch, "beta", "drbdadm", "dstate", "r0")[1] == "UpToDate/UpToDate\n"


def test_drbd84_mode_role_and_proc(store, tmp_path, capsys, monkeypatch) -> None:
    sim(capsys, monkeypatch, "alpha", "drbdsim", "mode", "8.4")
    both_up(capsys, monkeypatch)
    sim(capsys, monkeypatch, "alpha", "drbdadm", "primary", "r0")
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "role", "r0")[1] == "Primary/Secondary\n"
    assert sim(capsys, monkeypatch, "beta", "drbdadm", "role", "r0")[1] == "Secondary/Primary\n"
    text = (tmp_path / "proc-alpha").read_text()
    real = (FIXTURES / "drbd84-proc-pacemaker-connected-primary-8.4.11.txt").read_text()
    line_re = re.compile(r"^ *\d+: cs:(\w+) ro:(\w+)/(\w+) ds:(\w+)/(\w+) (\w| ) [\w-]{6}$", re.M)
    assert line_re.findall(real) and line_re.findall(text) == [
        ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C")]
    assert text.startswith("version: 8.4")
    sim(capsys, monkeypatch, "beta", "drbdadm", "disconnect", "r0")
    text = (tmp_path / "proc-alpha").read_text()
    assert "cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C r-----" in text
    assert sim(capsys, monkeypatch, "alpha", "drbdsetup", "status", "--json")[0] == 20


def test_drbd84_mode_configuration_commands(store, capsys, monkeypatch) -> None:
    sim(capsys, monkeypatch, "alpha", "drbdsim", "mode", "8.4")
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "sh-minor", "r0") == (0, "1\n", "")
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "sh-resource", "minor-1") == (0, "r0\n", "")
    not_defined = "'{}' not defined in your config (for this host).\n"  # drbdadm's message, exit 1 (E_USAGE)
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "sh-minor", "nosuch") == (1, "", not_defined.format("nosuch"))
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "sh-resource", "minor-9") == (
        1, "", not_defined.format("minor-9"))
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "up", "nosuch")[0] == 1
    rc, out, _ = sim(capsys, monkeypatch, "alpha", "drbdadm", "-v", "dump-xml", "r0")
    (config,) = parse_dump_xml(out)
    assert rc == 0 and out.startswith('<resource name="r0" conf-file-line=')
    assert [h.name for h in config.hosts] == ["alpha", "beta"]
    assert config.minors("alpha") == {1: 0} and config.minors("beta") == {1: 0}
    assert (config.protocol(), config.allow_two_primaries()) == ("C", True)
    rc, out, _ = sim(capsys, monkeypatch, "beta", "drbdadm", "dump-xml")  # all: wrapped in <config>
    assert rc == 0 and out.startswith('<config file="/etc/drbd.conf">') and out.endswith("</config>\n")
    assert [c.name for c in parse_dump_xml(out)] == ["r0"]
    sim(capsys, monkeypatch, "alpha", "drbdsim", "mode", "9")
    assert sim(capsys, monkeypatch, "alpha", "drbdadm", "dump-xml", "r0")[0] == 20  # simulated in 8.4 mode only


class SimRunner(CommandRunner):
    """Runs drbdadm/drbdsetup argv in the simulator, in this process."""

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = drbdsim.main(["drbdsim.py"] + list(argv))
        return CommandResult(list(argv), code, out.getvalue(), err.getvalue())


def test_guard_on_drbd84_reads_the_simulators_configuration(store, tmp_path, capsys, monkeypatch) -> None:
    sim(capsys, monkeypatch, "alpha", "drbdsim", "mode", "8.4")
    both_up(capsys, monkeypatch)
    for node in ("alpha", "beta"):
        assert sim(capsys, monkeypatch, node, "drbdadm", "primary", "r0")[0] == 0
    monkeypatch.setenv("LIVEMIG_LAB_NODE", "alpha")

    def guard(target: str) -> List[str]:
        runner, deadline = SimRunner(), Deadline(30)
        reader = DrbdReader(runner, deadline, proc_path=str(tmp_path / "proc-alpha"),
                            by_res_dir=str(tmp_path / "no-by-res"), node_name="alpha")
        verdict = evaluate_guard(["r0"], target, runner=runner, deadline=deadline, reader=reader, check_cib=False)
        return ["allowed"] if verdict.allowed else verdict.reasons()

    assert guard("beta") == ["allowed"]
    assert guard("gamma") == ["r0: no connection is named gamma among beta; if one of them is that node, map it: "
                              "drbd_peer_names=gamma=<DRBD host name> (livemig guard --peer-name)"]
    sim(capsys, monkeypatch, "alpha", "drbdadm", "secondary", "r0")
    assert "r0: local role is Secondary (minor 1); needs Primary" in guard("beta")
    sim(capsys, monkeypatch, "alpha", "drbdadm", "down", "r0")
    assert guard("beta") == ["r0: minor 1 is Unconfigured in /proc/drbd; needs every volume of the resource up "
                             "(drbdadm up r0)"]


# --------------------------------------------------------------------------- issue 17: DRBD 9 on N nodes

NODES3 = [("alpha", "10.0.0.1"), ("beta", "10.0.0.2"), ("gamma", "10.0.0.3")]


class World:
    """Three nodes on one store, driven in-process (no capsys: usable inside hypothesis)."""

    def __init__(self, root: Path, diskless: Sequence[str] = (), config: Sequence[str] = (),
                 up: bool = True) -> None:
        self.store = str(root / "state.json")
        drbdsim.init_store(self.store, "r0", 1, "", NODES3, devices=False, diskless=diskless)
        if config:
            assert self.run("alpha", "drbdsim", "config", "r0", *config)[0] == 0
        if up:
            for node, _ in NODES3:
                assert self.run(node, "drbdadm", "up", "r0")[0] == 0

    def run(self, node: str, *argv: str) -> Tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        env = {"LIVEMIG_LAB_NODE": node, "LIVEMIG_DRBDSIM_STORE": self.store}
        with mock.patch.dict(os.environ, env), redirect_stdout(out), redirect_stderr(err):
            code = drbdsim.main(["drbdsim.py"] + list(argv))
        return code, out.getvalue(), err.getvalue()

    def status(self, node: str) -> Dict[str, Any]:
        rc, out, _ = self.run(node, "drbdsetup", "status", "r0", "--json")
        assert rc == 0
        doc = json.loads(out)
        return doc[0] if doc else {}

    def show(self, node: str, *flags: str) -> Dict[str, Any]:
        rc, out, _ = self.run(node, "drbdsetup", "show", "r0", "--json", *flags)
        assert rc == 0
        doc = json.loads(out)
        return doc[0] if doc else {}

    def net(self, node: str, peer_id: int) -> Dict[str, Any]:
        (conn,) = [c for c in self.show(node)["connections"] if c["_peer_node_id"] == peer_id]
        return conn["net"]

    def role(self, node: str) -> str:
        return self.status(node).get("role", "down")

    def cstate(self, node: str, peer: str) -> str:
        for conn in self.status(node).get("connections", []):
            if conn["name"] == peer:
                return conn["connection-state"]
        return "StandAlone"

    def quorum(self, node: str) -> bool:
        return self.status(node)["devices"][0]["quorum"]

    def dump(self) -> Dict[str, Any]:
        with open(self.store) as f:
            return json.load(f)

    def records(self, event: Optional[str] = None) -> List[Dict[str, Any]]:
        return [r for r in drbdsim.read_records(self.store) if event is None or r["event"] == event]


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return World(tmp_path, config=["--allow-two-primaries=no"])


def test_three_nodes_diskless_tiebreaker_keeps_quorum(tmp_path: Path) -> None:
    w = World(tmp_path, diskless=["gamma"], config=["--allow-two-primaries=no", "--quorum=majority"])
    assert [w.quorum(n) for n in ("alpha", "beta", "gamma")] == [True, True, True]
    gamma = w.status("gamma")
    assert gamma["devices"][0]["disk-state"] == "Diskless" and gamma["devices"][0]["client"] is True
    seen_from_alpha = {c["name"]: c["peer_devices"][0] for c in w.status("alpha")["connections"]}
    assert seen_from_alpha["gamma"]["peer-client"] is True and seen_from_alpha["beta"]["peer-client"] is False
    assert w.show("alpha")["options"]["quorum"] == "majority"
    assert "  disk:Diskless client:yes" in w.run("gamma", "drbdsetup", "status", "r0")[1].splitlines()
    assert "    replication:Established peer-disk:Diskless peer-client:yes" in w.run(
        "alpha", "drbdsetup", "status", "r0")[1].splitlines()
    # The diskful pair loses its link: two voters, one vote each short, but the diskless
    # tiebreaker is Connected to both: both keep quorum (calc_quorum's tiebreaker).
    assert w.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "down")[0] == 0
    assert (w.quorum("alpha"), w.quorum("beta"), w.quorum("gamma")) == (True, True, True)
    # alpha then loses the tiebreaker too: alone, no quorum; beta keeps it with gamma.
    assert w.run("alpha", "drbdsim", "link", "r0", "alpha", "gamma", "down")[0] == 0
    assert (w.quorum("alpha"), w.quorum("beta"), w.quorum("gamma")) == (False, True, True)
    assert "  disk:UpToDate quorum:no" in w.run("alpha", "drbdsetup", "status", "r0")[1].splitlines()
    assert "  disk:UpToDate" in w.run("beta", "drbdsetup", "status", "r0")[1].splitlines()
    assert w.run("alpha", "drbdsetup", "primary", "r0") == (11, "", "r0: State change failed: (-25) No quorum\n")
    assert w.run("beta", "drbdsetup", "primary", "r0")[0] == 0
    # The tiebreaker only keeps a quorum: back with it alone, alpha is still one vote short and
    # did not hold quorum before, so it has none; with beta back it has.
    assert w.run("alpha", "drbdsim", "link", "r0", "alpha", "gamma", "up")[0] == 0
    assert w.quorum("alpha") is False
    assert w.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "up")[0] == 0
    assert w.quorum("alpha") is True
    # (alpha came up first, alone: no quorum until the others were up)
    assert [r["quorum"] for r in w.records("quorum") if r["node"] == "alpha"] == [False, True, False, True]


def test_tiebreaker_never_gains_a_quorum(tmp_path: Path) -> None:
    w = World(tmp_path, diskless=["gamma"], config=["--quorum=majority"], up=False)
    assert w.run("alpha", "drbdadm", "up", "r0")[0] == 0
    assert w.run("gamma", "drbdadm", "up", "r0")[0] == 0
    # alpha + the tiebreaker, beta never seen: voters 2, one vote; no quorum held before: none now.
    assert (w.quorum("alpha"), w.quorum("gamma")) == (False, False)
    assert w.run("beta", "drbdadm", "up", "r0")[0] == 0
    assert (w.quorum("alpha"), w.quorum("beta"), w.quorum("gamma")) == (True, True, True)


def test_three_diskful_nodes_majority(tmp_path: Path) -> None:
    w = World(tmp_path, config=["--quorum=majority"])
    w.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "down")
    w.run("alpha", "drbdsim", "link", "r0", "alpha", "gamma", "down")
    assert (w.quorum("alpha"), w.quorum("beta"), w.quorum("gamma")) == (False, True, True)
    w.run("alpha", "drbdsim", "crash", "gamma")
    assert w.quorum("beta") is False  # 1 of 3 voters


def test_net_options_per_connection_copied_to_the_peer(world: World) -> None:
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes") == (0, "", "")
    assert world.net("alpha", 1)["allow-two-primaries"] is True
    assert "allow-two-primaries" not in world.net("alpha", 2)  # a default: not shown
    assert world.net("beta", 0)["allow-two-primaries"] is True  # P_PROTOCOL_UPDATE
    assert "allow-two-primaries" not in world.net("gamma", 0)
    # Only the named options change; --set-defaults puts every other one back to its default.
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--protocol=C")[0] == 0
    assert world.net("alpha", 1)["allow-two-primaries"] is True
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--set-defaults", "--protocol=A") == (0, "", "")
    assert world.net("alpha", 1) == {"protocol": "A", "_name": "beta"}
    assert world.net("beta", 0) == {"protocol": "A", "_name": "alpha"}
    # The kernel's order of checks, the whole new conf at once.
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes") == (
        10, "", "r0: Failure: (139) Protocol C required\n")
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes",
                     "--protocol=C")[0] == 0
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "2", "--on-congestion=pull-ahead") == (
        10, "", "r0: Failure: (155) on-congestion policy pull-ahead only with prot A allowed\n")
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "2", "--on-congestion=pull-ahead",
                     "--protocol=A")[0] == 0
    assert world.net("gamma", 0) == {"protocol": "A", "_name": "alpha"}  # on-congestion is not copied
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "7", "--protocol=C")[0] == 10
    changes = [(r["node"], r["peer"], r["via"]) for r in world.records("net")]
    assert changes[:2] == [("alpha", "beta", "net-options"), ("beta", "alpha", "protocol-update")]


def test_clearing_the_allowance_while_both_primary_is_refused(world: World) -> None:
    world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes")
    assert world.run("alpha", "drbdsetup", "primary", "r0")[0] == 0
    assert world.run("beta", "drbdsetup", "primary", "r0")[0] == 0
    assert world.run("beta", "drbdsetup", "net-options", "r0", "0", "--allow-two-primaries=no") == (
        10, "", "r0: Failure: (164) Can not clear allow_two_primaries as long as\nthere a primaries on both sides\n")
    rc, _, err = world.run("alpha", "drbdsim", "adjust", "alpha", "r0")  # drbdadm adjust: the file says no
    assert rc == 10 and err.startswith("r0: Failure: (164) ")
    assert world.net("alpha", 1)["allow-two-primaries"] is True and world.net("beta", 0)["allow-two-primaries"] is True
    # Another connection of the same node may change: the test is per connection.
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "2", "--allow-two-primaries=no")[0] == 0
    assert world.run("beta", "drbdsetup", "secondary", "r0") == (0, "", "")
    assert world.run("alpha", "drbdsim", "adjust", "alpha", "r0") == (0, "", "")
    assert "allow-two-primaries" not in world.net("alpha", 1) and "allow-two-primaries" not in world.net("beta", 0)
    assert [r["code"] for r in world.records("refused")] == [164, 164]


def test_primary_checks_both_sides_of_each_connection(world: World) -> None:
    assert world.run("beta", "drbdsetup", "primary", "r0")[0] == 0
    assert world.run("alpha", "drbdsetup", "primary", "r0") == (
        11, "", "r0: State change failed: (-1) Multiple primaries not allowed by config\n")
    # One side only allowing it (a store edited behind DRBD's back: P_PROTOCOL_UPDATE keeps
    # them equal): still refused, both sides' settings count.
    doc = world.dump()
    doc["resources"]["r0"]["nodes"]["alpha"]["net"]["beta"]["allow-two-primaries"] = True
    with open(world.store, "w") as f:
        json.dump(doc, f)
    assert world.run("alpha", "drbdsetup", "primary", "r0")[0] == 11
    doc["resources"]["r0"]["nodes"]["beta"]["net"]["alpha"]["allow-two-primaries"] = True
    with open(world.store, "w") as f:
        json.dump(doc, f)
    assert world.run("alpha", "drbdsetup", "primary", "r0") == (0, "", "")
    assert world.dump()["resources"]["r0"]["nodes"]["alpha"]["explicit_primary"] is True
    # gamma's connections to both Primaries refuse it.
    assert world.run("gamma", "drbdsetup", "primary", "r0")[0] == 11
    assert [(r["node"], r["code"]) for r in world.records("refused")] == [("alpha", -1), ("alpha", -1), ("gamma", -1)]


def test_secondary_and_explicit_primary(world: World) -> None:
    assert world.run("alpha", "drbdsetup", "secondary", "r0") == (0, "", "")  # already Secondary: silent
    assert world.run("alpha", "drbdsetup", "primary", "r0")[0] == 0
    assert world.run("alpha", "drbdsim", "open", "alpha", "r0", "rw") == (0, "", "")
    assert world.run("alpha", "drbdsetup", "secondary", "r0") == (
        11, "", "r0: State change failed: (-12) Device is held open by someone\n")
    assert world.run("alpha", "drbdsim", "close", "alpha", "r0", "rw")[0] == 0
    assert world.role("alpha") == "Primary"  # explicit: no auto-demote at the last close
    assert world.run("alpha", "drbdsetup", "secondary", "r0") == (0, "", "")
    assert world.dump()["resources"]["r0"]["nodes"]["alpha"]["explicit_primary"] is False
    assert [(r["from"], r["to"], r["how"]) for r in world.records("role")] == [
        ("Secondary", "Primary", "explicit"), ("Primary", "Secondary", "explicit")]


def test_connect_compares_both_sides_settings(world: World) -> None:
    assert world.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "down")[0] == 0
    assert world.cstate("alpha", "beta") == "Connecting" and world.cstate("beta", "alpha") == "Connecting"
    # Not Connected: nothing goes to the peer, so the two sides differ when the link comes back.
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes")[0] == 0
    assert "allow-two-primaries" not in world.net("beta", 0)
    assert world.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "up")[0] == 0
    assert world.cstate("alpha", "beta") == "StandAlone" and world.cstate("beta", "alpha") == "StandAlone"
    assert world.show("alpha")["connections"][0]["_is_standalone"] is True
    for node, peer in (("alpha", "beta"), ("beta", "alpha")):
        log = world.run(node, "drbdsim", "log", node)[1]
        assert f"drbd r0 {peer}: incompatible allow-two-primaries settings" in log
    assert world.cstate("alpha", "gamma") == "Connected"
    # adjust on alpha: the file's no back in force, StandAlone connected again; beta too.
    assert world.run("alpha", "drbdsim", "adjust", "alpha", "r0")[0] == 0
    assert world.cstate("alpha", "beta") == "Connecting"  # beta still holds it StandAlone
    assert world.run("beta", "drbdadm", "connect", "r0")[0] == 0
    assert world.cstate("alpha", "beta") == "Connected"
    # The protocol, likewise.
    world.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "down")
    world.run("beta", "drbdsetup", "net-options", "r0", "0", "--protocol=A")
    world.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "up")
    assert world.cstate("alpha", "beta") == "StandAlone"
    assert "incompatible protocol settings" in world.run("beta", "drbdsim", "log", "beta")[1]
    dropped = [r["reason"] for r in world.records("connection") if r["state"] == "StandAlone" and r["node"] == "alpha"]
    assert dropped == ["incompatible allow-two-primaries settings", "incompatible protocol settings"]


def test_two_primaries_reconnecting_without_allowance_stay_apart(world: World) -> None:
    world.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "down")
    assert world.run("alpha", "drbdsetup", "primary", "r0")[0] == 0
    world.run("gamma", "drbdsim", "link", "r0", "beta", "gamma", "down")
    assert world.run("beta", "drbdsetup", "primary", "r0")[0] == 0  # it sees no Primary
    world.run("alpha", "drbdsim", "link", "r0", "alpha", "beta", "up")
    assert world.cstate("alpha", "beta") == "StandAlone"
    log = world.run("alpha", "drbdsim", "log", "alpha")[1]
    assert "Split-Brain detected but unresolved, dropping connection!" in log


def test_show_text_and_defaults(world: World) -> None:
    world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes")
    shown = world.show("alpha", "--show-defaults")
    assert shown["options"] == {"auto-promote": True, "auto-promote-timeout": "20", "quorum": "off"}
    nets = {c["_peer_node_id"]: c["net"] for c in shown["connections"]}
    assert nets[1] == {"protocol": "C", "allow-two-primaries": True, "on-congestion": "block", "_name": "beta"}
    assert nets[2]["allow-two-primaries"] is False and nets[2]["protocol"] == "C"
    assert all(isinstance(c["_peer_node_id"], int) for c in shown["connections"])
    rc, text, _ = world.run("alpha", "drbdsetup", "show", "r0")
    assert rc == 0 and text.startswith('resource "r0" {\n    options {\n        auto-promote')
    blocks = text.split("    connection {")[1:]
    assert len(blocks) == 2
    assert "_peer_node_id 1;" in blocks[0] and re.search(r"net \{\n\s+allow-two-primaries\s+yes;", blocks[0])
    assert "allow-two-primaries" not in blocks[1] and "protocol" not in blocks[1]
    assert re.search(r"protocol\s+C;", world.run("alpha", "drbdsetup", "show", "r0", "--show-defaults")[1])


def test_record_gives_the_two_primaries_window(world: World) -> None:
    w = world
    assert w.run("alpha", "drbdsetup", "primary", "r0")[0] == 0
    assert w.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes")[0] == 0
    assert w.run("beta", "drbdsetup", "primary", "r0")[0] == 0
    assert w.run("alpha", "drbdsetup", "secondary", "r0")[0] == 0
    assert w.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=no")[0] == 0
    rc, out, _ = w.run("gamma", "drbdsim", "record", "r0")
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [r["seq"] for r in lines] == sorted(r["seq"] for r in lines)
    assert all(lines[i]["t"] <= lines[i + 1]["t"] for i in range(len(lines) - 1))
    (window,) = drbdsim.primaries_intervals(lines)
    assert window["nodes"] == ["alpha", "beta"] and window["end"] is not None
    net = [r for r in lines if r["event"] == "net"]
    opened = next(r for r in net if r["options"]["allow-two-primaries"])
    closed = next(r for r in net if r["seq"] > window["end_seq"] and not r["options"]["allow-two-primaries"])
    assert opened["seq"] < window["start_seq"] < window["end_seq"] < closed["seq"]
    assert drbdsim.roles_from_records(lines) == {("r0", "alpha"): "Secondary", ("r0", "beta"): "Primary"}
    (allowed,) = drbdsim.allowance_intervals(lines, "r0")
    assert allowed["nodes"] == ["alpha", "beta"]
    assert (allowed["start_seq"], allowed["end_seq"]) == (opened["seq"], closed["seq"] + 1)  # + beta's copy
    assert allowed["start"] <= window["start"] <= window["end"] <= allowed["end"]


def test_connect_and_disconnect_one_peer(world: World) -> None:
    assert world.run("alpha", "drbdsetup", "disconnect", "r0", "2") == (0, "", "")
    assert (world.cstate("alpha", "gamma"), world.cstate("gamma", "alpha")) == ("StandAlone", "Connecting")
    assert world.cstate("alpha", "beta") == "Connected"
    assert world.run("alpha", "drbdsetup", "connect", "r0", "2") == (0, "", "")
    assert world.cstate("alpha", "gamma") == "Connected"
    rc, _, err = world.run("alpha", "drbdsetup", "connect", "r0", "9")
    assert rc == 10 and err.startswith("r0: Failure: (162) Invalid configuration request\n")


def test_opens_auto_promote_refusals_and_auto_demote(world: World) -> None:
    w = world
    assert w.run("alpha", "drbdsim", "open", "alpha", "r0", "rw") == (0, "", "")
    assert w.role("alpha") == "Primary"
    assert w.dump()["resources"]["r0"]["nodes"]["alpha"]["explicit_primary"] is False
    assert w.run("beta", "drbdsim", "open", "beta", "r0", "ro") == (
        1, "", "r0: open /dev/drbd1 (ro) on beta: EMEDIUMTYPE (Wrong medium type)\n")
    assert w.run("beta", "drbdsim", "open", "beta", "r0", "rw") == (
        1, "", "r0: open /dev/drbd1 (rw) on beta: EROFS (Read-only file system)\n")
    log = w.run("beta", "drbdsim", "log", "beta")[1]
    assert "Auto-promote failed: Multiple primaries not allowed by config (-1)" in log
    assert w.role("beta") == "Secondary"
    assert w.run("alpha", "drbdsim", "close", "alpha", "r0", "rw")[0] == 0
    assert w.role("alpha") == "Secondary"  # auto-demoted at the last writer's close
    # No Primary anywhere: a read-only open on a Secondary is served; a peer's promotion over a
    # connection without two primaries is then refused (SS_PRIMARY_READER).
    assert w.run("beta", "drbdsim", "open", "beta", "r0", "ro")[0] == 0
    assert w.run("alpha", "drbdsetup", "primary", "r0") == (
        11, "", "r0: State change failed: (-22) Peer may not become primary while device is opened read-only\n")
    assert w.run("beta", "drbdsim", "close", "beta", "r0", "ro")[0] == 0
    assert w.run("beta", "drbdsim", "close", "beta", "r0", "ro")[0] == 2  # nothing open
    refused = [(r["node"], r["mode"], r["errno"]) for r in w.records("open-refused")]
    assert refused == [("beta", "ro", "EMEDIUMTYPE"), ("beta", "rw", "EROFS")]
    assert [(r["node"], r["to"], r["how"]) for r in w.records("role")] == [
        ("alpha", "Primary", "auto"), ("alpha", "Secondary", "auto")]
    # Without auto-promote a write open on a Secondary is EROFS, nothing promoted.
    assert w.run("gamma", "drbdsetup", "resource-options", "r0", "--auto-promote=no")[0] == 0
    assert w.run("gamma", "drbdsim", "open", "gamma", "r0", "rw")[0] == 1
    assert w.role("gamma") == "Secondary" and w.show("gamma")["options"]["auto-promote"] is False


def test_fail_net_options_hook(world: World) -> None:
    assert world.run("alpha", "drbdsim", "fail-net-options", "alpha", "on")[0] == 0
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes") == (
        10, "", "r0: Failure: (122) kmalloc() failed. Out of memory?\n")
    assert "allow-two-primaries" not in world.net("alpha", 1)
    assert world.run("beta", "drbdsetup", "net-options", "r0", "0", "--allow-two-primaries=yes")[0] == 0  # beta works
    assert world.run("alpha", "drbdsim", "fail-net-options", "alpha", "off")[0] == 0
    assert world.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=no")[0] == 0


def test_kernel_model_applies_what_a_scan_found(world: World) -> None:
    w = world
    with open(w.store) as f:
        data = json.load(f)
    data["_records"] = []

    def apply(node: str, found: Dict[str, str]) -> None:
        drbdsim.kernel_apply(data, node, {"r0": found})
        drbdsim.settle(data, "r0", data["resources"]["r0"])

    res = data["resources"]["r0"]
    apply("alpha", {"100:5": "rw"})  # QEMU opens for writing: auto-promote
    assert res["nodes"]["alpha"]["role"] == "Primary"
    apply("beta", {"200:7": "ro"})  # an incoming QEMU's read-only open while alpha is Primary
    apply("beta", {"200:7": "ro"})  # seen again: recorded once
    assert res["nodes"]["beta"]["seen"] == {"200:7": "ro-refused"}
    apply("alpha", {"100:5": "rw", "101:3": "rw"})
    apply("alpha", {"101:3": "rw"})
    assert res["nodes"]["alpha"]["role"] == "Primary"
    apply("alpha", {})  # the last writer gone: auto-demote
    assert res["nodes"]["alpha"]["role"] == "Secondary"
    events = [(r["event"], r["node"], r.get("errno") or r.get("to") or r.get("mode")) for r in data["_records"]
              if r["event"] in ("role", "open-refused")]
    assert events == [("role", "alpha", "Primary"), ("open-refused", "beta", "EMEDIUMTYPE"),
                      ("role", "alpha", "Secondary")]
    assert w.run("alpha", "drbdsim", "kernel")[0] == 2  # unbounded: refused
    assert w.run("alpha", "drbdsim", "kernel", "--once") == (0, "", "")
    assert w.run("alpha", "drbdsim", "kernel", "--for", "0.05", "--interval", "0.01") == (0, "", "")


def test_scan_opens_reads_the_mode_of_another_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tmp_path / "drbd1"
    dev.write_bytes(b"\0" * 512)
    monkeypatch.setattr(drbdsim, "dev_paths", lambda name, res: (str(dev), str(tmp_path / "link")))
    for mode, flag, expected in (("rb", "ro", "ro"), ("r+b", "rw", "rw")):
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import sys; f = open({str(dev)!r}, {mode!r}); print('open', flush=True); "
                                   "sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "open\n"
            found = drbdsim.scan_opens("r0", {})
            assert list(found.values()) == [expected], flag
            assert all(key.startswith(f"{holder.pid}:") for key in found)
        finally:
            holder.communicate("", timeout=10)
    assert drbdsim.scan_opens("r0", {}) == {}


# --------------------------------------------------------------------------- DRBD's invariant over random sequences

NAMES = [n for n, _ in NODES3]
NODE = st.sampled_from(NAMES)
OPS = st.one_of(
    st.tuples(st.just("primary"), NODE),
    st.tuples(st.just("secondary"), NODE),
    st.tuples(st.just("net"), NODE, NODE, st.booleans(), st.sampled_from(["C", "C", "A"])),
    st.tuples(st.just("link"), NODE, NODE, st.booleans()),
    st.tuples(st.just("open"), NODE, st.sampled_from(["ro", "rw"])),
    st.tuples(st.just("close"), NODE, st.sampled_from(["ro", "rw"])),
    st.tuples(st.just("adjust"), NODE),
    st.tuples(st.just("connect"), NODE),
)


def op_argv(op: Tuple[Any, ...]) -> Tuple[str, List[str]]:
    kind, node = op[0], op[1]
    if kind in ("primary", "secondary"):
        return node, ["drbdsetup", kind, "r0"]
    if kind == "net":
        peer_id = str(NAMES.index(op[2]))
        return node, ["drbdsetup", "net-options", "r0", peer_id, f"--allow-two-primaries={'yes' if op[3] else 'no'}",
                      f"--protocol={op[4]}"]
    if kind == "link":
        return node, ["drbdsim", "link", "r0", node, op[2], "up" if op[3] else "down"]
    if kind in ("open", "close"):
        return node, ["drbdsim", kind, node, "r0", op[2]]
    if kind == "adjust":
        return node, ["drbdsim", "adjust", node, "r0"]
    return node, ["drbdadm", "connect", "r0"]


class Snapshot:
    """The oracle's view, from the tools' JSON only: roles, Connected pairs, each side's allowance."""

    def __init__(self, w: World) -> None:
        self.roles = {n: w.role(n) for n in NAMES}
        self.connected: Set[Tuple[str, str]] = set()
        self.allowed: Dict[Tuple[str, str], bool] = {}
        for n in NAMES:
            for conn in w.status(n).get("connections", []):
                if conn["connection-state"] == "Connected":
                    self.connected.add((n, conn["name"]))
            for conn in w.show(n, "--show-defaults").get("connections", []):
                self.allowed[(n, conn["net"]["_name"])] = conn["net"]["allow-two-primaries"]

    def dual(self) -> Set[Tuple[str, str]]:
        """Pairs Connected (seen so from both sides) with both nodes Primary."""
        return {(a, b) for a in NAMES for b in NAMES if a < b and (a, b) in self.connected
                and self.roles[a] == self.roles[b] == "Primary"}


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(OPS, min_size=1, max_size=25))
def test_never_two_primaries_unless_both_sides_allowed_it(ops: List[Tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp), config=["--allow-two-primaries=no"])
        before = Snapshot(w)
        for op in ops:
            node, argv = op_argv(op)
            rc, out, err = w.run(node, *argv)
            after = Snapshot(w)
            # connections are seen alike from both ends
            assert all((b, a) in after.connected for a, b in after.connected), op
            for a, b in after.dual() - before.dual():
                # a new pair of Primaries on a Connected connection: only by a promotion of one of
                # them, and only where both sides' settings allowed it at that moment
                assert op[0] in ("primary", "open") and node in (a, b), (op, a, b)
                assert after.allowed[(a, b)] and after.allowed[(b, a)], (op, a, b, after.allowed)
            for a, b in after.dual():
                # DRBD keeps it allowed while both are Primary (164 for net-options and adjust)
                assert after.allowed[(a, b)] and after.allowed[(b, a)], (op, a, b)
            if rc != 0 and op[0] in ("primary", "secondary"):
                assert after.roles == before.roles, (op, err)
            if op[0] == "net" and rc == 0:
                assert out == err == ""
            before = after
        records = w.records()
        replayed = drbdsim.roles_from_records(records)
        assert {n: replayed.get(("r0", n), "Secondary") for n in NAMES} == before.roles
        primaries = sorted(n for n in NAMES if before.roles[n] == "Primary")
        still_open = [i for i in drbdsim.primaries_intervals(records) if i["end"] is None]
        assert [i["nodes"] for i in still_open] == ([primaries] if len(primaries) > 1 else [])
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))


def test_kernel_loop_sees_a_process_open_and_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``drbdsim kernel --once`` end to end: a process of "this node" opens the device for writing
    (auto-promote), its peer's read-only open while it is Primary is EMEDIUMTYPE, the writer exits
    (auto-demote)."""
    dev = tmp_path / "drbd1"
    dev.write_bytes(b"\0" * 512)
    monkeypatch.setattr(drbdsim, "dev_paths", lambda name, res: (str(dev), str(tmp_path / "link")))
    monkeypatch.setattr(drbdsim, "create_device", lambda name, res: None)
    monkeypatch.setattr(drbdsim, "remove_device", lambda name, res: None)
    w = World(tmp_path, config=["--allow-two-primaries=no"], up=False)
    doc = w.dump()
    doc["devices"] = True
    with open(w.store, "w") as f:
        json.dump(doc, f)
    for node in ("alpha", "beta"):
        assert w.run(node, "drbdadm", "up", "r0")[0] == 0

    def holder(mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", f"import sys; f = open({str(dev)!r}, {mode!r}); print('open', flush=True); "
                                   "sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "open\n"
        return proc

    writer = holder("r+b")
    try:
        assert w.run("alpha", "drbdsim", "kernel", "--once") == (0, "", "")
        assert w.role("alpha") == "Primary"
        assert w.run("alpha", "drbdsetup", "secondary", "r0")[0] == 11  # held open for writing
        # The same /proc seen as beta's (in the lab each node has its own): a read-only open
        # there while alpha is Primary.
        reader = holder("rb")
        try:
            assert w.run("beta", "drbdsim", "kernel", "--once")[0] == 0
        finally:
            reader.communicate("", timeout=10)
    finally:
        writer.communicate("", timeout=10)
    assert w.run("alpha", "drbdsim", "kernel", "--once")[0] == 0
    assert w.role("alpha") == "Secondary"
    assert [(r["node"], r["to"], r["how"]) for r in w.records("role")] == [
        ("alpha", "Primary", "auto"), ("alpha", "Secondary", "auto")]
    refused = w.records("open-refused")
    # beta saw both descriptors; the writer's is refused too (EROFS: alpha is Primary, no allowance)
    assert sorted((r["node"], r["mode"], r["errno"]) for r in refused) == [
        ("beta", "ro", "EMEDIUMTYPE"), ("beta", "rw", "EROFS")]


def test_a_rebooted_peer_meets_a_leftover_allowance(world: World) -> None:
    """docs/two-primaries.md "Target lost midway": the survivor keeps a runtime yes, the peer comes
    back with the file's no: StandAlone until the survivor clears it and connects again."""
    w = world
    assert w.run("alpha", "drbdsetup", "primary", "r0")[0] == 0
    assert w.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=yes")[0] == 0
    assert w.run("beta", "drbdsetup", "primary", "r0")[0] == 0
    assert w.run("alpha", "drbdsim", "crash", "beta")[0] == 0
    assert w.role("beta") == "down" and w.cstate("alpha", "beta") == "Connecting"
    assert w.run("beta", "drbdadm", "up", "r0")[0] == 0  # rebooted: Secondary, the file's settings
    assert "allow-two-primaries" not in w.net("beta", 0)
    assert (w.cstate("alpha", "beta"), w.cstate("beta", "alpha")) == ("StandAlone", "StandAlone")
    # The survivor may clear it: the peer is not Connected, so not Primary as alpha sees it.
    assert w.run("alpha", "drbdsetup", "net-options", "r0", "1", "--allow-two-primaries=no") == (0, "", "")
    assert w.run("alpha", "drbdadm", "connect", "r0")[0] == 0
    assert w.run("beta", "drbdadm", "connect", "r0")[0] == 0
    assert w.cstate("alpha", "beta") == "Connected"
    assert [(r["node"], r["to"], r["how"]) for r in w.records("role")] == [
        ("alpha", "Primary", "explicit"), ("beta", "Primary", "explicit"), ("beta", "Secondary", "crash")]
