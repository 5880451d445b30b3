"""The guard's target selection, bounded wait, verdict shape, and the calls it makes."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from livemig.drbd.guard import GuardCheck, GuardVerdict, evaluate_guard, select_target_peer
from livemig.drbd.state import PeerState
from livemig.ocf.deadline import Deadline
from livemig.run import CommandResult, CommandRunner
from tests.unit.drbd.builders import PROC9, TextProcReader, status9, status9_doc
from tests.unit.drbd.scripted import ScriptedRunner, fixture

CIB_EMPTY = fixture("cib-synthetic-empty.xml")


def peers(*names: str) -> List[PeerState]:
    return [PeerState(name=n, node_id=i, connection="Connected", role="Primary") for i, n in enumerate(names)]


@pytest.mark.parametrize("names, target, mapping, expected", [
    (["beta"], "beta", {}, "beta"),
    (["beta"], "beta.example.com", {}, "beta"),
    (["beta.example.com"], "beta", {}, "beta.example.com"),
    (["drbd-b"], "beta", {}, None),                       # the only peer is not guessed to be the target
    (["drbd-b"], "beta", {"beta": "drbd-b"}, "drbd-b"),   # ... unless mapped
    (["drbd-b"], "beta.example.com", {"beta": "drbd-b"}, "drbd-b"),
    (["alpha", "beta", "gamma"], "beta", {}, "beta"),
    (["alpha", "gamma"], "beta", {}, None),               # several peers, none named beta
    (["alpha", "gamma"], "beta", {"beta": "gamma"}, "gamma"),
    (["drbd-b"], "beta", {"beta": "other"}, None),       # an explicit mapping must match
    (["beta", "beta.example.com"], "beta", {}, None),     # ambiguous
    ([], "beta", {}, None),
])
def test_select_target_peer(names: List[str], target: str, mapping: Dict[str, str], expected: Any) -> None:
    peer, why = select_target_peer(peers(*names), target, mapping)
    assert (peer.name if peer else None) == expected
    assert bool(why) == (peer is None)


def test_three_node_resource_checks_only_the_target() -> None:
    doc = status9_doc()
    other = dict(doc[0]["connections"][0], name="gamma", **{"peer-node-id": 2, "connection-state": "Connecting"})
    doc[0]["connections"].append(other)
    runner = ScriptedRunner({"drbdsetup status": (0, json.dumps(doc)), "cibadmin": (0, CIB_EMPTY)})
    deadline = Deadline(30)
    reader = TextProcReader(runner, deadline, PROC9)
    assert evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline, reader=reader).allowed
    verdict = evaluate_guard(["r0"], "gamma", runner=runner, deadline=deadline, reader=reader)
    assert "r0: connection to gamma is Connecting; needs Connected" in verdict.reasons()


def test_verdict_shape_and_reasons() -> None:
    empty = GuardVerdict(checks=(), decided=True)
    assert not empty.allowed and empty.reasons() == [
        "no DRBD resource to check: nothing shows that the migration is safe"]
    verdict = GuardVerdict(checks=(GuardCheck("r0", "peer-role", False, "beta role is Secondary; needs Primary"),
                                   GuardCheck("r0", "local-role", True, "local role Primary")), decided=True)
    assert verdict.reasons() == ["r0: beta role is Secondary; needs Primary"]
    assert verdict.as_json() == {"allowed": False, "checks": [
        {"resource": "r0", "check": "peer-role", "ok": False, "detail": "beta role is Secondary; needs Primary"},
        {"resource": "r0", "check": "local-role", "ok": True, "detail": "local role Primary"}]}
    undecided = GuardVerdict(checks=(GuardCheck("r0", "x", True, "ok"),), decided=False)
    assert not undecided.allowed


def test_unknown_mode_and_missing_target_are_refused() -> None:
    runner = ScriptedRunner()
    assert not evaluate_guard(["r0"], "beta", "yolo", runner=runner, deadline=Deadline(5)).decided
    assert not evaluate_guard(["r0"], "", runner=runner, deadline=Deadline(5)).allowed
    assert runner.calls == []


def test_calls_are_argv_and_bounded_by_the_deadline() -> None:
    runner = ScriptedRunner({"drbdsetup status": (0, status9()), "cibadmin": (0, CIB_EMPTY)})
    deadline = Deadline(3)
    assert evaluate_guard(["r0", "r0"], "beta", runner=runner, deadline=deadline,
                          reader=TextProcReader(runner, deadline, PROC9)).allowed
    assert runner.argv_list() == [["drbdsetup", "status", "all", "--json", "--verbose", "--statistics"],
                                  ["cibadmin", "--query"]]
    assert all(0 < timeout <= 3 for _argv, timeout, _env in runner.records)


def test_expired_deadline_runs_nothing_and_refuses() -> None:
    runner = ScriptedRunner({"drbdsetup status": (0, status9()), "cibadmin": (0, CIB_EMPTY)})
    deadline = Deadline(0)
    verdict = evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline,
                             reader=TextProcReader(runner, deadline, PROC9))
    assert not verdict.allowed and not verdict.decided
    assert runner.calls == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


class SequenceRunner(ScriptedRunner):
    """drbdsetup status answers from a list, one per call; the last one repeats."""

    def __init__(self, statuses: List[str]) -> None:
        super().__init__({"cibadmin": (0, CIB_EMPTY)})
        self.statuses = statuses

    def run(self, argv: Any, timeout: float, stdin: Any = None, env: Any = None) -> CommandResult:
        if list(argv[:2]) == ["drbdsetup", "status"]:
            self.calls.append((list(argv), timeout, env))
            text = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return CommandResult(list(argv), 0, text, "")
        return super().run(argv, timeout, stdin, env)


def _wait_guard(runner: CommandRunner, clock: FakeClock, total: float, wait: float) -> GuardVerdict:
    deadline = Deadline(total, clock=clock)
    return evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline, wait=wait, sleep=clock.sleep,
                          reader=TextProcReader(runner, deadline, PROC9))


def test_wait_for_the_target_to_promote() -> None:
    clock = FakeClock()
    runner = SequenceRunner([status9(peer_role="Secondary")] * 3 + [status9()])
    assert _wait_guard(runner, clock, total=60, wait=20).allowed
    assert clock.now - 100.0 == pytest.approx(3.0)


def test_wait_never_passes_the_deadline_or_the_wait() -> None:
    for total, wait in [(60, 5), (6, 100), (1, 100)]:
        clock = FakeClock()
        runner = SequenceRunner([status9(replication="SyncSource", peer_disk="Inconsistent", out_of_sync=8)])
        verdict = _wait_guard(runner, clock, total=total, wait=wait)
        assert not verdict.allowed
        assert clock.now - 100.0 <= min(wait, total)


def test_no_wait_for_states_that_will_not_clear_by_themselves() -> None:
    clock = FakeClock()
    runner = SequenceRunner([status9(connection="StandAlone", peer_role="Unknown")])
    assert not _wait_guard(runner, clock, total=60, wait=30).allowed
    assert clock.now == 100.0
