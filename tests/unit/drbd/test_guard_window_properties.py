"""Property tests of the guard on random DRBD 9 resources of 2-4 nodes, against an oracle of plain rules.

States are generated as a model (tests.unit.drbd.cluster9: roles, disk
states, connection states, quorum options, runtime allowances), rendered as
``drbdsetup status --json`` and ``drbdsetup show --json`` and read by the
guard through its real parsers. :func:`oracle` decides from the model alone,
with DRBD's rules written out again here (it calls no livemig code):

- every well-formed state: the guard allows exactly what the oracle allows;
- one key of a document deleted, or given a value of the wrong type: the
  guard never allows what the oracle refuses for the original state, and
  refuses outright where the key is one the decision needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Callable, List, Optional, Tuple

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from livemig.drbd.guard import GuardVerdict, evaluate_guard
from livemig.ocf.deadline import Deadline
from tests.unit.drbd.cluster9 import Local, Peer, reader_for, runner_for, show_doc, status_doc

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
NAMES = ("beta", "gamma", "delta")


@dataclass(frozen=True)
class Case:
    local: Local
    mode: str
    phase: str
    check_quorum: Optional[bool]
    allow_diskless: bool
    allow_two_node: bool


# -- the oracle: DRBD's rules, written out again -----------------------------------------------------------


def needed(setting: Optional[str], voters: int) -> int:
    if setting == "majority":
        return voters // 2 + 1
    if setting == "all":
        return voters
    if setting in (None, "off"):
        return 0
    return int(setting)


def has_quorum(local: Local, lost: Optional[Peer]) -> bool:
    """drbd_state.c calc_quorum() from this node, with ``lost`` disconnected."""
    voters = votes = 1  # this node: diskful (UpToDate or Outdated in these states)
    up_to_date = 1 if local.disk == "UpToDate" else 0
    diskless = diskless_all = 0
    for peer in local.peers:
        if not peer.allow_remote_read:
            continue
        up = peer.connected and peer is not lost
        if peer.client:
            diskless_all += 1
            diskless += up
        else:
            voters += 1
            votes += up
            up_to_date += up and peer.disk_state == "UpToDate"
    need, redundancy = needed(local.quorum, voters), needed(local.redundancy, voters)
    if votes >= need and up_to_date >= redundancy:
        return True
    return (voters % 2 == 0 and votes == need - 1 and up_to_date >= redundancy and local.quorum_flag
            and diskless >= diskless_all // 2 + 1)


def oracle(case: Case) -> bool:
    local, target = case.local, case.local.peers[0]
    before = case.mode == "migration-window" and case.phase == "before"
    if local.role != "Primary" or local.suspended or local.disk != "UpToDate" or not local.quorum_flag:
        return False
    if not target.connected or target.replication_state != "Established" or target.oos != 0:
        return False
    roles = ["Secondary"] if before else ["Primary"] if case.mode == "dual-primary" else ["Primary", "Secondary"]
    if target.role not in roles:
        return False
    if (target.client and not case.allow_diskless) or (not target.client and target.disk_state != "UpToDate"):
        return False
    if case.mode == "auto-promote" and not (target.allow_two_primaries and local.auto_promote):
        return False
    if before and target.allow_two_primaries:
        return False
    quorum_on = case.mode == "migration-window" if case.check_quorum is None else case.check_quorum
    if quorum_on and local.quorum not in (None, "off") and not has_quorum(local, lost=target):
        return case.allow_two_node and len(local.peers) == 1
    return True


# -- states --------------------------------------------------------------------------------------------------


def mostly(value: Any, *others: Any) -> Any:
    """A strategy giving ``value`` most of the time (the target is mostly healthy, so that the rest matters)."""
    return st.sampled_from([value] * 10 + list(others))


@st.composite
def peers(draw: Any, node_id: int, mode: str = "", phase: str = "") -> Peer:
    target = node_id == 1
    client = draw(st.sampled_from([False, False, False, True]) if target else st.booleans())
    connected = draw(mostly(True, False) if target else st.sampled_from([True, True, True, False]))
    disk = replication = None
    if connected and not client:
        disk = draw(mostly("UpToDate", "Outdated", "Inconsistent") if target
                    else st.sampled_from(["UpToDate", "UpToDate", "Outdated", "Inconsistent"]))
        replication = draw(mostly(None, "SyncSource") if target else st.sampled_from([None, None, "SyncSource"]))
    role = st.sampled_from(["Secondary", "Primary"])
    allowance = st.booleans()
    if target:  # mostly what the mode wants, so that the other conditions get their turn
        role = mostly("Primary", "Secondary") if mode == "dual-primary" else (
            mostly("Secondary", "Primary") if phase == "before" else role)
        allowance = mostly(True, False) if mode == "auto-promote" else (
            mostly(False, True) if phase == "before" else allowance)
    return Peer(NAMES[node_id - 1], node_id, client=client, connected=connected,
                role=draw(role), disk=disk, replication=replication,
                oos=draw(mostly(0, 4096)), allow_two_primaries=draw(allowance),
                allow_remote_read=draw(st.sampled_from([True, True, True, False])))


@st.composite
def cases(draw: Any) -> Case:
    mode, phase = draw(st.sampled_from([("migration-window", "before"), ("migration-window", "before"),
                                        ("migration-window", "during"), ("dual-primary", "before"),
                                        ("auto-promote", "before")]))
    count = draw(st.integers(min_value=1, max_value=3))
    local = Local(tuple(draw(peers(i, mode, phase)) for i in range(1, count + 1)),
                  role=draw(mostly("Primary", "Secondary")),
                  disk=draw(mostly("UpToDate", "Outdated")),
                  suspended=draw(mostly(False, True)),
                  quorum=draw(st.sampled_from([None, "off", "majority", "majority", "majority", "all", "1", "2",
                                               "3"])),
                  redundancy=draw(st.sampled_from([None, None, None, "off", "1", "2", "majority"])),
                  auto_promote=draw(mostly(True, False) if mode == "auto-promote" else st.booleans()),
                  volumes=draw(st.sampled_from([(0,), (0,), (0, 1)])))
    now = local.quorum in (None, "off") or has_quorum(local, lost=None)
    local = replace(local, quorum_flag=now != draw(mostly(False, True)))
    check_quorum = draw(st.sampled_from([None, True, False]))
    return Case(local, mode, phase, check_quorum, draw(st.booleans()), draw(st.booleans()))


def run(case: Case, status: Optional[str] = None, show: Optional[str] = None) -> GuardVerdict:
    runner = runner_for(status if status is not None else json.dumps(status_doc(case.local)),
                        show if show is not None else json.dumps(show_doc(case.local)))
    deadline = Deadline(30)
    return evaluate_guard([case.local.name], "beta", case.mode, runner=runner, deadline=deadline,
                          reader=reader_for(runner, deadline), phase=case.phase, check_quorum=case.check_quorum,
                          allow_diskless_target=case.allow_diskless, allow_two_node_quorum=case.allow_two_node)


def explain(case: Case, verdict: GuardVerdict) -> str:
    return f"{case}\n" + "\n".join(f"  {c.check} ok={c.ok}: {c.detail}" for c in verdict.checks)


@SETTINGS
@given(cases())
def test_well_formed_states_agree_with_the_oracle(case: Case) -> None:
    verdict = run(case)
    assert verdict.allowed == oracle(case), explain(case, verdict)
    assert verdict.decided, explain(case, verdict)


def test_the_generator_reaches_allowed_states_of_every_kind() -> None:
    """Not vacuous: safe states with a tiebreaker, a diskless target, three diskful nodes are generated."""
    def quorum_kept(case: Case) -> bool:
        return (oracle(case) and case.mode == "migration-window" and case.phase == "before"
                and case.local.quorum == "majority")
    for extra in (lambda c: len(c.local.peers) == 2 and c.local.peers[1].client and c.local.peers[1].connected,
                  lambda c: c.local.peers[0].client,
                  lambda c: len(c.local.peers) == 3):
        found = find(cases(), lambda c, extra=extra: quorum_kept(c) and extra(c),
                     settings=settings(max_examples=5000, database=None, derandomize=True))
        assert run(found).allowed, found


# -- mutated documents ------------------------------------------------------------------------------------------

WRONG = {"str": [7, None, [], True], "bool": [7, None, [], "maybe"], "int": ["0", None, 1.5, True],
         "obj": ["x", None, [], 3], "list": ["x", None, {}, 3]}
Path = Tuple[Any, ...]
Applies = Callable[[Case], bool]


def always(case: Case) -> bool:
    return True


def quorum_applies(case: Case) -> bool:
    on = case.mode == "migration-window" if case.check_quorum is None else case.check_quorum
    return on and case.local.quorum not in (None, "off")


def show_read(case: Case) -> bool:
    return case.mode != "dual-primary" or case.check_quorum is True


#: (document, path, type, the decision needs it: a deletion or wrong type must refuse)
KEYS: List[Tuple[str, Path, str, Applies]] = [
    ("status", (0, "role"), "str", always),
    ("status", (0, "suspended"), "bool", always),
    ("status", (0, "name"), "str", always),
    ("status", (0, "devices"), "list", always),
    ("status", (0, "devices", 0, "disk-state"), "str", always),
    ("status", (0, "devices", 0, "quorum"), "bool", always),
    ("status", (0, "devices", 0, "client"), "bool", lambda c: False),
    ("status", (0, "connections"), "list", always),
    ("status", (0, "connections", 0, "name"), "str", always),
    ("status", (0, "connections", 0, "connection-state"), "str", always),
    ("status", (0, "connections", 0, "peer-role"), "str", always),
    ("status", (0, "connections", 0, "peer_devices"), "list", always),
    ("status", (0, "connections", 0, "peer_devices", 0, "replication-state"), "str", always),
    ("status", (0, "connections", 0, "peer_devices", 0, "peer-disk-state"), "str", always),
    ("status", (0, "connections", 0, "peer_devices", 0, "out-of-sync"), "int", always),
    ("status", (0, "connections", 0, "peer_devices", 0, "peer-client"), "bool", lambda c: False),
    ("status", (0, "connections", 0, "peer-node-id"), "int",
     lambda c: c.mode == "auto-promote" or (c.mode == "migration-window" and c.phase == "before")
     or quorum_applies(c)),
    ("status", (0, "connections", -1, "name"), "str", always),
    ("status", (0, "connections", -1, "peer-node-id"), "int", quorum_applies),
    ("status", (0, "connections", -1, "connection-state"), "str", lambda c: False),
    ("status", (0, "connections", -1, "peer_devices", 0, "peer-client"), "bool", lambda c: False),
    ("status", (0, "connections", -1, "peer_devices", 0, "peer-disk-state"), "str", lambda c: False),
    ("show", (0, "resource"), "str", show_read),
    ("show", (0, "options"), "obj", lambda c: quorum_applies(c) or c.mode == "auto-promote"),
    ("show", (0, "options", "quorum"), "str", quorum_applies),
    ("show", (0, "options", "quorum-minimum-redundancy"), "str", quorum_applies),
    ("show", (0, "options", "auto-promote"), "bool", lambda c: c.mode == "auto-promote"),
    ("show", (0, "connections", 0, "_peer_node_id"), "int", show_read),
    ("show", (0, "connections", -1, "_peer_node_id"), "int", show_read),
    ("show", (0, "connections", 0, "net"), "obj",
     lambda c: c.mode == "auto-promote" or (c.mode == "migration-window" and c.phase == "before")
     or quorum_applies(c)),
    ("show", (0, "connections", -1, "net"), "obj", quorum_applies),
    ("show", (0, "connections", 0, "net", "allow-two-primaries"), "bool",
     lambda c: c.mode == "auto-promote" or (c.mode == "migration-window" and c.phase == "before")),
    ("show", (0, "connections", -1, "net", "allow-remote-read"), "bool", quorum_applies),
]
#: Deleting these is not a refusal by definition: absent means DRBD's default (quorum off,
#: quorum-minimum-redundancy off, allow-remote-read yes), documented in docs/drbd-guard.md.
ABSENT_IS_DEFAULT = {("options", "quorum"), ("options", "quorum-minimum-redundancy"), ("net", "allow-remote-read")}


def mutate(doc: Any, path: Path, value: Any, delete: bool) -> bool:
    """Change ``doc`` at ``path``; False when the path is not there (nothing to mutate)."""
    node = doc
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    last = path[-1]
    if isinstance(node, dict) and last not in node:
        return False
    if isinstance(node, list) and not -len(node) <= last < len(node):
        return False
    if delete:
        if isinstance(node, list):
            return False
        del node[last]
    else:
        node[last] = value
    return True


@SETTINGS
@given(cases(), st.sampled_from(KEYS), st.integers(min_value=-1, max_value=3))
def test_a_deleted_or_mistyped_key_never_allows_more(case: Case, key: Tuple[str, Path, str, Applies],
                                                     choice: int) -> None:
    which, path, kind, needed_for = key
    docs = {"status": status_doc(case.local), "show": show_doc(case.local)}
    delete = choice < 0
    if not mutate(docs[which], path, None if delete else WRONG[kind][choice], delete):
        return
    verdict = run(case, status=json.dumps(docs["status"]), show=json.dumps(docs["show"]))
    change = f"{which} {path} {'deleted' if delete else f'= {WRONG[kind][choice]!r}'}"
    assert not verdict.allowed or oracle(case), f"{change}\n{explain(case, verdict)}"
    if needed_for(case) and not (delete and tuple(path[-2:]) in ABSENT_IS_DEFAULT):
        assert not verdict.allowed, f"{change}\n{explain(case, verdict)}"
