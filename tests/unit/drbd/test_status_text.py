"""The text of ``drbdsetup status --verbose --statistics`` (drbd/status_text.py), read where
drbdsetup has no ``--json``: the same state, and the same guard verdict, as from the JSON.

The JSON is rendered by tests/unit/drbd/guard_world.py (drbdsetup's printf layout, checked
against the real samples elsewhere); the text by ``render_text`` below, written from the real
text samples in tests/fixtures/drbd (drbd84-status-verbose-ug84-home.txt shows the verbose
layout: resource line, +4 continuations, devices and connections at 2, peer devices at 4).
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable, List, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livemig.drbd.guard import evaluate_guard
from livemig.drbd.state import DrbdStateError
from livemig.drbd.status9 import parse_status_json
from livemig.drbd.status_text import parse_status_text
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.run import CommandResult
from tests.unit.drbd import guard_world as gw
from tests.unit.drbd.scripted import FIXTURES, ScriptedRunner, fixture

PROC9 = str(FIXTURES / "drbd9-proc-synthetic-version-only.txt")
JSON_ARGV = ["drbdsetup", "status", "all", "--json", "--verbose", "--statistics"]
NO_JSON = ("status: unrecognized option '--json'\n\nUSAGE: drbdsetup status {resource} [{options}]\n"
           "    [--verbose] [--statistics] [--color={always|auto|never}]\n")

Draw = Callable[[Any], Any]


# -- an independent text renderer ----------------------------------------------------------------

def _line(indent: int, words: Sequence[str], width: int) -> List[str]:
    """One entry's words, wrapped the way drbdsetup wraps them: continuation lines 4 deeper."""
    text = " ".join(words)
    if width <= 0 or len(text) + indent <= width:
        return [" " * indent + text]
    lines = textwrap.wrap(text, max(width - indent, 20), break_long_words=False, break_on_hyphens=False)
    return [" " * indent + lines[0]] + [" " * (indent + 4) + more for more in lines[1:]]


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def render_text(resources: Sequence[gw.Resource9], width: int = 0) -> str:
    blocks = []
    for r in resources:
        reasons = [word for word, on in (("user", r.suspended_user), ("no-data", r.suspended_no_data),
                                         ("fencing", r.suspended_fencing), ("quorum", r.suspended_quorum)) if on]
        lines = _line(0, [r.name, f"node-id:{r.node_id}", f"role:{r.role}",
                          f"suspended:{','.join(reasons) or 'no'}", "force-io-failures:no"], width)
        lines.append("    write-ordering:flush")
        for d in r.devices:
            lines += _line(2, [f"volume:{d.volume}", f"minor:{d.minor}", f"disk:{d.disk}",
                               f"client:{_yes(d.disk == 'Diskless')}", f"quorum:{_yes(d.quorum)}"], width)
            lines.append("      size:307152 read:0 written:0 al-writes:0 bm-writes:0 upper-pending:0")
            lines.append("      lower-pending:0 al-suspended:no blocked:no")
        for c in r.connections:
            lines += _line(2, [c.name, f"node-id:{c.node_id}", f"connection:{c.cstate}", f"role:{c.peer_role}",
                               "congested:no", "ap-in-flight:0", "rs-in-flight:0"], width)
            for p in c.peer_devices:
                lines += _line(4, [f"volume:{p.volume}", f"replication:{p.replication}",
                                   f"peer-disk:{p.peer_disk}", "peer-client:no", "resync-suspended:no"], width)
                lines.append(f"        received:0 sent:0 out-of-sync:{p.oos} pending:0 unacked:0")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


# -- states --------------------------------------------------------------------------------------

DISKS = ["UpToDate", "Inconsistent", "Outdated", "Diskless", "DUnknown", "Consistent", "Failed"]
CSTATES = ["Connected", "Connecting", "StandAlone", "Disconnecting", "NetworkFailure"]
ROLES = ["Primary", "Secondary", "Unknown"]
REPLICATION = ["Established", "SyncSource", "SyncTarget", "Off", "PausedSyncS", "WFBitMapT"]


