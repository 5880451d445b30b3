"""drbd_two_primaries=migration: the drbd-config rows of every combination, against tests/support/window_table.py."""

from __future__ import annotations

from typing import List

import pytest

from livemig.check.drbd_config import check_drbd_config, parse_views
from livemig.check.model import exit_code
from livemig.check.window import check_window_config, diskless_hosts
from tests.support.window_table import Case, cases, dump_xml, expected_rows
from tests.unit.check.helpers import DRBD

CASES: List[Case] = list(cases())


def test_the_table_is_complete() -> None:
    assert len(CASES) == 2 * 4 * 3 * 3 * 3 * 2 * 2 + 3 * 2 * 3 * 3 * 3 * 2  # DRBD 9: all; 8.4: 2 nodes, no connection
    assert len(set(CASES)) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_window_config_rows(case: Case) -> None:
    rows = check_drbd_config(dump_xml(case), ["r0"], check_window_config)
    assert sorted((r.name, r.status) for r in rows) == expected_rows(case)
    bad = case.generation != "9" or case.a2p.startswith("yes")
    assert (exit_code(rows) == 1) == bad
    for row in rows:
        assert row.subject == "r0"
        if row.status != "ok":
            assert row.fix.text, row  # every problem says how to fix it
        if row.name == "allow-two-primaries" and row.status == "fail":
            assert "net { allow-two-primaries no; }" in row.fix.text and "drbdadm adjust r0" in row.fix.text


def test_diskless_hosts_are_the_ones_with_disk_none() -> None:
    three = Case("9", "no", "C", None, "majority", "io-error", 3, False)
    assert diskless_hosts(parse_views(dump_xml(three))["r0"]) == ["tb"]
    assert diskless_hosts(parse_views(dump_xml(Case("9", "no", "C", None, None, None, 2, False)))["r0"]) == []
    spelled = dump_xml(three).replace("<disk></disk>", "<disk>none</disk>")
    assert "<disk>none</disk>" in spelled and diskless_hosts(parse_views(spelled)["r0"]) == ["tb"]


def test_the_real_three_node_dump() -> None:
    """drbdadm 9's own dump of tests/fixtures/drbd/check/check-9-window-3nodes.res: a mesh, tb diskless."""
    text = (DRBD / "check-9-window-3nodes.dump-xml.txt").read_text(encoding="utf-8")
    assert diskless_hosts(parse_views(text)["r0"]) == ["tb"]
    rows = check_drbd_config(text, ["r0"], check_window_config)
    assert {r.status for r in rows} == {"ok"}, [r for r in rows if r.status != "ok"]
    assert [r.found for r in rows if r.name == "allow-two-primaries"] == [
        f"allow-two-primaries no (connection {pair}): allowed only while a migration runs"
        for pair in ("alpha-beta", "alpha-tb", "beta-tb")]
    assert [r.found for r in rows if r.name == "quorum"] == ["quorum majority (3 nodes, diskless tb)"]
