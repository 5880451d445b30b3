"""The guard's migration-window mode, quorum survival and diskless target (issue 17), rule by rule."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Dict, List, Optional

import pytest

from livemig.drbd.guard import GuardVerdict, evaluate_guard
from livemig.drbd.modes import ALL_MODES, MODE_WINDOW, MODES, PHASE_DURING
from livemig.drbd.quorum import quorum_needed, survives_without
from livemig.drbd.status9 import parse_show_json, parse_status_json, quorum_word
from livemig.drbd.status_text import parse_status_text
from livemig.ocf.deadline import Deadline
from tests.unit.drbd.builders import TextProcReader, drbd8_answers, proc8, proc8_line
from tests.unit.drbd.cluster9 import (
    BETA,
    CIB_EMPTY,
    GAMMA,
    TIEBREAKER,
    Local,
    Peer,
    reader_for,
    runner_for,
    show_doc,
    show_json,
    status_doc,
    status_json,
)
from tests.unit.drbd.scripted import ScriptedRunner

THREE = Local((BETA, GAMMA), quorum="majority")
TWO = Local((BETA,), quorum="majority")


def guard(local: Local, mode: str = MODE_WINDOW, status: Optional[str] = None, show: Optional[str] = None,
          **kwargs: Any) -> GuardVerdict:
    runner = runner_for(status_json(local) if status is None else status,
                        show_json(local) if show is None else show)
    deadline = Deadline(30)
    return evaluate_guard([local.name], "beta", mode, runner=runner, deadline=deadline,
                          reader=reader_for(runner, deadline), **kwargs)


def failed(verdict: GuardVerdict) -> Dict[str, str]:
    return {c.check: c.detail for c in verdict.checks if not c.ok}


def passed(verdict: GuardVerdict) -> Dict[str, str]:
    return {c.check: c.detail for c in verdict.checks if c.ok}


# -- modes --------------------------------------------------------------------------------------------


def test_mode_constants() -> None:
    assert MODE_WINDOW == "migration-window"
    assert MODES == ("dual-primary", "auto-promote")          # the agent's drbd_guard values, unchanged
    assert ALL_MODES == MODES + (MODE_WINDOW,)


def test_cli_accepts_the_window_mode() -> None:
    from livemig.cli.main import build_parser
    args = build_parser().parse_args(["guard", "--peer", "beta", "--resource", "r0", "--mode", MODE_WINDOW])
    assert args.mode == MODE_WINDOW


def test_unknown_phase_is_undecided() -> None:
    verdict = guard(THREE, phase="after")
    assert not verdict.allowed and not verdict.decided
    assert failed(verdict)["mode"] == "unknown phase 'after'; needs one of before, during"


# -- before ---------------------------------------------------------------------------------------------


def test_before_healthy_three_nodes_is_allowed() -> None:
    verdict = guard(THREE)
    assert verdict.allowed, verdict.reasons()
    ok = passed(verdict)
    assert ok["peer-role"] == "beta role Secondary"
    assert ok["allow-two-primaries"] == "connection to beta does not allow two primaries"
    assert ok["quorum-survival"] == "quorum majority kept without beta on every volume"
    assert "auto-promote" not in ok and "fence-constraint" in ok


def test_before_target_primary_is_two_primaries_outside_a_migration() -> None:
    verdict = guard(THREE.with_target(role="Primary"))
    assert not verdict.allowed and verdict.decided
    assert failed(verdict) == {"peer-role": "beta is already Primary: two primaries outside a migration; "
                                            "needs beta Secondary"}


def test_before_leftover_allowance_is_refused_with_how_to_clear_it() -> None:
    verdict = guard(THREE.with_target(allow_two_primaries=True))
    assert not verdict.allowed and verdict.decided
    assert failed(verdict) == {"allow-two-primaries": (
        "connection to beta allows two primaries at runtime: a leftover allowance from an earlier migration: "
        "clear it with drbdsetup net-options r0 1 --allow-two-primaries=no; needs no")}


@pytest.mark.parametrize("value", ["maybe", 1, None, [True]])
def test_before_unreadable_allowance_is_undecided(value: Any) -> None:
    doc = show_doc(THREE)
    doc[0]["connections"][0]["net"]["allow-two-primaries"] = value
    verdict = guard(THREE, show=json.dumps(doc))
    assert not verdict.allowed and not verdict.decided
    assert "allow-two-primaries" in failed(verdict)


def test_before_allowance_key_missing_is_undecided() -> None:
    doc = show_doc(THREE)
    del doc[0]["connections"][0]["net"]["allow-two-primaries"]
    verdict = guard(THREE, show=json.dumps(doc))
    assert not verdict.decided and "allow-two-primaries" in failed(verdict)


@pytest.mark.parametrize("change, check", [
    ({"connected": False}, "connection"),
    ({"disk": "Outdated"}, "peer-disk"),
    ({"disk": "Inconsistent", "replication": "SyncSource"}, "replication"),
    ({"oos": 4096}, "out-of-sync"),
    ({"role": "Unknown"}, "peer-role"),
])
def test_before_needs_target_connected_uptodate_in_sync(change: Dict[str, Any], check: str) -> None:
    verdict = guard(THREE.with_target(**change))
    assert not verdict.allowed
    assert check in failed(verdict)


@pytest.mark.parametrize("change, check", [
    ({"role": "Secondary"}, "local-role"),
    ({"disk": "Outdated"}, "local-disk"),
    ({"quorum_flag": False}, "local-quorum"),
    ({"suspended": True}, "local-io"),
])
def test_before_local_health_as_today(change: Dict[str, Any], check: str) -> None:
    verdict = guard(replace(THREE, **change))
    assert not verdict.allowed and check in failed(verdict)


def test_auto_promote_setting_is_irrelevant_in_the_window_mode() -> None:
    assert guard(replace(THREE, auto_promote=False)).allowed


def test_window_mode_on_drbd8_is_refused() -> None:
    runner = ScriptedRunner({**drbd8_answers(hosts=("alpha", "beta")), "cibadmin": (0, CIB_EMPTY)})
    deadline = Deadline(30)
    reader = TextProcReader(runner, deadline, proc8(proc8_line(peer_role="Secondary")))
    verdict = evaluate_guard(["r0"], "beta", MODE_WINDOW, runner=runner, deadline=deadline, reader=reader)
    assert not verdict.allowed
    assert failed(verdict) == {"mode": "migration-window mode needs DRBD 9; this node runs DRBD 8.4.11-1; "
                                       "use dual-primary"}
    assert not any(argv[:2] == ["drbdsetup", "show"] for argv in runner.calls)


# -- during ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["Primary", "Secondary"])
@pytest.mark.parametrize("allowance", [True, False])
def test_during_target_secondary_or_primary_allowance_not_looked_at(role: str, allowance: bool) -> None:
    verdict = guard(THREE.with_target(role=role, allow_two_primaries=allowance), phase=PHASE_DURING)
    assert verdict.allowed, verdict.reasons()
    assert "allow-two-primaries" not in {c.check for c in verdict.checks}


def test_during_still_refuses_a_lost_target_and_lost_quorum() -> None:
    assert "connection" in failed(guard(THREE.with_target(connected=False, role="Primary"), phase=PHASE_DURING))
    lost = guard(Local((BETA, replace(GAMMA, connected=False)), quorum="majority"), phase=PHASE_DURING)
    assert "quorum-survival" in failed(lost)


# -- quorum survival --------------------------------------------------------------------------------------


def test_two_node_quorum_is_refused_naming_the_missing_tiebreaker() -> None:
    verdict = guard(TWO)
    assert not verdict.allowed and verdict.decided
    assert failed(verdict) == {"quorum-survival": (
        "volume 0: without beta this node would have 1 of 2 votes (1 UpToDate), needs 2 (quorum majority): the "
        "resource has no node besides this one and beta, so if the link to beta breaks during the migration "
        "this node loses quorum; needs a third node as tiebreaker (a diskless node is enough), or the "
        "operator's allow_two_node_quorum")}


def test_two_node_quorum_allowed_by_the_operator() -> None:
    verdict = guard(TWO, allow_two_node_quorum=True)
    assert verdict.allowed, verdict.reasons()
    assert passed(verdict)["quorum-survival"] == (
        "volume 0: without beta this node would have 1 of 2 votes (1 UpToDate), needs 2 (quorum majority): a "
        "two-node resource, allowed by allow_two_node_quorum")


def test_allow_two_node_quorum_does_not_cover_three_nodes() -> None:
    local = Local((BETA, replace(GAMMA, connected=False)), quorum="majority")
    verdict = guard(local, allow_two_node_quorum=True)
    assert failed(verdict)["quorum-survival"] == (
        "volume 0: without beta this node would have 1 of 3 votes (1 UpToDate), needs 2 (quorum majority), so "
        "if the link to beta breaks during the migration this node loses quorum; needs the other peers connected")


@pytest.mark.parametrize("local, allowed", [
    (Local((BETA, TIEBREAKER), quorum="majority"), True),                           # the diskless tiebreaker
    (Local((BETA, replace(TIEBREAKER, connected=False)), quorum="majority"), False),
    (Local((BETA, TIEBREAKER), quorum="majority", quorum_flag=False), False),       # the tiebreaker keeps, never gives
    (Local((BETA, GAMMA), quorum="all"), False),
    (Local((BETA, GAMMA), quorum="2"), True),
    (Local((BETA, GAMMA), quorum="3"), False),
    (Local((BETA,), quorum="1"), True),
    (Local((BETA, GAMMA, Peer("delta", 3)), quorum="majority"), True),              # 3 of 4
    (Local((BETA, GAMMA, Peer("delta", 3, connected=False)), quorum="majority"), False),  # 2 of 4
    (Local((BETA, GAMMA, Peer("delta", 3, client=True)), quorum="majority"), True),
    (Local((BETA, replace(GAMMA, disk="Outdated")), quorum="majority"), True),      # connected: a vote
    (Local((BETA, replace(GAMMA, disk="Outdated")), quorum="majority", redundancy="2"), False),
    (Local((BETA, GAMMA), quorum="majority", redundancy="2"), True),
    (Local((BETA, replace(GAMMA, allow_remote_read=False)), quorum="majority"), False),  # DRBD leaves it out
    (Local((BETA, replace(GAMMA, client=True, connected=True)), quorum="majority"), True),
])
def test_quorum_majority_rule(local: Local, allowed: bool) -> None:
    verdict = guard(local)
    assert verdict.allowed == allowed, verdict.reasons()
    if not allowed:
        assert set(failed(verdict)) <= {"quorum-survival", "local-quorum"}


@pytest.mark.parametrize("setting", [None, "off"])
def test_quorum_not_configured_is_said_in_an_ok_check(setting: Optional[str]) -> None:
    verdict = guard(replace(TWO, quorum=setting))
    assert verdict.allowed
    assert passed(verdict)["quorum-survival"] == (
        f"quorum not configured (options quorum {'absent' if setting is None else 'off'}): no quorum to lose")


@pytest.mark.parametrize("value", ["majorty", True, [], {}, -1, "99999", 3.0, ""])
def test_unreadable_quorum_option_is_undecided(value: Any) -> None:
    doc = show_doc(THREE)
    doc[0]["options"]["quorum"] = value
    verdict = guard(THREE, show=json.dumps(doc))
    assert not verdict.allowed and not verdict.decided
    assert "quorum-survival" in failed(verdict)


@pytest.mark.parametrize("mutate", [
    lambda d: d[0].pop("options"),
    lambda d: d[0].__setitem__("options", "quorum majority"),
    lambda d: d[0]["options"].__setitem__("quorum-minimum-redundancy", "most"),
    lambda d: d[0]["connections"][1].pop("net"),
    lambda d: d[0]["connections"][1]["net"].__setitem__("allow-remote-read", "sometimes"),
    lambda d: d[0]["connections"].pop(1),                       # status lists gamma, show does not
    lambda d: d[0]["connections"].append(dict(d[0]["connections"][1], _peer_node_id=7)),  # and the other way
    lambda d: d.clear(),                                        # the resource not in show at all
])
def test_mutated_show_document_is_undecided(mutate: Any) -> None:
    doc = show_doc(THREE)
    mutate(doc)
    verdict = guard(THREE, show=json.dumps(doc))
    assert not verdict.allowed and not verdict.decided, verdict.checks


def test_show_failing_is_undecided_in_the_window_mode() -> None:
    runner = ScriptedRunner({"drbdsetup status": (0, status_json(THREE)), "cibadmin": (0, CIB_EMPTY),
                             "drbdsetup show": (10, "")})
    deadline = Deadline(30)
    verdict = evaluate_guard(["r0"], "beta", MODE_WINDOW, runner=runner, deadline=deadline,
                             reader=reader_for(runner, deadline))
    assert not verdict.decided and "drbd-settings" in failed(verdict)


def test_dual_primary_does_not_read_show_unless_asked_for_quorum() -> None:
    local = replace(TWO, peers=(replace(BETA, role="Primary", allow_two_primaries=True),))
    runner = runner_for(status_json(local), show_json(local))
    deadline = Deadline(30)
    verdict = evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline, reader=reader_for(runner, deadline))
    assert verdict.allowed and "quorum-survival" not in {c.check for c in verdict.checks}
    assert not any(argv[:2] == ["drbdsetup", "show"] for argv in runner.calls)
    verdict = evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline, reader=reader_for(runner, deadline),
                             check_quorum=True)
    assert "quorum-survival" in failed(verdict)
    assert evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline, reader=reader_for(runner, deadline),
                          check_quorum=True, allow_two_node_quorum=True).allowed


def test_window_mode_can_leave_quorum_out() -> None:
    assert guard(TWO, check_quorum=False).allowed


# -- diskless target ----------------------------------------------------------------------------------


DISKLESS_T = Local((replace(BETA, client=True), GAMMA), quorum="majority")


def test_diskless_target_refused_by_default() -> None:
    verdict = guard(DISKLESS_T)
    assert not verdict.allowed and verdict.decided
    assert failed(verdict) == {"peer-disk": (
        "volume 0: beta is diskless (disk Diskless, a DRBD client); needs UpToDate (a diskless target only on "
        "DRBD 9 and where the operator allows it: allow_diskless_target)")}


def test_diskless_target_allowed_by_the_operator_over_this_nodes_uptodate_disk() -> None:
    verdict = guard(DISKLESS_T, allow_diskless_target=True)
    assert verdict.allowed, verdict.reasons()
    assert passed(verdict)["peer-disk"] == ("volume 0: beta is diskless (disk Diskless, a DRBD client): its I/O is "
                                            "served by this node's UpToDate disk (diskless target allowed)")


def test_diskless_target_dual_primary_mode_too() -> None:
    local = replace(DISKLESS_T, peers=(replace(DISKLESS_T.peers[0], role="Primary"), GAMMA))
    assert not guard(local, mode="dual-primary").allowed
    assert guard(local, mode="dual-primary", allow_diskless_target=True).allowed


def test_diskless_target_needs_this_node_uptodate() -> None:
    verdict = guard(replace(DISKLESS_T, disk="Outdated"), allow_diskless_target=True)
    assert failed(verdict)["peer-disk"].endswith("and this node's disk is Outdated; needs this node UpToDate to "
                                                 "serve it")


def test_diskless_target_keeps_quorum_through_the_other_diskful_peer() -> None:
    lost = Local((replace(BETA, client=True), replace(GAMMA, connected=False)), quorum="majority")
    verdict = guard(lost, allow_diskless_target=True)
    assert set(failed(verdict)) == {"quorum-survival"}


def test_client_with_a_disk_is_a_contradiction() -> None:
    local = Local((replace(BETA, client=True, disk="UpToDate"), GAMMA), quorum="majority")
    verdict = guard(local, allow_diskless_target=True)
    assert "a client whose disk is not Diskless" in failed(verdict)["peer-disk"]


def test_diskless_peer_on_drbd8_is_refused_even_when_allowed() -> None:
    runner = ScriptedRunner({**drbd8_answers(hosts=("alpha", "beta")), "cibadmin": (0, CIB_EMPTY)})
    deadline = Deadline(30)
    reader = TextProcReader(runner, deadline, proc8(proc8_line(peer_disk="Diskless")))
    verdict = evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline, reader=reader,
                             allow_diskless_target=True)
    assert "needs UpToDate (a diskless target only on DRBD 9" in failed(verdict)["peer-disk"]


# -- the readers and the rule alone ----------------------------------------------------------------------


def test_status_readers_take_client_flags() -> None:
    (res,) = parse_status_json(status_json(DISKLESS_T))
    assert res.volumes[0].client is False and res.peers[0].volumes[0].peer_client is True
    text = ("r0 node-id:0 role:Primary suspended:no\n"
            "  volume:0 minor:100 disk:UpToDate client:no quorum:yes\n"
            "  beta node-id:1 connection:Connected role:Secondary\n"
            "    volume:0 replication:Established peer-disk:Diskless peer-client:yes\n"
            "        received:0 sent:0 out-of-sync:0\n")
    (res,) = parse_status_text(text)
    assert res.volumes[0].client is False and res.peers[0].volumes[0].peer_client is True


@pytest.mark.parametrize("options, word", [
    ({}, "absent"), ({"quorum": "off"}, "off"), ({"quorum": "majority"}, "majority"), ({"quorum": "all"}, "all"),
    ({"quorum": "2"}, "2"), ({"quorum": 2}, "2"), ({"quorum": "0"}, "off"), ({"quorum": True}, None),
    ({"quorum": "Majority"}, None), ({"quorum": None}, None),
])
def test_quorum_word(options: Dict[str, Any], word: Optional[str]) -> None:
    assert quorum_word(options, "quorum") == word
    assert quorum_word("not an object", "quorum") is None


def test_show_reader_takes_quorum_options_and_remote_read() -> None:
    local = replace(THREE, redundancy="majority", peers=(BETA, replace(GAMMA, allow_remote_read=False)))
    (res,) = parse_show_json(show_json(local))
    assert (res.quorum, res.quorum_minimum_redundancy) == ("majority", "majority")
    assert [c.allow_remote_read for c in res.connections] == [True, False]
    doc = show_doc(local)
    del doc[0]["connections"][0]["net"]["allow-remote-read"]          # drbd-utils without the option
    (res,) = parse_show_json(json.dumps(doc))
    assert res.connections[0].allow_remote_read is True


@pytest.mark.parametrize("setting, voters, needed", [
    ("majority", 2, 2), ("majority", 3, 2), ("majority", 4, 3), ("majority", 5, 3), ("all", 3, 3), ("2", 5, 2),
    ("off", 3, 0),
])
def test_quorum_needed(setting: str, voters: int, needed: int) -> None:
    assert quorum_needed(setting, voters) == needed


def test_survives_without_counts_an_unknown_kind_the_hardest_way() -> None:
    doc = status_doc(Local((BETA, TIEBREAKER), quorum="majority"))
    del doc[0]["connections"][1]["peer_devices"][0]["peer-client"]    # Diskless, but whether on purpose is unknown
    (entry,) = parse_status_json(json.dumps(doc))
    (show,) = parse_show_json(show_json(Local((BETA, TIEBREAKER), quorum="majority")))
    result = survives_without(entry, entry.peers[0], show)
    assert not result.ok and result.decided
    assert result.detail.startswith("volume 0: without beta this node would have 1 of 3 votes")


def test_every_volume_is_counted() -> None:
    local = Local((BETA, GAMMA), quorum="majority", volumes=(0, 1))
    doc = status_doc(local)
    doc[0]["connections"][1]["peer_devices"][1].update({"replication-state": "Off", "peer-disk-state": "DUnknown"})
    verdict = guard(local, status=json.dumps(doc))
    assert failed(verdict)["quorum-survival"].startswith("volume 1: without beta")


def all_checks(verdict: GuardVerdict) -> List[str]:
    return [c.check for c in verdict.checks]


def test_check_order_and_names() -> None:
    assert all_checks(guard(THREE)) == [
        "local-role", "local-io", "local-disk", "local-quorum", "connection", "peer-role", "peer-disk",
        "replication", "out-of-sync", "allow-two-primaries", "quorum-survival", "fence-constraint"]
