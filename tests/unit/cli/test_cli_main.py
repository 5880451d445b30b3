"""The livemig command, run in-process with a scripted runner."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest

from livemig.cli.main import build_parser, main
from livemig.run import CommandRunner
from tests.unit.drbd.scripted import FIXTURES, ScriptedRunner, fixture, hung

PROC9 = str(FIXTURES / "drbd9-proc-synthetic-version-only.txt")
CIB = str(FIXTURES / "cib-synthetic-empty.xml")


def run(argv: List[str], runner: Optional[CommandRunner] = None) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, runner=runner or ScriptedRunner(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def drbd9_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", PROC9)


def drbd9(status: str) -> ScriptedRunner:
    return ScriptedRunner({"drbdsetup status": (0, fixture(status)),
                           "cibadmin": (0, fixture("cib-synthetic-empty.xml"))})


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["guard", "--help"], ["drbd", "--help"], ["drbd", "status", "--help"]):
        assert main(argv) == 0
    text = capsys.readouterr().out
    assert "exit status:" in text and "LIVEMIG_PROC_DRBD" in text and "--domain-xml FILE" in text
    assert main(["--version"]) == 0


@pytest.mark.parametrize("argv, message", [
    ([], "required"),
    (["guard", "--resource", "r0"], "--peer"),
    (["guard", "--peer", "b"], "one of the arguments --resource --domain-xml is required"),
    (["guard", "--peer", "b", "--resource", "r0", "--domain-xml", "x"], "not allowed with"),
    (["guard", "--peer", "b", "--resource", "r0", "--mode", "yolo"], "invalid choice"),
    (["guard", "--peer", "b", "--resource", "r0", "--wait", "-1"], "not a number of seconds"),
    (["guard", "--peer", "b", "--resource", "r0", "--timeout", "nan"], "not a number of seconds"),
    (["guard", "--peer", "b", "--resource", "r0", "--cib", "/nonexistent/cib.xml"], "/nonexistent/cib.xml"),
    (["guard", "--peer", "b", "--domain-xml", "/nonexistent/vm.xml"], "/nonexistent/vm.xml"),
    (["guard", "--peer", "b", "--resource", "r0", "--peer-name", "nonsense"], "NODE=HOST"),
    (["guard", "--peer", "b", "--resource", "a/b"], "not a DRBD resource name"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_exit_2_with_a_message(argv: List[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv)
    err += capsys.readouterr().err  # argparse writes to sys.stderr itself
    assert code == 2
    assert message in err and "Traceback" not in err
    assert out == ""


def test_guard_allowed_text_and_json() -> None:
    runner = drbd9("drbd9-status-json-derived-dual-primary.txt")
    code, out, _ = run(["guard", "--peer", "salt-node3", "--resource", "beijing", "--cib", CIB], runner)
    assert code == 0 and out.startswith("allowed: migrating beijing to salt-node3 is safe")
    code, out, _ = run(["guard", "--peer", "salt-node3", "--resource", "beijing", "--cib", CIB, "--json"], runner)
    document = json.loads(out)
    assert code == 0 and document["allowed"] is True
    assert set(document) == {"allowed", "checks"}
    assert all(set(c) == {"resource", "check", "ok", "detail"} for c in document["checks"])
    assert ("cibadmin", {"CIB_file": CIB}) in [(argv[0], env) for argv, _t, env in runner.records]


@pytest.mark.parametrize("status, why", [
    ("drbd9-status-json-salt-beijing-primary.txt", "beijing: salt-node3 role is Secondary; needs Primary"),
    ("drbd9-status-json-derived-peer-inconsistent.txt", "beijing: volume 0: salt-node3 disk is Inconsistent"),
    ("drbd9-status-json-derived-disconnected.txt", "beijing: connection to salt-node3 is Connecting"),
])
def test_guard_refused(status: str, why: str) -> None:
    code, out, _ = run(["guard", "--peer", "salt-node3", "--resource", "beijing"], drbd9(status))
    assert code == 1
    assert out.splitlines()[0] == "refused: migrating to salt-node3 is not safe"
    assert any(line.startswith(why) for line in out.splitlines()[1:]), out


def test_guard_undecided_is_exit_2() -> None:
    runner = ScriptedRunner({"drbdsetup status": hung("drbdsetup"),
                             "cibadmin": (0, fixture("cib-synthetic-empty.xml"))})
    code, out, _ = run(["guard", "--peer", "salt-node3", "--resource", "beijing", "--json"], runner)
    assert code == 2 and json.loads(out)["allowed"] is False


def test_guard_domain_xml(tmp_path: Path) -> None:
    xml = tmp_path / "vm.xml"
    xml.write_text("<domain><name>vm</name><devices><disk type='block'><source dev='/dev/drbd/by-res/beijing/0'/>"
                   "<target dev='vda'/></disk></devices></domain>")
    runner = drbd9("drbd9-status-json-derived-dual-primary.txt")
    assert run(["guard", "--peer", "salt-node3", "--domain-xml", str(xml)], runner)[0] == 0
    xml.write_text("<domain><name>vm</name><devices/></domain>")
    code, out, _ = run(["guard", "--peer", "salt-node3", "--domain-xml", str(xml)], runner)
    assert code == 1 and "no DRBD resource to check" in out
    xml.write_text("<domain><devices><disk type='volume'><source pool='p' volume='v'/></disk></devices></domain>")
    code, out, _ = run(["guard", "--peer", "salt-node3", "--domain-xml", str(xml), "--json"], runner)
    assert code == 2 and json.loads(out)["checks"][0]["check"] == "domain-disks"
    xml.write_text("<domain")
    assert run(["guard", "--peer", "salt-node3", "--domain-xml", str(xml)], runner)[0] == 2


def test_drbd_status_json_shape() -> None:
    code, out, _ = run(["drbd", "status", "--json"], drbd9("drbd9-status-json-salt-beijing-primary.txt"))
    assert code == 0
    assert json.loads(out) == {"drbd_version": "9.2.5", "resources": [{
        "name": "beijing", "role": "Primary", "suspended": False,
        "volumes": [{"volume": 0, "minor": 5, "disk": "UpToDate", "quorum": True}],
        "peers": [{"name": "salt-node3", "node_id": 2, "connection": "Connected", "role": "Secondary",
                   "volumes": [{"volume": 0, "replication": "Established", "disk": "UpToDate",
                                "out_of_sync_kib": 0}]}]}]}


def test_drbd_status_8x_json_and_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(FIXTURES / "drbd84-proc-ganeti-syncsource.txt"))
    runner = ScriptedRunner({"drbdadm sh-resource minor-5": (0, "r5\n")})
    code, out, _ = run(["drbd", "status", "--json"], runner)
    document: Any = json.loads(out)
    assert code == 0 and document["drbd_version"] == "8.4.2"
    assert [r["name"] for r in document["resources"]] == [None, "r5"]
    standalone = document["resources"][0]
    assert standalone["peers"] == [{"name": None, "node_id": None, "connection": "StandAlone", "role": "Unknown",
                                    "volumes": [{"volume": None, "replication": None, "disk": "DUnknown",
                                                 "out_of_sync_kib": 1048320}]}]
    code, out, _ = run(["drbd", "status"], runner)
    assert code == 0 and "SyncSource" in out and out.splitlines()[0] == "DRBD 8.4.2"


def test_drbd_status_missing_resource_and_unreadable() -> None:
    code, out, err = run(["drbd", "status", "nosuch"], drbd9("drbd9-status-json-salt-beijing-primary.txt"))
    assert code == 1 and "nosuch is not up" in err
    code, out, err = run(["drbd", "status"], ScriptedRunner({"drbdsetup status": (0, "[{")}))
    assert code == 2 and out == "" and "not valid JSON" in err


def test_parser_leaves_room_for_more_commands() -> None:
    parser = build_parser()
    assert parser.prog == "livemig"


PROC84_MINOR1 = str(FIXTURES / "drbd84-proc-pacemaker-connected-primary-8.4.11.txt")
DUMP84 = (FIXTURES / "check" / "check-84-good.dump-xml.txt").read_text(encoding="utf-8")


def test_drbd_status_names_an_unnamed_84_minor_from_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """8.4, /proc/drbd lists minor 1 without a name and no by-res link names it: `drbd status r0`
    finds r0 by its minors in DRBD's configuration (drbdadm sh-minor), as the guard does."""
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", PROC84_MINOR1)
    runner = ScriptedRunner({"drbdadm sh-minor r0": (0, "1\n")})
    code, out, err = run(["drbd", "status", "r0"], runner)
    assert code == 0, err
    assert "no DRBD resources are up" not in out
    row = out.splitlines()[2].split()
    assert row[:5] == ["r0", "-", "1", "Primary", "UpToDate"] and "Connected" in row, out
    code, out, err = run(["drbd", "status", "r0", "--json"], runner)
    assert code == 0 and [r["name"] for r in json.loads(out)["resources"]] == ["r0"], err


