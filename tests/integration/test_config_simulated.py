"""`livemig config`'s output, loaded by crmsh and by pcs into a file CIB, then run by crm_simulate.

What a user gets from pasting the output, on this machine's Pacemaker (2.1 on Debian 12, 3.0 in
the Debian 13 tier): two nodes come up, DRBD reports its promotion score on both (the transient
attribute ocf:linbit:drbd sets), and the scheduler must promote the DRBD clone on both nodes
(dual-primary, which live migration needs) and start the VM on one of them. Nothing touches a
live cluster: every tool works on the files named by CIB_file or -f.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from tests.integration.test_check_roundtrip import FENCING, config_output, crm_verify, crmsh_env, empty_cib, need

NODES = ("alpha", "beta")
DRBD_PRIMITIVE = "drbd_r0"  # what `livemig config ... --drbd-resource r0` names it
VM = "vm1"


def tool(argv: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    result = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{shlex.join(argv)} -> {result.returncode}\n{result.stdout}{result.stderr}"
    return result


def cib_with_nodes(tmp_path: Path, nodes: Tuple[str, ...] = NODES) -> Path:
    cib = empty_cib(tmp_path)
    for i, name in enumerate(nodes, 1):
        tool(["cibadmin", "--create", "-o", "nodes", "-X", f'<node id="{i}" uname="{name}"/>'],
             {"CIB_file": str(cib)})
    return cib


def simulate_promotion(tmp_path: Path, cib: Path) -> ET.Element:
    """Both nodes online, DRBD's promotion score on both, every transition simulated: crm_mon's view."""
    online = tmp_path / "online.xml"
    tool(["crm_simulate", "--xml-file", str(cib), "--quorum", "true", "--save-output", str(online)]
         + [arg for n in NODES for arg in ("--node-up", n)])
    for name in NODES:
        tool(["crm_attribute", "--node", name, "--name", f"master-{DRBD_PRIMITIVE}", "--update", "10000",
              "--lifetime", "reboot"], {"CIB_file": str(online)})
    final = tmp_path / "final.xml"
    sim = tool(["crm_simulate", "--xml-file", str(online), "--simulate", "--save-output", str(final)])
    crm_verify(final)  # the cluster as it then is: no error, no warning
    view = tool(["crm_mon", "--one-shot", "--output-as=xml"], {"CIB_file": str(final)})
    root = ET.fromstring(view.stdout)
    root.set("simulation", sim.stdout)
    return root


def nodes_in_role(root: ET.Element, rsc: str, roles: Set[str]) -> List[str]:
    found = []
    for res in root.iter("resource"):
        if res.get("id", "").split(":")[0] == rsc and res.get("role") in roles and res.get("active") == "true":
            found.extend(node.get("name", "") for node in res.findall("node"))
    return sorted(found)


def assert_dual_primary_and_vm(root: ET.Element) -> None:
    detail = root.get("simulation", "")
    assert nodes_in_role(root, DRBD_PRIMITIVE, {"Promoted", "Master"}) == sorted(NODES), detail
    assert len(nodes_in_role(root, VM, {"Started"})) == 1, detail


def test_crmsh_config_promotes_drbd_on_both_nodes(tmp_path: Path) -> None:
    need("crm", "cibadmin", "crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    cib = cib_with_nodes(tmp_path)
    script = tmp_path / "vm1.crm"
    script.write_text(FENCING + config_output(), encoding="utf-8")
    result = subprocess.run(["crm", "configure", "load", "update", str(script)],
                            env=dict(os.environ, **crmsh_env(tmp_path, cib)),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_dual_primary_and_vm(simulate_promotion(tmp_path, cib))


def test_pcs_config_promotes_drbd_on_both_nodes(tmp_path: Path) -> None:
    need("pcs", "cibadmin", "crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    cib = cib_with_nodes(tmp_path)
    # --force: pcs 0.12 finds cluster-glue's external/ssh meta-data invalid (a stand-in device anyway).
    commands = [["pcs", "stonith", "create", f"fence-{n}", "external/ssh", f"hostlist={n}", "--force"] for n in NODES]
    for line in config_output(pcs=True).splitlines():
        if line.startswith("pcs "):
            argv = shlex.split(line)
            if "ocf:livemig:VirtualDomain" in argv or "ocf:linbit:drbd" in argv:
                argv.append("--force")  # neither agent is installed on a test host
            commands.append(argv)
    for argv in commands:
        tool([argv[0], "-f", str(cib), *argv[1:]])
    assert_dual_primary_and_vm(simulate_promotion(tmp_path, cib))
