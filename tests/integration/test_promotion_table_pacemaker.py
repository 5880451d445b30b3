"""The promotable-clone oracle held to Pacemaker itself, and `livemig check`'s conversion of deprecated syntax.

On this machine's Pacemaker (2.1 on Debian 12) and in the Debian 13 tier (3.0): every distinct
combination of tests/support/promotable_table.py is run by the scheduler (crm_simulate, both
nodes up with DRBD's promotion score) and the promoted instances counted; they must be what
the oracle says, which the unit test holds `livemig check` to. Then the commands the
promotable-syntax row prints are run on a copy of a legacy CIB (crmsh's `ms`: `<master>`,
master-max, Master/Slave roles): afterwards Pacemaker warns about nothing deprecated and
`livemig check` says ok, with DRBD still promoted on both nodes.
"""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

from livemig.check.pacemaker import check_pacemaker
from livemig.pacemaker.cib import parse_cib
from tests.integration.test_check_roundtrip import FIXTURES, crmsh_env, need
from tests.integration.test_config_simulated import nodes_in_role, tool
from tests.support.promotable_table import NODES, cib_for, distinct_combinations, promoted_instances

PROMOTED = {"Promoted", "Master"}


def promoted_by_pacemaker(tmp_path: Path, cib: Path) -> List[str]:
    online = tmp_path / "online.xml"
    tool(["crm_simulate", "--xml-file", str(cib), "--quorum", "true", "--save-output", str(online)]
         + [arg for n in NODES for arg in ("--node-up", n)])
    for name in NODES:
        tool(["crm_attribute", "--node", name, "--name", "master-drbd_r0", "--update", "10000",
              "--lifetime", "reboot"], {"CIB_file": str(online)})
    final = tmp_path / "final.xml"
    tool(["crm_simulate", "--xml-file", str(online), "--simulate", "--save-output", str(final)])
    view = tool(["crm_mon", "--one-shot", "--output-as=xml"], {"CIB_file": str(final)})
    return nodes_in_role(ET.fromstring(view.stdout), "drbd_r0", PROMOTED)


def test_pacemaker_promotes_what_the_oracle_says(tmp_path: Path) -> None:
    need("crm_simulate", "crm_attribute", "crm_mon")
    wrong: Dict[str, str] = {}
    combos = distinct_combinations()
    for i, combo in enumerate(combos):
        work = tmp_path / str(i)
        work.mkdir()
        cib = work / "cib.xml"
        cib.write_text(cib_for(combo), encoding="utf-8")
        promoted = promoted_by_pacemaker(work, cib)
        if len(promoted) != promoted_instances(combo):
            wrong[combo.label] = f"Pacemaker promoted on {promoted}, the oracle says {promoted_instances(combo)}"
    assert len(combos) == 50
    assert wrong == {}


def deprecations(cib: Path) -> List[str]:
    done = subprocess.run(["crm_verify", "-x", str(cib), "-V"], capture_output=True, text=True, timeout=60,
                          check=False)
    return [line for line in (done.stdout + done.stderr).splitlines() if "deprecated" in line]


def pacemaker_3() -> bool:
    done = tool(["pacemakerd", "--version"])
    match = re.search(r"Pacemaker (\d+)\.", done.stdout)
    assert match, done.stdout
    return int(match.group(1)) >= 3


def syntax_row(cib: Path) -> Dict[str, str]:
    rows = {r.name: r for r in check_pacemaker(parse_cib(cib.read_text(encoding="utf-8")), "vm1", ["r0"])}
    row = rows["promotable-syntax"]
    return {"status": row.status, "found": row.found, "crm": row.fix.crm, "pcs": row.fix.pcs,
            "promoted-max": rows["promoted-max"].status}


def run_fix(commands: str, tmp_path: Path, cib: Path) -> None:
    env = dict(os.environ, **crmsh_env(tmp_path, cib))
    done = subprocess.run(["/bin/sh", "-ec", commands], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, f"{commands}\n{done.stdout}{done.stderr}"


def test_crm_fix_converts_a_legacy_ms_on_this_pacemaker(tmp_path: Path) -> None:
    need("crm", "cibadmin", "crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    cib = tmp_path / "cib.xml"
    cib.write_text((FIXTURES / "cib" / "crmsh-ms-good.xml").read_text(encoding="utf-8"), encoding="utf-8")
    before = syntax_row(cib)
    assert before["status"] == "warn" and "a <master> element" in before["found"]
    if pacemaker_3():  # Pacemaker 2.1 reads <master> and master-max without a word
        assert len(deprecations(cib)) == 4, deprecations(cib)
    run_fix(before["crm"], tmp_path, cib)
    assert deprecations(cib) == []
    after = syntax_row(cib)
    assert after["status"] == "ok" and after["promoted-max"] == "ok", after
    assert "<master" not in cib.read_text(encoding="utf-8")
    assert promoted_by_pacemaker(tmp_path, cib) == sorted(NODES)


def test_pcs_fix_renames_everywhere_and_converts_the_master_on_pacemaker_3(tmp_path: Path) -> None:
    need("cibadmin", "crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    cib = tmp_path / "cib.xml"
    cib.write_text((FIXTURES / "cib" / "crmsh-ms-good.xml").read_text(encoding="utf-8"), encoding="utf-8")
    run_fix(syntax_row(cib)["pcs"], tmp_path, cib)
    after = syntax_row(cib)
    if pacemaker_3():  # cibadmin --upgrade --force: pacemaker-4.0 has no <master>
        assert deprecations(cib) == [] and after["status"] == "ok", after
        assert "<master" not in cib.read_text(encoding="utf-8")
    else:  # pacemaker-3.9, Pacemaker 2.1's newest schema, keeps <master>: only it is left
        assert after["status"] == "warn" and after["found"].startswith(
            "ms_drbd_r0: deprecated syntax: a <master> element (crmsh's ms). "), after
    assert after["promoted-max"] == "ok"
    assert promoted_by_pacemaker(tmp_path, cib) == sorted(NODES)
