"""`livemig check` over every promotable-clone combination, against an oracle written apart from it.

The combinations and the oracle are tests/support/promotable_table.py's; the integration test
tests/integration/test_promotion_table_pacemaker.py holds the oracle to what Pacemaker promotes.
"""

from __future__ import annotations

from typing import Dict

import pytest

from livemig.check.model import CheckResult
from livemig.check.pacemaker import check_pacemaker
from livemig.pacemaker.cib import parse_cib
from tests.support.promotable_table import (
    Combination,
    attribute_read,
    cib_for,
    combinations,
    deprecated,
    promoted_instances,
)

COMBINATIONS = combinations()


def rows(combo: Combination) -> Dict[str, CheckResult]:
    return {r.name: r for r in check_pacemaker(parse_cib(cib_for(combo)), "vm1", ["r0"])}


def test_the_table_is_the_full_product() -> None:
    assert len(COMBINATIONS) == 2 * 3 * 2 * 3 * 2
    assert {promoted_instances(c) for c in COMBINATIONS} == {1, 2}
    assert {deprecated(c) for c in COMBINATIONS} == {True, False}


@pytest.mark.parametrize("combo", COMBINATIONS, ids=[f"{i}-{c.label}" for i, c in enumerate(COMBINATIONS)])
def test_promoted_max_row_follows_pacemaker(combo: Combination) -> None:
    found = rows(combo)
    promoted = found["promoted-max"]
    if promoted_instances(combo) >= 2:
        assert promoted.status == "ok", promoted.found
    else:  # Pacemaker promotes on one node only: dual-primary cannot happen
        assert promoted.status == "fail", promoted.found
        assert promoted.fix.crm.startswith("crm resource meta ms_drbd_r0 set promoted-max 2")
        assert promoted.fix.pcs.startswith("pcs resource meta ms_drbd_r0 promoted-max=2")
        assert ("delete master-max" in promoted.fix.crm) == ("master-max" in dict(combo.on("clone")))
    assert promoted.found.startswith(f"ms_drbd_r0: {attribute_read(combo)}"), promoted.found
    if combo.promoted_max is not None and combo.master_max is not None and "clone" == combo.promoted_max_on \
            == combo.master_max_on:
        assert f"(over master-max={combo.master_max}: promoted-max wins)" in promoted.found
    if combo.on("primitive"):
        unread = ", ".join(f"{name}={value}" for name, value in sorted(combo.on("primitive")))
        assert f"{unread} on the primitive drbd_r0, where Pacemaker does not read it" in promoted.found
    assert found["clone-limits"].status == "ok"


@pytest.mark.parametrize("combo", COMBINATIONS, ids=[f"{i}-{c.label}" for i, c in enumerate(COMBINATIONS)])
def test_deprecated_syntax_is_a_warning_with_todays_terms(combo: Combination) -> None:
    syntax = rows(combo)["promotable-syntax"]
    if not deprecated(combo):
        assert syntax.status == "ok", syntax.found
        return
    assert syntax.status == "warn", syntax.found
    assert "crmsh 5 refuses ms and every commit" in syntax.found
    fix = syntax.fix.render()
    assert ("a <master> element" in syntax.found) == (combo.element == "master")
    if combo.element == "master":
        assert "| crm configure load update -" in fix and "cibadmin --upgrade --force on Pacemaker 3.0" in fix
        assert "cibadmin --upgrade --force" in syntax.fix.pcs
        statement = fix.split("echo '")[1].split("'")[0]
        assert statement.startswith("clone ms_drbd_r0 drbd_r0 meta promotable=true ")
        assert "master" not in statement
    if combo.master_max is not None:
        owner = "ms_drbd_r0" if combo.master_max_on == "clone" else "drbd_r0"
        nvpair = f"{owner}-meta-master-max"
        # the primitive inherits the clone's meta attributes, the clone nothing from the primitive:
        # where promoted-max is seen it wins, and master-max only goes
        seen = combo.promoted_max is not None and (combo.master_max_on == "primitive"
                                                  or combo.promoted_max_on == "clone")
        if seen:
            assert f"cibadmin --delete --xml-text '<nvpair id=\"{nvpair}\"/>'" in fix
        else:
            assert f"cibadmin --modify --xml-text '<nvpair id=\"{nvpair}\" name=\"promoted-max\"/>'" in fix
