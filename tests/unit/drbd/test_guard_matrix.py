"""The guard over generated matrices of DRBD 9 and 8.x states: allowed exactly in the safe cases."""

from __future__ import annotations

import itertools
from typing import Any, Dict, Optional, Tuple

import pytest

from livemig.drbd.guard import GuardVerdict, evaluate_guard
from livemig.ocf.deadline import Deadline
from tests.unit.drbd.builders import (
    MISSING,
    PROC9,
    SAFE9,
    TextProcReader,
    drbd8_answers,
    proc8,
    proc8_line,
    status9,
)
from tests.unit.drbd.scripted import ScriptedRunner, fixture

CIB_EMPTY = fixture("cib-synthetic-empty.xml")
CIB_FENCED_R0 = CIB_EMPTY.replace("<constraints/>", (
    '<constraints><rsc_location id="drbd-fence-by-handler-r0-ms_r0" rsc="ms_r0">'
    '<rule id="drbd-fence-by-handler-r0-rule-ms_r0" role="Promoted" score="-INFINITY">'
    '<expression id="drbd-fence-by-handler-r0-expr-ms_r0" attribute="#uname" operation="ne" value="alpha"/>'
    "</rule></rsc_location></constraints>"))


def guard9(status_text: str, fenced: bool = False, mode: str = "dual-primary", show: Optional[str] = None,
           target: str = "beta") -> GuardVerdict:
    answers: Dict[str, Any] = {"drbdsetup status": (0, status_text),
                               "cibadmin": (0, CIB_FENCED_R0 if fenced else CIB_EMPTY)}
    if show is not None:
        answers["drbdsetup show"] = (0, show)
    runner = ScriptedRunner(answers)
    deadline = Deadline(30)
    return evaluate_guard(["r0"], target, mode, runner=runner, deadline=deadline,
                          reader=TextProcReader(runner, deadline, PROC9))


def guard8(proc_text: str, fenced: bool = False, mode: str = "dual-primary",
           minors: Tuple[int, ...] = (0,)) -> GuardVerdict:
    runner = ScriptedRunner(dict(drbd8_answers("r0", minors),
                                 cibadmin=(0, CIB_FENCED_R0 if fenced else CIB_EMPTY)))
    deadline = Deadline(30)
    return evaluate_guard(["r0"], "beta", mode, runner=runner, deadline=deadline,
                          reader=TextProcReader(runner, deadline, proc_text))


def is_safe9(state: Dict[str, Any]) -> bool:
    s = dict(SAFE9, **state)
    def same(a: Any, b: Any) -> bool:
        return type(a) is type(b) and a == b  # 0 is not False here
    return all(same(s[k], v) for k, v in SAFE9.items())  # out-of-sync too: drbdsetup always prints it


# -- DRBD 9 ---------------------------------------------------------------------

CONNECTION_AXES = list(itertools.product(
    ["Primary", "Secondary"],                                  # local role
    ["Connected", "Connecting", "StandAlone"],                 # connection
    ["Primary", "Secondary", "Unknown"],                       # peer role
    ["UpToDate", "Inconsistent", "Outdated", "DUnknown"],      # peer disk
    ["Established", "SyncSource", "Off"],                      # replication
))


@pytest.mark.parametrize("role, connection, peer_role, peer_disk, replication", CONNECTION_AXES)
def test_drbd9_roles_and_connection(role: str, connection: str, peer_role: str, peer_disk: str,
                                    replication: str) -> None:
    state = dict(role=role, connection=connection, peer_role=peer_role, peer_disk=peer_disk,
                 replication=replication)
    verdict = guard9(status9(**state))
    assert verdict.decided
    assert verdict.allowed == is_safe9(state), verdict.reasons()
    if not verdict.allowed:
        assert verdict.reasons() and all(line.startswith("r0: ") for line in verdict.reasons())


