"""What the mutation fuzz found the guard still allowed, now refused (each test fails on 661a9f3).

- out-of-sync not stated: DRBD 9's drbdsetup prints it for every peer device, 8.3 and later print
  ``oos:`` for every minor, so a missing one is unreadable (8.0 to 8.2 print none: not reported);
- a JSON object that repeats a key (json.loads keeps the last) is unreadable;
- a flag written as a string other than yes/no/true/false is unknown;
- a NUL byte anywhere but right after the I/O flags, or another character the kernel does not
  print, makes that minor unreadable (in the header: the version);
- I/O flags not in the kernel's shape are unknown I/O;
- a udev by-res link contradicting ``drbdadm sh-minor`` makes the resource unreadable;
- more than one ``version:`` line in /proc/drbd is unreadable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import pytest

from livemig.drbd.guard import GuardVerdict, evaluate_guard
from livemig.drbd.proc import parse_proc_drbd
from livemig.drbd.state import DrbdStateError
from livemig.drbd.status9 import parse_show_json, parse_status_json
from livemig.ocf.deadline import Deadline
from tests.unit.drbd.builders import (
    MISSING,
    PROC9,
    TextProcReader,
    drbd8_answers,
    proc8,
    proc8_line,
    status9,
)
from tests.unit.drbd.scripted import ScriptedRunner, fixture

CIB_EMPTY = fixture("cib-synthetic-empty.xml")
STATS = "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"


def guard8(proc_text: str, *, minors: Sequence[int] = (0,), by_res: Optional[str] = None) -> GuardVerdict:
    runner = ScriptedRunner(dict(drbd8_answers("r0", minors), cibadmin=(0, CIB_EMPTY)))
    deadline = Deadline(30)
    reader = TextProcReader(runner, deadline, proc_text, by_res_dir=by_res or "/nonexistent/by-res")
    return evaluate_guard(["r0"], "beta", runner=runner, deadline=deadline, reader=reader)


def guard9(status_text: str, *, proc: str = PROC9, mode: str = "dual-primary",
           show: Optional[str] = None) -> GuardVerdict:
    answers: Dict[str, Any] = {"drbdsetup status": (0, status_text), "cibadmin": (0, CIB_EMPTY)}
    if show is not None:
        answers["drbdsetup show"] = (0, show)
    runner = ScriptedRunner(answers)
    deadline = Deadline(30)
    return evaluate_guard(["r0"], "beta", mode, runner=runner, deadline=deadline,
                          reader=TextProcReader(runner, deadline, proc))


def test_the_healthy_states_used_here_are_allowed() -> None:
    assert guard8(proc8(proc8_line())).allowed
    assert guard9(status9()).allowed


# -- out-of-sync not stated -------------------------------------------------------------------------

def test_drbd9_peer_device_without_out_of_sync_is_unreadable() -> None:
    (res,) = parse_status_json(status9(out_of_sync=MISSING))
    assert res.peers[0].volumes[0].out_of_sync_unreadable
    verdict = guard9(status9(out_of_sync=MISSING))
    assert not verdict.allowed
    assert verdict.reasons() == ["r0: volume 0: out-of-sync with beta is unreadable; needs 0"]


@pytest.mark.parametrize("version", ["8.3.1", "8.3.11", "8.4.2", "8.4.11-1", None])
def test_drbd8_minor_without_oos_is_unreadable_from_83_on(version: Optional[str]) -> None:
    text = proc8(proc8_line(oos=None), version=version or "")
    if version is None:  # no version line at all: which version it is cannot be told
        text = text.split("\n", 1)[1]
    assert parse_proc_drbd(text).minors[0].out_of_sync_unreadable
    verdict = guard8(text)
    assert not verdict.allowed
    assert "r0: minor 0: out-of-sync with beta is unreadable; needs 0" in verdict.reasons()


@pytest.mark.parametrize("version", ["8.0.12", "8.2.7"])
def test_drbd8_before_83_prints_no_oos_and_is_not_held_to_it(version: str) -> None:
    stats = "    ns:4375577 nr:0 dw:4446279 dr:674 al:1067 bm:69 lo:0 pe:0 ua:0 ap:0\n"
    text = proc8(proc8_line(oos=None, flags="r---") + stats, version=version)
    (minor,) = parse_proc_drbd(text).minors
    assert (minor.out_of_sync_kib, minor.out_of_sync_unreadable) == (None, False)
    verdict = guard8(text)
    assert verdict.allowed, verdict.reasons()
    assert "r0: minor 0: out-of-sync not reported" in [f"{c.resource}: {c.detail}" for c in verdict.checks]


def test_drbd80_sample_without_version_line_is_held_to_oos() -> None:
    with_version = parse_proc_drbd(fixture("drbd80-proc-ganeti-emptyline.txt"))
    without = parse_proc_drbd(fixture("drbd80-proc-ganeti-emptyversion.txt"))
    assert not with_version.minor(0).out_of_sync_unreadable  # type: ignore[union-attr]
    assert without.minor(0).out_of_sync_unreadable  # type: ignore[union-attr]


def test_drbd8_second_statistics_line_makes_out_of_sync_unreadable() -> None:
    text = proc8(proc8_line() + "    ns:1 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f\n")
    assert parse_proc_drbd(text).minors[0].out_of_sync_unreadable
    assert not guard8(text).allowed


# -- a JSON object that repeats a key ------------------------------------------------------------------

@pytest.mark.parametrize("old, new", [
    ('"suspended": false', '"suspended": true, "suspended": false'),
    ('"role": "Primary"', '"role": "Secondary", "role": "Primary"'),
    ('"peer-disk-state": "UpToDate"', '"peer-disk-state": "Outdated", "peer-disk-state": "UpToDate"'),
    ('"out-of-sync": 0', '"out-of-sync": 4096, "out-of-sync": 0'),
    ('"name": "beta"', '"name": "beta", "name": "beta"'),
])
def test_status_json_with_a_repeated_key_is_undecided(old: str, new: str) -> None:
    text = json.dumps(json.loads(status9()))  # one line per document: the replacements are exact
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    with pytest.raises(DrbdStateError, match="twice"):
        parse_status_json(text)
    verdict = guard9(text)
    assert not verdict.decided and not verdict.allowed
    assert "twice" in verdict.reasons()[0]


def _show(allow: str = "true", auto: str = "true") -> str:
    text = fixture("drbd9-show-json-drbdutils-one-volume.txt").replace('"some-resource"', '"r0"')
    return text.replace('"allow-two-primaries": false', f'"allow-two-primaries": {allow}').replace(
        '"auto-promote": true', f'"auto-promote": {auto}')


def test_show_json_with_a_repeated_key_is_undecided() -> None:
    assert guard9(status9(peer_role="Secondary"), mode="auto-promote", show=_show()).allowed
    for text in (_show(allow='false, "allow-two-primaries": true'), _show(auto='false, "auto-promote": true')):
        with pytest.raises(DrbdStateError, match="twice"):
            parse_show_json(text)
        verdict = guard9(status9(peer_role="Secondary"), mode="auto-promote", show=text)
        assert not verdict.decided and not verdict.allowed
        assert any(c.check == "drbd-settings" and not c.ok for c in verdict.checks)


# -- flags written as strings ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["False", "NO", "No", "off", "0"])
def test_drbd9_flag_string_other_than_the_words_drbd_utils_writes_is_unknown(value: str) -> None:
    assert guard9(status9(suspended="no")).allowed and guard9(status9(suspended="false")).allowed
    verdict = guard9(status9(suspended=value))
    assert not verdict.allowed
    assert "r0: local I/O is of unknown state (suspended or not); needs running I/O" in verdict.reasons()


# -- NUL bytes and other characters the kernel does not print -------------------------------------------

def test_drbd83_sample_with_nul_after_its_flags_still_reads() -> None:
    proc = parse_proc_drbd(fixture("drbd83-proc-ganeti-multi-minor.txt"))
    assert [(m.minor, m.io_flags, m.suspended) for m in proc.minors if m.minor in (1, 8)] == [
        (1, "r---", False), (8, "r---", False)]
    assert guard8(proc8(proc8_line(flags="r---\0\0"))).allowed


@pytest.mark.parametrize("line", [
    " 0: cs:Conn\0ected ro:Primary/Primary ds:UpToDate/UpToDate C r-----",
    " 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-\0----",
    " 0: cs:Connected ro:Primary/Primary\0ds:UpToDate/UpToDate C r-----",
    " 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C \0",
    " 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-----\r",
    " 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate\u00a0C r-----",
])
def test_proc_drbd_nul_or_control_character_in_a_minor_line_is_unreadable(line: str) -> None:
    text = proc8(line + "\n" + STATS)
    (minor,) = parse_proc_drbd(text).minors
    assert minor.unreadable is not None and minor.local_role is None
    verdict = guard8(text)
    assert not verdict.decided and not verdict.allowed
    assert verdict.reasons()[0].startswith("r0: could not read DRBD state: /proc/drbd: the line of minor 0 ")


def test_proc_drbd_nul_in_a_statistics_line_makes_the_minor_unreadable() -> None:
    text = proc8(proc8_line(oos=None) + STATS.replace("dw:0", "dw:\0"))
    assert parse_proc_drbd(text).minors[0].unreadable is not None
    assert not guard8(text).decided


def test_proc_drbd_nul_in_the_header_makes_the_version_unreadable() -> None:
    assert parse_proc_drbd(PROC9.replace("GIT-hash: 0", "GIT-hash: \0")).version is None
    verdict = guard9(status9(), proc=PROC9.replace("GIT-hash: 0", "GIT-hash: \0"))
    assert not verdict.decided and not verdict.allowed
    assert "cannot tell the DRBD version" in verdict.reasons()[0]


# -- I/O flags not in the kernel's shape ---------------------------------------------------------------

@pytest.mark.parametrize("flags, allowed", [
    ("r-----", True), ("r---", True), ("r----", True), ("r---n-", True), ("r--u--", True), ("r---bs", True),
    ("r", False), ("rubbish", False), ("r---------", False), ("R-----", False), ("-r----", False),
    ("x-----", False), ("r-x---", False), ("r--a--", False), ("r----u", False),
])
def test_proc_drbd_io_flags_must_have_the_kernels_shape(flags: str, allowed: bool) -> None:
    verdict = guard8(proc8(proc8_line(flags=flags)))
    assert verdict.allowed == allowed, verdict.reasons()
    if not allowed:
        assert verdict.reasons() == ["r0: local I/O is of unknown state (suspended or not) (minor 0); "
                                     "needs running I/O"]


# -- udev's by-res links against drbdadm sh-minor ------------------------------------------------------

def _links(root: Path, links: Dict[str, int]) -> str:
    for name, minor in links.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f"/dev/drbd{minor}", path)
    return str(root)


def test_by_res_links_that_agree_with_sh_minor_are_used(tmp_path: Path) -> None:
    by_res = _links(tmp_path, {"r0/0": 0, "r0/1": 1, "other/0": 5})
    verdict = guard8(proc8(proc8_line(minor=0), proc8_line(minor=1), proc8_line(minor=5)), minors=(0, 1),
                     by_res=by_res)
    assert verdict.allowed, verdict.reasons()
    assert "volume 1: beta disk UpToDate" in [c.detail for c in verdict.checks]


@pytest.mark.parametrize("links, why", [
    ({"other/0": 0}, "udev's link /dev/drbd/by-res/other/0 names minor 0 resource other, but drbdadm sh-minor r0 "
                     "lists minor 0 for r0"),
    ({"other": 0}, "udev's link /dev/drbd/by-res/other names minor 0 resource other"),
    ({"r0/0": 0, "r0/1": 0}, "udev's links /dev/drbd/by-res/r0/0 and /dev/drbd/by-res/r0/1 both name minor 0 of "
                             "r0"),
    ({"r0/0": 0, "r0/1": 5}, "udev's link /dev/drbd/by-res/r0/1 names minor 5 r0, but drbdadm sh-minor r0 lists "
                             "0 for r0"),
])
def test_by_res_link_contradicting_sh_minor_is_undecided(tmp_path: Path, links: Dict[str, int], why: str) -> None:
    verdict = guard8(proc8(proc8_line(minor=0), proc8_line(minor=5)), by_res=_links(tmp_path, links))
    assert not verdict.decided and not verdict.allowed
    (reason,) = verdict.reasons()
    assert reason.startswith("r0: could not read DRBD state: " + why), reason


def test_by_res_link_to_a_minor_not_in_proc_drbd_is_no_contradiction(tmp_path: Path) -> None:
    by_res = _links(tmp_path, {"r0/0": 0, "r0/1": 7})  # a link left to a device that is gone
    assert guard8(proc8(proc8_line(minor=0)), by_res=by_res).allowed


# -- the version line -------------------------------------------------------------------------------------

@pytest.mark.parametrize("second", ["version: 8.4.11-1 (api:1/proto:86-101)", "version: 8.0.12 (api:86/proto:86)",
                                    "version: 9.2.5 (api:2/proto:86-122)", "version:"])
def test_proc_drbd_with_two_version_lines_is_undecided(second: str) -> None:
    text = proc8(proc8_line()) + second + "\n"
    with pytest.raises(DrbdStateError, match="more than one version"):
        parse_proc_drbd(text)
    verdict = guard8(text)
    assert not verdict.decided and not verdict.allowed


# -- further classes: what the oracle cannot prove and the guard allowed ----------------------------------

def test_show_json_entry_without_a_resource_name_is_undecided() -> None:
    text = _show().replace("[\n    {", "[\n    {},\n    {", 1)  # the class the fuzz found: an entry {}
    with pytest.raises(DrbdStateError, match="'resource' is missing"):
        parse_show_json(text)
    verdict = guard9(status9(peer_role="Secondary"), mode="auto-promote", show=text)
    assert not verdict.decided and not verdict.allowed


def test_show_json_connection_without_or_with_a_repeated_peer_node_id_is_undecided() -> None:
    doc = json.loads(_show())
    conn = doc[0]["connections"][0]
    doc[0]["connections"] = [dict(conn, net={"allow-two-primaries": True}), dict(conn)]  # node 1 twice
    for text in (json.dumps(doc), _show().replace('"_peer_node_id": 1', '"_peer_node_id": "1"')):
        with pytest.raises(DrbdStateError):
            parse_show_json(text)
        assert not guard9(status9(peer_role="Secondary"), mode="auto-promote", show=text).decided


def test_auto_promote_peer_without_a_node_id_is_not_matched_by_name() -> None:
    doc = json.loads(status9(peer_role="Secondary"))
    del doc[0]["connections"][0]["peer-node-id"]
    show = _show().replace('"allow-two-primaries": true', '"allow-two-primaries": true, "_name": "beta"')
    verdict = guard9(json.dumps(doc), mode="auto-promote", show=show)
    assert not verdict.allowed
    assert "r0: connection to beta: allow-two-primaries is unknown; needs yes" in verdict.reasons()


@pytest.mark.parametrize("where", ["resource", "connection"])
def test_status_json_entry_without_a_name_is_undecided(where: str) -> None:
    doc = json.loads(status9())
    other = json.loads(json.dumps(doc[0]))
    other["name"] = "other"
    other["connections"][0]["name"] = "gamma"
    if where == "resource":
        del other["name"]  # another resource's entry that names nothing: it could be r0's
        doc.append(other)
    else:
        del other["connections"][0]["name"]
        doc[0]["connections"].append(other["connections"][0])
        other["connections"][0]["peer-node-id"] = 2
    verdict = guard9(json.dumps(doc))
    assert not verdict.decided and not verdict.allowed
    assert "'name' is missing" in verdict.reasons()[0]


@pytest.mark.parametrize("value, allowed", [(False, True), ("no", True), (True, False), ("maybe", False)])
def test_status_json_any_suspend_reason_counts(value: Any, allowed: bool) -> None:
    doc = json.loads(status9())
    doc[0]["suspended-by-a-later-reason"] = value
    assert guard9(json.dumps(doc)).allowed == allowed


def test_status_json_negative_volume_is_unknown() -> None:
    text = json.dumps(json.loads(status9())).replace('"volume": 0', '"volume": -1')
    assert text.count('"volume": -1') == 2  # the device and its peer device
    verdict = guard9(text)
    assert not verdict.allowed
    assert "r0: minor 10: beta reports no state for this volume; needs UpToDate" in verdict.reasons()


@pytest.mark.parametrize("version", ["7.0.1", "9.2.5", "x"])
def test_proc_drbd_listing_minors_under_a_version_that_is_not_8_is_undecided(version: str) -> None:
    proc = parse_proc_drbd(proc8(proc8_line(), version=version))
    assert proc.minors and proc.generation is None
    verdict = guard8(proc8(proc8_line(), version=version))
    assert not verdict.decided and not verdict.allowed
    assert "cannot tell the DRBD version" in verdict.reasons()[0]


@pytest.mark.parametrize("garbled", [" 0:cs:Connected ro:Primary/Primary", " 0: Connected", " 1:"])
def test_proc_drbd_line_that_starts_like_a_minor_is_about_that_minor(garbled: str) -> None:
    number = int(garbled.split(":")[0])
    text = proc8(proc8_line(minor=0) if number else "", garbled + "\n" + STATS)
    minor = parse_proc_drbd(text).minor(number)
    assert minor is not None and minor.unreadable is not None
    verdict = guard8(text, minors=(0, 1) if number else (0,))
    assert not verdict.decided and not verdict.allowed
    assert f"the line of minor {number} is not understood" in " ".join(verdict.reasons())


def test_proc_drbd_second_line_for_a_minor_is_undecided() -> None:
    with pytest.raises(DrbdStateError, match="twice"):
        parse_proc_drbd(proc8(proc8_line(), " 0:cs:Connected\n"))


def test_proc_drbd_resync_progress_under_a_connected_minor_is_unreadable() -> None:
    progress = "\t[=======>............] sync'ed: 44.4% (588416/1048576)K\n"
    text = proc8(proc8_line(minor=0) + progress + proc8_line(minor=3, cs="SyncTarget", disk="Inconsistent", oos=4096)
                 + progress)
    proc = parse_proc_drbd(text)
    assert proc.minor(0).unreadable is not None  # type: ignore[union-attr]
    assert proc.minor(3).unreadable is None  # type: ignore[union-attr]
    verdict = guard8(text)
    assert not verdict.decided and not verdict.allowed
    assert "minor 0 is Connected but has resync progress lines" in verdict.reasons()[0]


@pytest.mark.parametrize("line", ["oos:0", "ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0", "junk"])
def test_proc_drbd_unindented_line_under_a_minor_is_not_its_line(line: str) -> None:
    text = proc8(proc8_line(minor=0, oos=None) + line + "\n")  # the fuzz found "oos:0" taken as the stats line
    assert parse_proc_drbd(text).minors[0].unreadable is not None
    verdict = guard8(text)
    assert not verdict.decided and not verdict.allowed
    assert "a line under minor 0 is not indented as the kernel prints it" in verdict.reasons()[0]
