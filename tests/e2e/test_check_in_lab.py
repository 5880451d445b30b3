"""`livemig check` on the lab's real cluster: passes as configured, fails on one broken thing.

The CIB and DRBD's runtime state are the lab's own (cibadmin on a node, the DRBD simulator's
drbdsetup); the DRBD configuration is what drbd-utils' own parser makes of a .res file
describing the lab's resource (the simulator has no dump-xml of its own).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Dict, List

from tests.lab import cluster as lab_cluster
from tests.lab import core
from tests.lab.labfixtures import LabSession

REPO = Path(__file__).resolve().parents[2]


def lab_res(names: List[str]) -> str:
    hosts = "".join(f"  on {n} {{ node-id {i}; address {core.node_ip(n)}:7788; }}\n" for i, n in enumerate(names))
    return (f"resource {core.DRBD_RES} {{\n"
            "  options { auto-promote no; }\n"
            "  net { protocol C; fencing resource-and-stonith; after-sb-0pri discard-zero-changes;"
            " after-sb-1pri disconnect; after-sb-2pri disconnect; allow-two-primaries yes; }\n"
            '  handlers { fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh";'
            ' unfence-peer "/usr/lib/drbd/crm-unfence-peer.9.sh"; }\n'
            f"  volume 0 {{ device /dev/drbd{core.DRBD_MINOR}; disk /dev/loop0; meta-disk internal; }}\n"
            + hosts + "}\n")


def dump_xml(tmp_path: Path, names: List[str]) -> Path:
    res = tmp_path / "lab.res"
    res.write_text(lab_res(names))
    out = subprocess.run(["drbdadm", "-c", str(res), "-v", "dump-xml", core.DRBD_RES], check=True,
                         capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                             "__DRBD_NODE__": names[0]})
    path = Path(core.vm_config_path()).parent / "lab-drbd.dump-xml"
    path.write_text(out.stdout)
    return path


def check(lab: LabSession, drbd_xml: Path) -> tuple[int, Dict[str, Any]]:
    node, peer = lab.names[0], lab.names[1]
    res = lab.run(node, "env", f"PYTHONPATH={REPO / 'lib'}", "python3", "-m", "livemig", "check", core.VM_NAME,
                  "--peer", peer, "--drbd-xml", str(drbd_xml), "--json", check=False, timeout=120)
    assert res.stdout.strip(), res.stderr
    return res.returncode, json.loads(res.stdout)


def failed(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = report.get("checks") or report.get("results") or []
    return [r for r in rows if r.get("status") in ("fail", "unknown")]


def test_check_passes_on_the_lab_then_catches_promoted_max_1(lab: LabSession, tmp_path: Path) -> None:
    drbd_xml = dump_xml(tmp_path, lab.names)
    code, report = check(lab, drbd_xml)
    assert code == 0, json.dumps(failed(report), indent=1)
    lab.crm("resource", "meta", "drbd-r0-clone", "set", "promoted-max", "1")
    try:
        code, report = check(lab, drbd_xml)
        bad = failed(report)
        assert code == 1, json.dumps(report, indent=1)
        # The promoted-max line, with its fix; Pacemaker demoting one side meanwhile shows up
        # in the runtime layer too, which is right.
        named = [r for r in bad if r.get("layer") == "pacemaker" and "promoted-max" in json.dumps(r)]
        assert named and "promoted-max 2" in json.dumps(named[0]), json.dumps(bad, indent=1)
    finally:
        lab.crm("resource", "meta", "drbd-r0-clone", "set", "promoted-max", "2")
        core.wait_for("both DRBD instances promoted again",
                      lambda: lab_cluster.promoted_nodes(lab.names[0]) == set(lab.names), timeout=90, interval=0.5)