LOCAL_AXES = list(itertools.product(
    [False, True, MISSING, "maybe", 0],         # suspended ("maybe", 0: wrong type, unknown)
    ["UpToDate", "Inconsistent", "Diskless", MISSING],  # local disk
    [True, False, MISSING],                        # quorum
    [0, 4096, MISSING],                            # out-of-sync (missing: unreadable, as drbdsetup prints it)
    [False, True],                                 # fence constraint
))


@pytest.mark.parametrize("suspended, disk, quorum, oos, fenced", LOCAL_AXES)
def test_drbd9_local_state_and_fencing(suspended: Any, disk: Any, quorum: Any, oos: Any, fenced: bool) -> None:
    state = dict(suspended=suspended, disk=disk, quorum=quorum, out_of_sync=oos)
    verdict = guard9(status9(**state), fenced=fenced)
    assert verdict.allowed == (is_safe9(state) and not fenced), verdict.reasons()
    if fenced:
        assert any("drbd-fence-by-handler-r0-ms_r0" in line for line in verdict.reasons())


@pytest.mark.parametrize("key", sorted(SAFE9))
def test_drbd9_missing_key_is_unknown_not_healthy(key: str) -> None:
    verdict = guard9(status9(**{key: MISSING}))
    assert not verdict.allowed, key  # out-of-sync too: drbdsetup prints it for every peer device
    if key == "out_of_sync":
        assert verdict.reasons() == ["r0: volume 0: out-of-sync with beta is unreadable; needs 0"]


def test_drbd9_two_volumes_one_bad() -> None:
    doc = status9(volumes=(0, 1)).replace('"peer-disk-state": "UpToDate"', '"peer-disk-state": "Outdated"', 1)
    verdict = guard9(doc)
    assert not verdict.allowed
    assert verdict.reasons() == ["r0: volume 0: beta disk is Outdated; needs UpToDate"]


def test_drbd9_peer_volume_missing_is_refused() -> None:
    doc = status9(volumes=(0, 1)).replace('"volume": 1,\n', '"volume": 7,\n', 1)  # local volume 1 -> 7
    assert not guard9(doc).allowed


def test_drbd9_resource_not_up() -> None:
    verdict = guard9(status9(name="other"))
    assert verdict.decided and not verdict.allowed
    assert verdict.reasons() == ["r0: resource is not up on this node; needs: up and Primary"]


def test_drbd9_healthy_sample_allowed_and_real_samples_refused() -> None:
    runner = ScriptedRunner({"drbdsetup status": (0, fixture("drbd9-status-json-derived-dual-primary.txt")),
                             "cibadmin": (0, CIB_EMPTY)})
    deadline = Deadline(30)
    reader = TextProcReader(runner, deadline, PROC9)
    assert evaluate_guard(["beijing"], "salt-node3", runner=runner, deadline=deadline, reader=reader).allowed
    for name, expected in [
        ("drbd9-status-json-salt-beijing-primary.txt", "salt-node3 role is Secondary; needs Primary"),
        ("drbd9-status-json-derived-disconnected.txt", "connection to salt-node3 is Connecting; needs Connected"),
        ("drbd9-status-json-derived-peer-inconsistent.txt", "volume 0: salt-node3 disk is Inconsistent"),
    ]:
        runner.answers["drbdsetup status"] = (0, fixture(name))
        verdict = evaluate_guard(["beijing"], "salt-node3.example.com", runner=runner, deadline=deadline,
                                 reader=reader)
        assert verdict.decided and not verdict.allowed
        assert any(expected in line for line in verdict.reasons()), verdict.reasons()


# -- auto-promote -------------------------------------------------------------------

def show9(allow: Any = True, auto: Any = True, peer_node_id: int = 1) -> str:
    text = fixture("drbd9-show-json-drbdutils-one-volume.txt").replace('"some-resource"', '"r0"')
    text = text.replace('"allow-two-primaries": false', f'"allow-two-primaries": {_json(allow)}')
    text = text.replace('"auto-promote": true', f'"auto-promote": {_json(auto)}')
    return text.replace('"_peer_node_id": 1', f'"_peer_node_id": {peer_node_id}')