@st.composite
def resources9(draw: Draw) -> Tuple[gw.Resource9, ...]:
    healthy = draw(st.booleans())  # half the states are safe: both verdicts are exercised

    def pick(good: str, others: List[str]) -> str:
        return good if healthy and draw(st.integers(0, 5)) else str(draw(st.sampled_from([good] + others)))

    minors = iter(draw(st.lists(st.integers(0, 1048575), min_size=6, max_size=6, unique=True)))
    resources = []
    for index in range(draw(st.integers(1, 2))):
        volumes = list(range(draw(st.integers(1, 3))))
        devices = tuple(gw.Device9(v, next(minors), disk=pick("UpToDate", DISKS),
                                   quorum=pick("yes", ["no"]) == "yes") for v in volumes)
        connections = []
        for number, name in enumerate(["beta", "gamma"][:draw(st.integers(1, 2))]):
            shown = volumes if draw(st.integers(0, 7)) else volumes[:-1]
            connections.append(gw.Connection9(
                number + 1, name, cstate=pick("Connected", CSTATES), peer_role=pick("Primary", ROLES),
                peer_devices=tuple(gw.PeerDevice9(v, replication=pick("Established", REPLICATION),
                                                  peer_disk=pick("UpToDate", DISKS),
                                                  oos=int(pick("0", ["4096", "1"]))) for v in shown)))
        reasons = [pick("no", ["yes"]) == "yes" for _ in range(4)]
        resources.append(gw.Resource9(f"r{index}", devices, tuple(connections), role=pick("Primary", ROLES),
                                      node_id=0, suspended_user=reasons[0], suspended_no_data=reasons[1],
                                      suspended_fencing=reasons[2], suspended_quorum=reasons[3]))
    return tuple(resources)


def verdict(resources: Sequence[gw.Resource9], json_works: bool, text: str = "") -> Any:
    status = gw.render_status9(resources, "9.2x")
    if json_works:
        runner = ScriptedRunner({"drbdsetup status all --json": (0, status)})
    else:
        runner = ScriptedRunner({"drbdsetup status all --json": CommandResult(JSON_ARGV, 20, "", NO_JSON),
                                 "drbdsetup status all --verbose": (0, text or render_text(resources))})
    deadline = Deadline(30)
    reader = DrbdReader(runner, deadline, proc_path=PROC9, by_res_dir="/nonexistent", node_name="alpha")
    cib = gw.render_cib([r.name for r in resources], (), "beta")
    return evaluate_guard([r.name for r in resources], "beta", runner=runner, deadline=deadline, reader=reader,
                          cib_reader=lambda _d: cib)


@settings(max_examples=80, deadline=None)
@given(resources9(), st.sampled_from(["9.6", "9.2x"]), st.sampled_from([0, 60, 80]))
def test_text_and_json_give_the_same_state(resources: Tuple[gw.Resource9, ...], layout: str, width: int) -> None:
    from_json = parse_status_json(gw.render_status9(resources, layout))
    from_text = parse_status_text(render_text(resources, width))
    assert from_text == from_json


@settings(max_examples=60, deadline=None)
@given(resources9())
def test_the_guard_decides_the_same_from_text(resources: Tuple[gw.Resource9, ...]) -> None:
    by_json = verdict(resources, json_works=True)
    by_text = verdict(resources, json_works=False)
    assert by_text.as_json() == by_json.as_json()


def test_both_verdicts_occur() -> None:
    """The property above compares allowed and refused verdicts alike (a healthy state is allowed)."""
    good = gw.Resource9("r0", (gw.Device9(0, 5),), (gw.Connection9(1, "beta", peer_devices=(gw.PeerDevice9(0),)),),
                        node_id=0)
    assert verdict([good], json_works=False).allowed
    sick = gw.Resource9("r0", (gw.Device9(0, 5),),
                        (gw.Connection9(1, "beta", peer_devices=(gw.PeerDevice9(0, oos=4096),)),), node_id=0)
    refused = verdict([sick], json_works=False)
    assert not refused.allowed and refused.decided


# -- the real samples ----------------------------------------------------------------------------

def test_the_84_verbose_sample() -> None:
    (home,) = parse_status_text(fixture("drbd84-status-verbose-ug84-home.txt"))
    assert (home.name, home.role, home.suspended) == ("home", "Secondary", False)
    assert [(v.volume, v.minor, v.disk) for v in home.volumes] == [(0, 0, "UpToDate")]
    (peer,) = home.peers
    assert (peer.name, peer.connection, peer.role) == ("peer", "Connected", "Secondary")
    assert [(v.volume, v.replication, v.disk, v.out_of_sync_kib) for v in peer.volumes] == [
        (0, "Established", "UpToDate", 0)]


@pytest.mark.parametrize("name, role, disk, peer, peer_disk, replication", [
    ("drbd84-status-text-ug84-home.txt", "Secondary", "UpToDate", "peer", "UpToDate", "Established"),
    ("drbd9-status-text-ug9-r0-inconsistent.txt", "Secondary", "Inconsistent", "bob", "Inconsistent", None),
    ("drbd9-status-text-salt-single-syncsource.txt", "Primary", "UpToDate", "opensuse-node2", "Inconsistent",
     "SyncSource"),
])
def test_the_plain_samples_leave_unknown_what_they_do_not_print(name: str, role: str, disk: str, peer: str,
                                                                peer_disk: str, replication: Any) -> None:
    """Without --verbose --statistics: no volume numbers, no connection state, no out-of-sync: all unknown."""
    (res,) = parse_status_text(fixture(name))
    assert res.role == role and res.suspended is None
    assert [(v.volume, v.disk) for v in res.volumes] == [(None, disk)]
    (p,) = res.peers
    assert (p.name, p.connection, p.node_id) == (peer, None, None)
    (pv,) = p.volumes
    assert (pv.disk, pv.replication, pv.out_of_sync_kib, pv.out_of_sync_unreadable) == (
        peer_disk, replication, None, True)


