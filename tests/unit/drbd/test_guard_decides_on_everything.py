"""The guard decides on every volume and never guesses (issue 13, "the guard decides on less than everything").

- 8.x: every minor DRBD's configuration gives the resource must be in /proc/drbd, configured and
  healthy; a minor that cannot be read, or a tool that fails, is a refusal;
- DRBD 9 JSON and /proc/drbd are read strictly: nothing skipped, nothing resolved last-wins;
- the target is the peer named like it, never the only peer whatever its name (8.x: named from
  DRBD's configuration);
- the older crm-fence-peer constraint id (drbd-fence-by-handler-<clone id>) counts.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

import pytest

from livemig.drbd.guard import GuardVerdict, evaluate_guard
from livemig.drbd.proc import parse_proc_drbd
from livemig.drbd.state import DrbdResourceState, DrbdStateError, DrbdStatus, VolumeState
from livemig.drbd.status9 import parse_status_json
from livemig.ocf.deadline import Deadline
from livemig.pacemaker.cib import fence_constraint_ids, parse_cib
from tests.unit.drbd.builders import (
    PROC9,
    TextProcReader,
    drbd8_answers,
    dump_xml84,
    proc8,
    proc8_line,
    status9,
    status9_doc,
)
from tests.unit.drbd.scripted import ScriptedRunner, fixture, hung

CIB_EMPTY = fixture("cib-synthetic-empty.xml")


def guard8(proc_text: str, *, minors: Sequence[int] = (0,), hosts: Sequence[str] = ("alpha", "beta"),
           target: str = "beta", node: str = "alpha", peer_names: Optional[Dict[str, str]] = None,
           answers: Optional[Dict[str, Any]] = None) -> GuardVerdict:
    """The guard on 8.x: by-res absent, drbdadm sh-resource naming minors 0..3 r0 (what the old reader used)."""
    table: Dict[str, Any] = {f"drbdadm sh-resource minor-{m}": (0, "r0\n") for m in range(4)}
    table.update(drbd8_answers("r0", minors, hosts))
    table["cibadmin"] = (0, CIB_EMPTY)
    table.update(answers or {})
    runner = ScriptedRunner(table)
    deadline = Deadline(30)
    return evaluate_guard(["r0"], target, runner=runner, deadline=deadline, peer_names=peer_names,
                          reader=TextProcReader(runner, deadline, proc_text, node_name=node))


def guard9(text: str, target: str = "beta", cib: str = CIB_EMPTY) -> GuardVerdict:
    runner = ScriptedRunner({"drbdsetup status": (0, text), "cibadmin": (0, cib)})
    deadline = Deadline(30)
    return evaluate_guard(["r0"], target, runner=runner, deadline=deadline,
                          reader=TextProcReader(runner, deadline, PROC9))


HEALTHY0 = proc8_line(minor=0)
HEALTHY1 = proc8_line(minor=1)


# -- 8.x: every configured minor ------------------------------------------------------------------

def test_drbd8_healthy_resource_on_two_minors_is_allowed() -> None:
    verdict = guard8(proc8(HEALTHY0, HEALTHY1), minors=(0, 1))
    assert verdict.allowed, verdict.reasons()
    assert {c.detail for c in verdict.checks if c.check == "local-role"} == {
        "local role Primary (minor 0)", "local role Primary (minor 1)"}


def test_drbd8_configured_minor_missing_from_proc_is_refused() -> None:
    verdict = guard8(proc8(HEALTHY0), minors=(0, 1))
    assert verdict.decided and not verdict.allowed
    assert verdict.reasons() == [
        "r0: minor 1 is not in /proc/drbd; needs every volume of the resource up (drbdadm up r0)"]


def test_drbd8_configured_minor_unconfigured_is_refused() -> None:
    verdict = guard8(proc8(HEALTHY0, " 1: cs:Unconfigured\n"), minors=(0, 1))
    assert not verdict.allowed
    assert verdict.reasons() == [
        "r0: minor 1 is Unconfigured in /proc/drbd; needs every volume of the resource up (drbdadm up r0)"]


def test_drbd8_minor_whose_name_lookup_hangs_is_still_judged() -> None:
    # The old reader named minors with drbdadm sh-resource and skipped minor 1 when that hung.
    verdict = guard8(proc8(HEALTHY0, proc8_line(minor=1, role="Secondary")), minors=(0, 1),
                     answers={"drbdadm sh-resource minor-1": hung("drbdadm")})
    assert not verdict.allowed
    assert "r0: local role is Secondary (minor 1); needs Primary" in verdict.reasons()


@pytest.mark.parametrize("answer", [hung("drbdadm"), (1, ""), (0, ""), (0, "0\nx\n"), (0, "0\n0\n"),
                                    (0, "r0\n")])
def test_drbd8_minors_unreadable_is_undecided(answer: Any) -> None:
    verdict = guard8(proc8(HEALTHY0), answers={"drbdadm sh-minor r0": answer})
    assert not verdict.decided and not verdict.allowed
    assert verdict.reasons()[0].startswith("r0: could not read DRBD state: cannot tell which minors DRBD's "
                                           "configuration gives r0 on this node: ")


def test_drbd8_reads_minors_once_per_resource_by_argv() -> None:
    runner = ScriptedRunner(dict(drbd8_answers("r0", (0, 1)), cibadmin=(0, CIB_EMPTY)))
    deadline = Deadline(30)
    assert evaluate_guard(["r0", "r0"], "beta", runner=runner, deadline=deadline,
                          reader=TextProcReader(runner, deadline, proc8(HEALTHY0, HEALTHY1))).allowed
    assert runner.argv_list() == [["drbdadm", "sh-minor", "r0"], ["drbdadm", "-v", "dump-xml", "r0"],
                                  ["cibadmin", "--query"]]


# -- 8.x: the peer is named from DRBD's configuration ------------------------------------------------

def test_drbd8_peer_of_another_name_is_not_the_target() -> None:
    verdict = guard8(proc8(HEALTHY0), hosts=("alpha", "gamma"))
    assert verdict.decided and not verdict.allowed
    assert verdict.reasons()[0].startswith("r0: no connection is named beta among gamma")


def test_drbd8_peer_names_mapping_and_short_names() -> None:
    assert guard8(proc8(HEALTHY0), hosts=("alpha", "drbd-b"), target="beta",
                  peer_names={"beta": "drbd-b"}).allowed
    assert guard8(proc8(HEALTHY0), hosts=("alpha.example.com", "beta.example.com"), target="beta").allowed
    assert guard8(proc8(HEALTHY0), hosts=("alpha", "beta"), node="alpha.example.com",
                  target="beta.example.com").allowed


@pytest.mark.parametrize("answer, why", [
    (hung("drbdadm"), "did not finish"),
    ((10, ""), "exit"),
    ((0, "<resource"), "not well-formed"),
    ((0, dump_xml84("r0", (0,), ("gamma", "beta"))), "0 host sections for this node (alpha)"),
    ((0, dump_xml84("r0", (0,), ("alpha", "beta", "gamma"))), "names 2 peer hosts"),
    ((0, dump_xml84("r0", (0,), ("alpha",))), "names 0 peer hosts"),
    ((0, dump_xml84("r0", (0,), ("alpha", "beta")).replace('<host name="beta">', '<host floating="1">')),
     "without a name"),
    ((0, dump_xml84("r1", (0,), ("alpha", "beta"))), "describes 0 resources named r0"),
])
def test_drbd8_peer_unknown_is_undecided_and_says_why(answer: Any, why: str) -> None:
    verdict = guard8(proc8(HEALTHY0), answers={"drbdadm -v dump-xml r0": answer})
    assert not verdict.decided and not verdict.allowed
    (reason,) = verdict.reasons()
    assert reason.startswith("r0: could not read DRBD state: cannot tell from DRBD's configuration which node is "
                             "the peer of r0 (/proc/drbd does not name it): ")
    assert why in reason


# -- the target is never guessed ----------------------------------------------------------------

def test_drbd9_single_peer_of_another_name_is_not_the_target() -> None:
    verdict = guard9(status9(peer="gamma"))
    assert verdict.decided and not verdict.allowed
    assert verdict.reasons() == ["r0: no connection is named beta among gamma; if one of them is that node, map it: "
                                 "drbd_peer_names=beta=<DRBD host name> (livemig guard --peer-name)"]


def test_drbd9_peer_without_a_name_is_not_the_target() -> None:
    doc = status9_doc()
    doc[0]["connections"][0]["name"] = ""
    verdict = guard9(json.dumps(doc))
    assert verdict.decided and not verdict.allowed
    assert verdict.reasons()[0].startswith("r0: the peer's name is not known, so it cannot be shown to be node beta")
    del doc[0]["connections"][0]["name"]  # drbdsetup names every connection: one without could be any
    verdict = guard9(json.dumps(doc))
    assert not verdict.decided and not verdict.allowed
    assert "connections: an entry whose 'name' is missing" in verdict.reasons()[0]


# -- DRBD 9 JSON, strictly ---------------------------------------------------------------------------

def _with(path: List[Any], junk: Any) -> str:
    doc: Any = status9_doc()
    target = doc
    for key in path:
        target = target[key]
    target.append(junk)
    return json.dumps(doc)


@pytest.mark.parametrize("path", [[], [0, "devices"], [0, "connections"], [0, "connections", 0, "peer_devices"]])
@pytest.mark.parametrize("junk", ["x", 5, None, [], True])
def test_drbd9_non_object_entry_at_any_level_is_undecided(path: List[Any], junk: Any) -> None:
    text = _with(path, junk)
    with pytest.raises(DrbdStateError):
        parse_status_json(text)
    verdict = guard9(text)
    assert not verdict.decided and not verdict.allowed


@pytest.mark.parametrize("key", ["devices", "connections"])
@pytest.mark.parametrize("value", [{}, "x", None, "missing"])
def test_drbd9_lists_that_are_not_lists_are_undecided(key: str, value: Any) -> None:
    doc = status9_doc()
    if value == "missing":
        del doc[0][key]
    else:
        doc[0][key] = value
    assert not guard9(json.dumps(doc)).decided


@pytest.mark.parametrize("what", ["resource", "device", "connection", "peer device"])
def test_drbd9_an_entry_listed_twice_is_undecided(what: str) -> None:
    doc: Any = status9_doc()
    if what == "resource":
        doc.append(json.loads(json.dumps(doc[0])))
    elif what == "device":
        doc[0]["devices"].append(dict(doc[0]["devices"][0]))
    elif what == "connection":
        doc[0]["connections"].append(json.loads(json.dumps(doc[0]["connections"][0])))
    else:
        pds = doc[0]["connections"][0]["peer_devices"]
        pds.append(dict(pds[0], **{"peer-disk-state": "Outdated"}))
    verdict = guard9(json.dumps(doc))
    assert not verdict.decided and not verdict.allowed
    assert "twice" in verdict.reasons()[0]


def test_drbd9_peer_volume_without_a_local_volume_is_refused() -> None:
    doc = status9_doc(volumes=(0,))
    pds = doc[0]["connections"][0]["peer_devices"]
    pds.append(dict(pds[0], volume=1, **{"peer-disk-state": "Inconsistent"}))
    verdict = guard9(json.dumps(doc))
    assert verdict.decided and not verdict.allowed
    assert verdict.reasons() == ["r0: volume 1: beta reports this volume, which this node does not have; needs the "
                                 "same volumes on both nodes"]


@pytest.mark.parametrize("value, allowed", [
    (False, True), ("no", True), (True, False), ("yes", False),
    ("maybe", False), (1, False), (0, False), (None, False), ([], False), ("", False),
])
@pytest.mark.parametrize("key", ["suspended-user", "suspended-no-data", "suspended-fencing", "suspended-quorum"])
def test_drbd9_suspend_reason_not_a_boolean_is_unknown(key: str, value: Any, allowed: bool) -> None:
    doc = status9_doc()
    doc[0][key] = value
    verdict = guard9(json.dumps(doc))
    assert verdict.allowed == allowed, verdict.reasons()
    if not allowed:
        (reason,) = verdict.reasons()
        assert reason.startswith("r0: local I/O is ")


# -- /proc/drbd, strictly ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    " 0: cs:Connected ro:Secondary/Primary ro:Primary/Primary ds:UpToDate/UpToDate C r-----",
    " 0: cs:Connected ro:Primary/Primary st:Primary/Primary ds:UpToDate/UpToDate C r-----",
    " 0: cs:Connected ro:Primary/Primary ds:Inconsistent/UpToDate ds:UpToDate/UpToDate C r-----",
    " 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate A C r-----",
    " 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C s----- r-----",
    " 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r----- cs:Connected",
    " 0: cs:Connected ro:Primary ds:UpToDate/UpToDate C r-----",
])
def test_proc_drbd_field_twice_makes_the_minor_unreadable(line: str) -> None:
    verdict = guard8(proc8(line + "\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"))
    assert not verdict.allowed
    assert not verdict.decided
    assert verdict.reasons()[0].startswith("r0: could not read DRBD state: /proc/drbd: the line of minor 0 is not "
                                           "understood")
    (minor,) = parse_proc_drbd(proc8(line + "\n")).minors
    assert minor.unreadable is not None and minor.local_role is None and minor.local_disk is None


@pytest.mark.parametrize("stats", [
    "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:1024\n"
    "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n",
    "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0 oos:1024\n",
])
def test_proc_drbd_two_out_of_sync_counts_are_unreadable(stats: str) -> None:
    text = proc8(proc8_line(minor=0, oos=None) + stats)
    assert parse_proc_drbd(text).minors[0].out_of_sync_unreadable
    verdict = guard8(text)
    assert not verdict.allowed
    assert "r0: minor 0: out-of-sync with beta is unreadable; needs 0" in verdict.reasons()


def test_proc_drbd_real_samples_still_parse_field_by_field() -> None:
    for name in ("drbd80-proc-ganeti-multi-minor.txt", "drbd83-proc-ganeti-multi-minor.txt",
                 "drbd84-proc-ganeti-multi-minor.txt", "drbd84-proc-pacemaker-connected-primary-8.4.11.txt"):
        assert all(m.unreadable is None for m in parse_proc_drbd(fixture(name)).minors), name


# -- the one local rule -------------------------------------------------------------------------------

def _status(generation: int, *entries: DrbdResourceState) -> DrbdStatus:
    return DrbdStatus(drbd_version="9.2.5" if generation == 9 else "8.4.11", generation=generation,
                      resources=entries)


def _entry(**kwargs: Any) -> Any:
    base: Dict[str, Any] = dict(name="r0", role="Primary", suspended=False,
                                volumes=(VolumeState(volume=0, minor=10, disk="UpToDate", quorum=True),))
    base.update(kwargs)
    return DrbdResourceState(**base)


@pytest.mark.parametrize("change, check, statement", [
    (None, "present", "DRBD resource r0 is not up"),
    (dict(absent="minor 3 is not in /proc/drbd"), "present", "DRBD resource r0: minor 3 is not in /proc/drbd"),
    (dict(role="Secondary"), "local-role", "DRBD resource r0 is Secondary"),
    (dict(role=None), "local-role", "DRBD resource r0 is in an unknown role"),
    (dict(suspended=True), "local-io", "DRBD resource r0: I/O is suspended"),
    (dict(suspended=None), "local-io", "DRBD resource r0: I/O is of unknown state (suspended or not)"),
    (dict(volumes=()), "local-disk", "DRBD resource r0: no local volume reported"),
    (dict(volumes=(VolumeState(0, 10, "Outdated", True),)), "local-disk",
     "DRBD resource r0 volume 0: local disk is Outdated, not UpToDate"),
    (dict(volumes=(VolumeState(0, 10, "UpToDate", False),)), "local-quorum",
     "DRBD resource r0 volume 0: quorum is lost"),
    (dict(volumes=(VolumeState(0, 10, "UpToDate", None),)), "local-quorum",
     "DRBD resource r0 volume 0: quorum is unknown"),
])
def test_local_rule_names_the_one_problem(change: Optional[Dict[str, Any]], check: str, statement: str) -> None:
    from livemig.drbd.health import first_problem

    status = _status(9, *(() if change is None else (_entry(**change),)))
    problem = first_problem(["r0"], status)
    assert problem is not None and (problem.check, problem.statement) == (check, statement)
    assert problem.sentence("on this node") == f"{statement} on this node"
    assert first_problem(["r0"], _status(9, _entry())) is None


def test_local_rule_unreadable_entry_is_undecided_and_8x_has_no_quorum() -> None:
    from livemig.drbd.health import local_checks

    (check,) = local_checks("r0", _status(8, _entry(unreadable="tool hung")))
    assert (check.check, check.ok, check.decided) == ("drbd-state", False, False)
    assert check.sentence("on this node") == "DRBD resource r0: could not read its DRBD state: tool hung"
    eight = local_checks("r0", _status(8, _entry(volumes=(VolumeState(None, 3, "UpToDate", None),))))
    assert all(c.ok for c in eight) and not [c for c in eight if c.check == "local-quorum"]
    assert [c.detail for c in eight if c.check == "local-role"] == ["local role Primary (minor 3)"]


# -- the fence constraint, old and new forms -----------------------------------------------------------

def _cib(resources: str, constraints: str) -> str:
    return CIB_EMPTY.replace("<resources/>", f"<resources>{resources}</resources>").replace(
        "<constraints/>", f"<constraints>{constraints}</constraints>")


def _drbd(clone_tag: str, clone_id: str, res: str, agent: str = 'class="ocf" provider="linbit" type="drbd"') -> str:
    meta = (f'<meta_attributes id="{clone_id}-meta"><nvpair id="{clone_id}-p" name="promotable" value="true"/>'
            "</meta_attributes>" if clone_tag == "clone" else "")
    return (f'<{clone_tag} id="{clone_id}">{meta}<primitive id="p_{res}" {agent}>'
            f'<instance_attributes id="p_{res}-ia"><nvpair id="p_{res}-r" name="drbd_resource" value="{res}"/>'
            f"</instance_attributes></primitive></{clone_tag}>")


def _fence(cid: str, rsc: str) -> str:
    return (f'<rsc_location id="{cid}" rsc="{rsc}"><rule id="{cid}-rule" role="Promoted" score="-INFINITY">'
            f'<expression id="{cid}-expr" attribute="#uname" operation="ne" value="alpha"/></rule></rsc_location>')


def test_cib_has_the_empty_sections_the_helpers_fill() -> None:
    assert "<resources/>" in CIB_EMPTY and "<constraints/>" in CIB_EMPTY


@pytest.mark.parametrize("clone_tag", ["master", "clone"])
def test_old_fence_constraint_id_is_recognised(clone_tag: str) -> None:
    cib = parse_cib(_cib(_drbd(clone_tag, "ms_drbd_r0", "r0") + _drbd(clone_tag, "ms_drbd_r1", "r1"),
                         _fence("drbd-fence-by-handler-ms_drbd_r0", "ms_drbd_r0")))
    assert fence_constraint_ids(cib, "r0") == ["drbd-fence-by-handler-ms_drbd_r0"]
    assert fence_constraint_ids(cib, "r1") == []


def test_old_fence_constraint_refuses_the_migration() -> None:
    cib = _cib(_drbd("master", "ms_drbd_r0", "r0"), _fence("drbd-fence-by-handler-ms_drbd_r0", "ms_drbd_r0"))
    verdict = guard9(status9(), cib=cib)
    assert verdict.decided and not verdict.allowed
    assert verdict.reasons()[0].startswith("r0: the CIB holds drbd-fence-by-handler-ms_drbd_r0 (DRBD's fence-peer")


def test_fence_constraint_forms_and_what_does_not_count() -> None:
    resources = (_drbd("master", "ms0", "r0", agent='class="ocf" provider="heartbeat" type="drbd"')
                 + _drbd("clone", "c1", "r1"))
    constraints = (_fence("drbd-fence-by-handler-r0-ms0", "ms0")        # the newer form
                   + _fence("drbd-fence-by-handler-ms0", "ms0")         # the older form
                   + _fence("drbd-fence-by-handler-custom", "ms0")      # on r0's clone, whatever the id
                   + _fence("drbd-fence-by-handler-c1", "c1")           # r1's
                   + _fence("location-ms0-prefers-alpha", "ms0"))       # not the handler's
    ids = fence_constraint_ids(parse_cib(_cib(resources, constraints)), "r0")
    assert ids == ["drbd-fence-by-handler-r0-ms0", "drbd-fence-by-handler-ms0", "drbd-fence-by-handler-custom"]
    assert fence_constraint_ids(parse_cib(_cib(resources, constraints)), "r1") == ["drbd-fence-by-handler-c1"]
    assert fence_constraint_ids(parse_cib(_cib(resources, constraints)), "r9") == []
