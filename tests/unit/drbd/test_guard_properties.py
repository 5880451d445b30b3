"""Property tests: anything outside the safe set, and any unreadable state, is refused."""

from __future__ import annotations

import json
from typing import Any, Dict, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livemig.drbd.guard import evaluate_guard
from livemig.ocf.deadline import Deadline
from livemig.run import CommandNotFound, CommandResult, CommandTimeout
from tests.unit.drbd.builders import MISSING, PROC9, SAFE9, TextProcReader, drbd8_answers, proc8, proc8_line, status9
from tests.unit.drbd.scripted import ScriptedRunner, fixture

CIB_EMPTY = fixture("cib-synthetic-empty.xml")
HEALTHY9 = status9()
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATE_NAMES = ["Primary", "Secondary", "Unknown", "UpToDate", "Inconsistent", "Outdated", "DUnknown", "Diskless",
               "Connected", "Connecting", "StandAlone", "Established", "SyncSource", "SyncTarget", "Off",
               "uptodate", "Primary ", ""]
ANY_VALUE = st.one_of(st.sampled_from(STATE_NAMES), st.booleans(), st.integers(-5, 5), st.none(),
                      st.just(MISSING), st.text(max_size=5), st.lists(st.integers(), max_size=2))


def run9(status_text: str, **answers: Any) -> Any:
    table: Dict[str, Any] = {"drbdsetup status": (0, status_text), "cibadmin": (0, CIB_EMPTY)}
    table.update({k.replace("_", " "): v for k, v in answers.items()})
    runner = ScriptedRunner(table)
    deadline = Deadline(30)
    return evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline,
                          reader=TextProcReader(runner, deadline, PROC9))


def test_healthy_baseline_is_allowed() -> None:
    assert run9(HEALTHY9).allowed


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(SAFE9)), ANY_VALUE, min_size=1))
def test_any_state_outside_the_safe_set_is_refused(changes: Dict[str, Any]) -> None:
    state = dict(SAFE9, **changes)

    def same(a: Any, b: Any) -> bool:
        return type(a) is type(b) and a == b

    safe = all(same(state[k], v) for k, v in SAFE9.items())  # a missing out-of-sync too: drbdsetup prints it
    verdict = run9(status9(**state))
    assert verdict.allowed == safe, (state, verdict.reasons())


@SETTINGS
@given(st.integers(min_value=0, max_value=len(HEALTHY9.rstrip()) - 1))
def test_truncated_json_is_refused_undecided(cut: int) -> None:
    verdict = run9(HEALTHY9[:cut])
    assert not verdict.allowed
    assert not verdict.decided


@SETTINGS
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_garbage_output_is_refused(garbage: str) -> None:
    assert not run9(garbage).allowed


@SETTINGS
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                    max_leaves=12))
def test_valid_json_of_the_wrong_shape_is_refused(document: Any) -> None:
    assert not run9(json.dumps(document)).allowed


@SETTINGS
@given(st.integers(min_value=1, max_value=255))
def test_non_zero_exit_is_refused_even_with_healthy_output(code: int) -> None:
    verdict = run9(HEALTHY9, drbdsetup_status=CommandResult(["drbdsetup"], code, HEALTHY9, "boom"))
    assert not verdict.allowed and not verdict.decided


@SETTINGS
@given(st.integers(min_value=1, max_value=255), st.sampled_from(["drbdsetup status", "cibadmin"]))
def test_cib_or_drbd_tool_failure_is_undecided(code: int, tool: str) -> None:
    answers = {tool.replace(" ", "_"): CommandResult([tool], code, "", "failed")}
    verdict = run9(HEALTHY9, **answers)
    assert not verdict.allowed and not verdict.decided


def test_hung_or_missing_tools_are_refused() -> None:
    for failure in (CommandTimeout(["drbdsetup"], "drbdsetup did not finish within 10.0s and was killed"),
                    CommandNotFound(["drbdsetup"], "drbdsetup: command not found")):
        verdict = run9(HEALTHY9, drbdsetup_status=failure)
        assert not verdict.decided and not verdict.allowed
        assert "could not read DRBD state" in verdict.reasons()[0]
    verdict = run9(HEALTHY9, cibadmin=CommandTimeout(["cibadmin"], "cibadmin hung"))
    assert not verdict.decided and not verdict.allowed


@SETTINGS
@given(st.text(max_size=300))
def test_garbage_cib_is_undecided(cib: str) -> None:
    verdict = run9(HEALTHY9, cibadmin=(0, cib))
    assert not verdict.allowed and not verdict.decided


@SETTINGS
@given(st.text(max_size=300))
def test_garbage_proc_drbd_is_refused(text: str) -> None:
    runner = ScriptedRunner(dict(drbd8_answers(), cibadmin=(0, CIB_EMPTY)))
    deadline = Deadline(30)
    verdict = evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline,
                             reader=TextProcReader(runner, deadline, text))
    assert not verdict.allowed


@SETTINGS
@given(st.lists(st.sampled_from(["cs", "ro", "ds", "flags", "oos"]), min_size=1, unique=True),
       st.sampled_from(["Secondary", "StandAlone", "Inconsistent", "s-----", "7"]))
def test_proc_drbd_any_change_is_refused(fields: List[str], value: str) -> None:
    kwargs: Dict[str, Any] = {"cs": "Connected", "peer_role": "Primary", "peer_disk": "UpToDate",
                              "flags": "r-----", "oos": 0}
    mapping = {"cs": "cs", "ro": "peer_role", "ds": "peer_disk", "flags": "flags", "oos": "oos"}
    for name in fields:
        kwargs[mapping[name]] = int(value) if name == "oos" and value.isdigit() else value
    safe = kwargs == {"cs": "Connected", "peer_role": "Primary", "peer_disk": "UpToDate", "flags": "r-----", "oos": 0}
    runner = ScriptedRunner(dict(drbd8_answers(), cibadmin=(0, CIB_EMPTY)))
    deadline = Deadline(30)
    verdict = evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline,
                             reader=TextProcReader(runner, deadline, proc8(proc8_line(**kwargs))))
    assert verdict.allowed == safe