def test_drbd_status_84_resource_down_or_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", PROC84_MINOR1)
    code, out, err = run(["drbd", "status", "r7"], ScriptedRunner({"drbdadm sh-minor r7": (0, "7\n")}))
    assert code == 1 and "resource r7 is not up on this node: minor 7 is not in /proc/drbd" in err
    assert "no DRBD resources are up" in out
    code, out, err = run(["drbd", "status", "nosuch"],
                         ScriptedRunner({"drbdadm sh-minor": (10, "", "'nosuch' not defined in your config")}))
    assert code == 2 and "could not read resource nosuch: cannot tell which minors" in err
    code, _, err = run(["drbd", "status", "--bad-name"], ScriptedRunner())
    assert code == 2


def test_drbd_status_lists_84_minors_named_from_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEMIG_PROC_DRBD", str(FIXTURES / "drbd84-proc-ug84-inconsistent-8.4.1.txt"))
    monkeypatch.setenv("__DRBD_NODE__", "alpha")
    runner = ScriptedRunner({"drbdadm -v dump-xml all": (0, DUMP84)})
    code, out, err = run(["drbd", "status", "--json"], runner)
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)["resources"]] == ["r0"]
    monkeypatch.setenv("__DRBD_NODE__", "gamma")  # not a host of the configuration: left unnamed
    code, out, _ = run(["drbd", "status", "--json"], runner)
    assert [r["name"] for r in json.loads(out)["resources"]] == [None]