def _json(value: Any) -> str:
    return {True: "true", False: "false", None: "null"}.get(value, f'"{value}"')


@pytest.mark.parametrize("peer_role, allow, auto, allowed", [
    ("Secondary", True, True, True),
    ("Primary", True, True, True),
    ("Secondary", False, True, False),
    ("Secondary", True, False, False),
    ("Secondary", None, True, False),
    ("Secondary", "yes", "yes", True),
    ("Unknown", True, True, False),
])
def test_auto_promote_mode(peer_role: str, allow: Any, auto: Any, allowed: bool) -> None:
    verdict = guard9(status9(peer_role=peer_role), mode="auto-promote", show=show9(allow, auto))
    assert verdict.allowed == allowed, verdict.reasons()


def test_auto_promote_settings_of_another_connection_do_not_count() -> None:
    verdict = guard9(status9(peer_role="Secondary"), mode="auto-promote", show=show9(peer_node_id=5))
    assert not verdict.allowed


def test_auto_promote_needs_drbd9() -> None:
    verdict = guard8(proc8(proc8_line(peer_role="Secondary")), mode="auto-promote")
    assert verdict.decided and not verdict.allowed
    assert "auto-promote mode needs DRBD 9" in verdict.reasons()[0]


# -- DRBD 8.x -------------------------------------------------------------------------

PROC_AXES = list(itertools.product(
    ["Connected", "SyncSource", "WFConnection", "StandAlone"],
    ["Primary", "Secondary"],
    ["Primary", "Secondary", "Unknown"],
    ["UpToDate", "Inconsistent"],
    ["UpToDate", "Outdated", "DUnknown"],
    ["r-----", "s-----"],
    [0, 1024],
))


@pytest.mark.parametrize("cs, role, peer_role, disk, peer_disk, flags, oos", PROC_AXES)
def test_drbd8_matrix(cs: str, role: str, peer_role: str, disk: str, peer_disk: str, flags: str, oos: int) -> None:
    verdict = guard8(proc8(proc8_line(cs=cs, role=role, peer_role=peer_role, disk=disk, peer_disk=peer_disk,
                                      flags=flags, oos=oos)))
    safe = (cs, role, peer_role, disk, peer_disk, flags[0], oos) == (
        "Connected", "Primary", "Primary", "UpToDate", "UpToDate", "r", 0)
    assert verdict.decided
    assert verdict.allowed == safe, verdict.reasons()


@pytest.mark.parametrize("version", ["8.0.12", "8.3.11", "8.4.11-1"])
def test_drbd8_two_minors_of_one_resource(version: str) -> None:
    good = proc8_line(minor=0)
    assert guard8(proc8(good, proc8_line(minor=1), version=version), minors=(0, 1)).allowed
    verdict = guard8(proc8(good, proc8_line(minor=1, cs="SyncTarget", disk="Inconsistent"), version=version),
                     minors=(0, 1))
    assert not verdict.allowed
    assert "r0: connection to beta is SyncTarget (minor 1); needs Connected" in verdict.reasons()


def test_drbd8_st_field_and_unknown_flags() -> None:
    line = proc8_line(flags="r---").replace("ro:", "st:")
    assert guard8(proc8(line, version="8.0.12")).allowed
    assert not guard8(proc8(proc8_line(flags="?---"))).allowed  # neither running nor suspended: unknown


def test_drbd8_minors_unknown_is_undecided() -> None:
    runner = ScriptedRunner({"cibadmin": (0, CIB_EMPTY)})  # every drbdadm call fails
    deadline = Deadline(30)
    verdict = evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline,
                             reader=TextProcReader(runner, deadline, proc8(proc8_line())))
    assert not verdict.decided and not verdict.allowed
    assert "cannot tell which minors DRBD's configuration gives r0 on this node" in verdict.reasons()[0]