def test_a_plain_sample_is_refused_by_the_guard() -> None:
    """What the plain form leaves unknown makes the guard refuse, undecided (never allowed)."""
    text = fixture("drbd9-status-text-salt-single-syncsource.txt").replace("opensuse-node2", "beta")
    res = gw.Resource9("single", (gw.Device9(0, 5),), (gw.Connection9(1, "beta"),), node_id=0)
    result = verdict([res], json_works=False, text=text)
    assert not result.allowed


# -- failing closed ------------------------------------------------------------------------------

GOOD = render_text([gw.Resource9("r0", (gw.Device9(0, 5), gw.Device9(1, 6)),
                                 (gw.Connection9(1, "beta", peer_devices=(gw.PeerDevice9(0), gw.PeerDevice9(1))),),
                                 node_id=0)])


@pytest.mark.parametrize("old, new, why", [
    ("  volume:0 minor:5", "   volume:0 minor:5", "not in drbdsetup's layout"),
    ("    volume:0 replication", "  volume:0 replication", "a local device after a connection"),
    ("role:Primary suspended", "role:Primary role:Secondary suspended", "given twice"),
    ("congested:no", "congested", "is not key:value"),
    ("r0 node-id", "r0:x node-id", "no resource name"),
    ("write-ordering:flush", "\twrite-ordering:flush", "a tab"),
    ("role:Primary suspended", "role:\x1b[32mPrimary\x1b[0m suspended", "colour escapes"),
    ("volume:1 minor:6", "volume:0 minor:6", "devices lists 0 twice"),
    ("volume:1 replication", "volume:0 replication", "connection beta lists 0 twice"),
])
def test_anything_out_of_layout_is_refused(old: str, new: str, why: str) -> None:
    assert GOOD.count(old) == 1, old
    with pytest.raises(DrbdStateError, match=why):
        parse_status_text(GOOD.replace(old, new))


def test_a_resource_twice_or_glued_to_another_is_refused() -> None:
    with pytest.raises(DrbdStateError, match="lists 'r0' twice"):
        parse_status_text(GOOD + "\n" + GOOD)
    with pytest.raises(DrbdStateError, match="without an empty line"):
        parse_status_text(GOOD + GOOD.replace("r0", "r1"))
    with pytest.raises(DrbdStateError, match="no resource line before it"):
        parse_status_text("  volume:0 disk:UpToDate\n")


def test_unknown_values_stay_unknown() -> None:
    text = GOOD.replace("out-of-sync:0", "out-of-sync:lots", 1).replace("suspended:no", "suspended:?")
    (res,) = parse_status_text(text.replace("quorum:yes", "quorum:maybe", 1))
    assert res.suspended is None and res.volumes[0].quorum is None
    assert res.peers[0].volumes[0].out_of_sync_kib is None and res.peers[0].volumes[0].out_of_sync_unreadable


def test_the_text_form_is_read_only_when_json_is_refused() -> None:
    deadline = Deadline(30)
    failing = ScriptedRunner({"drbdsetup status all --json": CommandResult(JSON_ARGV, 10, "", "r0: No such resource\n"),
                              "drbdsetup status all --verbose": (0, GOOD)})
    with pytest.raises(DrbdStateError, match="No such resource"):
        DrbdReader(failing, deadline, proc_path=PROC9).status9()
    assert [c[3] for c in failing.calls] == ["--json"]
    refusing = ScriptedRunner({"drbdsetup status all --json": CommandResult(JSON_ARGV, 20, "", NO_JSON),
                               "drbdsetup status all --verbose": (0, GOOD)})
    (res,) = DrbdReader(refusing, deadline, proc_path=PROC9).status9()
    assert res.name == "r0" and refusing.calls[-1] == ["drbdsetup", "status", "all", "--verbose", "--statistics"]
    garbled = ScriptedRunner({"drbdsetup status all --json": CommandResult(JSON_ARGV, 20, "", NO_JSON),
                              "drbdsetup status all --verbose": (0, "r0 role:Primary\n  ???\n")})
    with pytest.raises(DrbdStateError):
        DrbdReader(garbled, deadline, proc_path=PROC9).status9()
