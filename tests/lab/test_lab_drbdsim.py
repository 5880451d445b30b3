"""The DRBD simulator on its own (no lab, no root): formats and DRBD's rules."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import pytest

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
