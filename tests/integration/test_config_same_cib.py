"""`livemig config --pcs` and `livemig config` (crmsh) build the same CIB, and pcs says nothing deprecated.

Run on this machine's tools (Debian 12: pcs 0.11.5, crmsh 4.4, Pacemaker 2.1) and in the Debian 13
tier (pcs 0.12, crmsh 5, Pacemaker 3.0). Each output is applied to its own CIB file (pcs -f, crmsh
through CIB_file), the scheduler runs it (crm_simulate; crm_verify -x on the outcome), and the resources and constraints
`livemig config` makes are compared after a normalisation that only forgets what the two tools
name or order differently: the ids of nvpairs, operations and attribute sets (the resources' and
constraints' own ids are compared: the pcs commands give the crmsh ids), and the order of
attributes, nvpairs and operations.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Tuple

from tests.integration.test_check_roundtrip import (
    DOMAIN,
    config_output,
    crmsh_env,
    livemig,
    need,
    pcs_commands,
)
from tests.integration.test_config_simulated import (
    NODES,
    assert_dual_primary_and_vm,
    cib_with_nodes,
    simulate_promotion,
    tool,
)

OWN_IDS = {"primitive", "clone", "rsc_colocation", "rsc_order"}  # elements whose id `livemig config` chooses
MADE = ("drbd_r0", "ms_drbd_r0", "vm1", "col_vm1_on_ms_drbd_r0", "ord_ms_drbd_r0_before_vm1")


def canonical(element: ET.Element) -> Tuple[object, ...]:
    attrs = sorted((k, v) for k, v in element.attrib.items() if k != "id" or element.tag in OWN_IDS)
    return (element.tag, tuple(attrs), tuple(sorted(canonical(child) for child in element)))


def top_level(cib: Path, wanted: Tuple[str, ...]) -> Dict[str, Tuple[object, ...]]:
    """Canonical resources and constraints of ``cib`` by id: those in ``wanted``, and any DRBD primitive or clone."""
    root = ET.parse(cib).getroot()
    found = {}
    for section in ("resources", "constraints"):
        container = root.find(f"configuration/{section}")
        assert container is not None
        for element in container:
            if element.get("id") in wanted or element.get("id", "").startswith(("drbd_", "ms_drbd_")):
                found[element.get("id", "")] = canonical(element)
    return found


def made_by_config(cib: Path) -> List[Tuple[object, ...]]:
    """The top-level resources and constraints `livemig config` creates, canonical, by id."""
    found = top_level(cib, MADE)
    assert set(found) == {"ms_drbd_r0", "vm1", "col_vm1_on_ms_drbd_r0", "ord_ms_drbd_r0_before_vm1"}, found
    props = [(p.get("name"), p.get("value")) for p in ET.parse(cib).getroot().iter("nvpair")
             if p.get("name") == "stonith-enabled"]
    assert props == [("stonith-enabled", "true")]
    return [found[key] for key in sorted(found)]


def run_pcs(cib: Path, output: str, nodes: Tuple[str, ...]) -> List[str]:
    """Runs ``output``'s pcs commands on ``cib`` with pcs -f; what pcs said to each (fencing excepted)."""
    said: List[str] = []
    for argv in pcs_commands(output, nodes):
        full = [argv[0], "-f", str(cib), *argv[1:]]
        done = subprocess.run(full, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{shlex.join(full)} -> {done.returncode}\n{done.stdout}{done.stderr}"
        if argv[1:3] != ["stonith", "create"]:
            said.append(f"$ {shlex.join(full)}\n{done.stdout}{done.stderr}")
    return said


def load_crmsh(tmp_path: Path, cib: Path, output: str, nodes: Tuple[str, ...]) -> None:
    """Loads a fencing device per node and ``output`` (crmsh) into ``cib`` with crm configure load update."""
    script = tmp_path / "vm1.crm"
    fencing = "".join(f"primitive fence-{n} stonith:external/ssh params hostlist={n}\n" for n in nodes)
    script.write_text(fencing + output, encoding="utf-8")
    done = subprocess.run(["crm", "configure", "load", "update", str(script)],
                          env=dict(os.environ, **crmsh_env(tmp_path, cib)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pcs_output_is_silent_and_gives_the_crmsh_cib(tmp_path: Path) -> None:
    need("pcs", "crm", "cibadmin", "crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    (tmp_path / "pcs").mkdir()
    pcs_cib, said = apply_pcs(tmp_path / "pcs")
    text = "\n".join(said)
    assert "deprecat" not in text.lower(), text
    (tmp_path / "crmsh").mkdir()
    crmsh_cib = apply_crmsh(tmp_path / "crmsh")
    assert made_by_config(pcs_cib) == made_by_config(crmsh_cib)
    for cib in (pcs_cib, crmsh_cib):  # crm_verify -x passes on the cluster as it then runs, both promoted
        assert_dual_primary_and_vm(simulate_promotion(cib.parent, cib))


def test_crmsh_output_keeps_no_comment_in_the_cib(tmp_path: Path) -> None:
    need("crm", "cibadmin")
    cib = apply_crmsh(tmp_path)
    text = cib.read_text(encoding="utf-8")
    assert "<!--" not in text and "livemig config" not in text
    drbd = ET.parse(cib).getroot().find(".//primitive[@id='drbd_r0']")
    assert drbd is not None
    timeouts = {(op.get("name"), op.get("role")): op.get("timeout") for op in drbd.iter("op")}
    assert timeouts == {("start", None): "240s", ("stop", None): "100s", ("promote", None): "90s",
                        ("demote", None): "90s", ("notify", None): "90s", ("monitor", "Promoted"): "20s",
                        ("monitor", "Unpromoted"): "20s"}


# --two-primaries migration (DRBD 9): no DRBD clone, the VM with drbd_two_primaries=migration and kept off
# the diskless tiebreaker by a location constraint; both outputs must give the same CIB here too.
WINDOW_NODES = ("alpha", "beta", "tb")
WINDOW_MADE = ("vm1", "location-vm1-tb--INFINITY")


def window_output(pcs: bool = False) -> str:
    code, text = livemig(["config", "vm1", "--domain-xml", str(DOMAIN), "--drbd-resource", "r0",
                          "--config-path", "/etc/libvirt/qemu/vm1.xml", "--two-primaries", "migration",
                          "--diskless", "tb"] + (["--pcs"] if pcs else []))
    assert code == 0, text
    return text


def window_made(cib: Path) -> List[Tuple[object, ...]]:
    found = top_level(cib, WINDOW_MADE)
    assert set(found) == set(WINDOW_MADE), found  # no DRBD primitive or clone in this mode
    return [found[key] for key in sorted(found)]


def apply_pcs(tmp_path: Path, window: bool = False) -> Tuple[Path, List[str]]:
    """`livemig config --pcs` (``window``: with --two-primaries migration on three nodes) run on a new CIB file."""
    cib = cib_with_nodes(tmp_path, WINDOW_NODES) if window else cib_with_nodes(tmp_path)
    output = window_output(pcs=True) if window else config_output(pcs=True)
    return cib, run_pcs(cib, output, WINDOW_NODES if window else NODES)


def apply_crmsh(tmp_path: Path, window: bool = False) -> Path:
    """`livemig config` (``window``: with --two-primaries migration on three nodes) loaded into a new CIB file."""
    cib = cib_with_nodes(tmp_path, WINDOW_NODES) if window else cib_with_nodes(tmp_path)
    load_crmsh(tmp_path, cib, window_output() if window else config_output(), WINDOW_NODES if window else NODES)
    return cib


def vm_nodes(tmp_path: Path, cib: Path, standby: Tuple[str, ...] = ()) -> List[str]:
    """Where the scheduler runs vm1 with every node up and ``standby`` in standby (crm_verify on the outcome)."""
    online = tmp_path / "online.xml"
    tool(["crm_simulate", "--xml-file", str(cib), "--quorum", "true", "--save-output", str(online)]
         + [arg for n in WINDOW_NODES for arg in ("--node-up", n)])
    for name in standby:
        tool(["crm_attribute", "--node", name, "--name", "standby", "--update", "on"], {"CIB_file": str(online)})
    final = tmp_path / "final.xml"
    tool(["crm_simulate", "--xml-file", str(online), "--simulate", "--save-output", str(final)])
    tool(["crm_verify", "-x", str(final)])
    view = ET.fromstring(tool(["crm_mon", "--one-shot", "--output-as=xml"], {"CIB_file": str(final)}).stdout)
    return sorted(node.get("name", "") for res in view.iter("resource")
                  if res.get("id") == "vm1" and res.get("active") == "true" for node in res.findall("node"))


def test_window_outputs_give_the_same_cib_and_keep_the_vm_off_the_tiebreaker(tmp_path: Path) -> None:
    need("pcs", "crm", "cibadmin", "crm_verify", "crm_simulate", "crm_attribute", "crm_mon")
    (tmp_path / "pcs").mkdir()
    pcs_cib, said = apply_pcs(tmp_path / "pcs", window=True)
    text = "\n".join(said)
    assert "deprecat" not in text.lower(), text
    (tmp_path / "crmsh").mkdir()
    crmsh_cib = apply_crmsh(tmp_path / "crmsh", window=True)
    assert window_made(pcs_cib) == window_made(crmsh_cib)
    vm = ET.parse(crmsh_cib).getroot().find(".//primitive[@id='vm1']")
    assert vm is not None
    params = {p.get("name"): p.get("value") for p in vm.iterfind("instance_attributes/nvpair")}
    assert params["drbd_two_primaries"] == "migration"
    for cib in (pcs_cib, crmsh_cib):
        (cib.parent / "up").mkdir()
        assert len(vm_nodes(cib.parent / "up", cib)) == 1
        assert vm_nodes(cib.parent / "up", cib)[0] in ("alpha", "beta")
        (cib.parent / "standby").mkdir()  # both diskful nodes in standby: the VM stops, never on tb
        assert vm_nodes(cib.parent / "standby", cib, standby=("alpha", "beta")) == []


def test_window_output_passes_livemig_check(tmp_path: Path) -> None:
    """The crmsh output of --two-primaries migration, loaded, passes `livemig check` with drbdadm 9's own dump
    of the DRBD file it describes (tests/fixtures/drbd/check/check-9-window-3nodes.res: three nodes, tb diskless)."""
    need("crm", "cibadmin")
    cib = apply_crmsh(tmp_path, window=True)  # (crm_verify runs on the simulated cluster in the test above)
    code, text = livemig(["check", "vm1", "--cib", str(cib), "--drbd-xml", str(THREE_NODES),
                          "--domain-xml", str(DOMAIN), "--peer", "beta", "--skip-runtime", "--skip-libvirt",
                          "--skip-host"])
    assert code == 0 and " 0 fail" in text, text
    assert "r0 is not managed by Pacemaker" in text and "never runs on tb (diskless)" in text


THREE_NODES = Path(__file__).resolve().parents[1] / "fixtures" / "drbd" / "check" / "check-9-window-3nodes.dump-xml.txt"


def _check_json(cib: Path) -> Dict[str, Any]:
    code, text = livemig(["check", "vm1", "--cib", str(cib), "--drbd-xml", str(THREE_NODES), "--domain-xml",
                          str(DOMAIN), "--peer", "beta", "--skip-runtime", "--skip-libvirt", "--skip-host", "--json"])
    document = json.loads(text)
    assert document["exit_code"] == code
    return document



def test_switching_a_clone_setup_to_the_window_mode_with_the_printed_fix(tmp_path: Path) -> None:
    """An always-mode setup given drbd_two_primaries=migration fails drbd-clone; the printed crm (pcs) fix, run
    as printed, removes the clone, its primitive and constraints, and the row then passes."""
    need("pcs", "crm", "cibadmin")
    for tool_name in ("crm", "pcs"):
        (tmp_path / tool_name).mkdir()
        if tool_name == "crm":
            cib = apply_crmsh(tmp_path / tool_name)
        else:
            cib, _said = apply_pcs(tmp_path / tool_name)
        env = dict(crmsh_env(tmp_path / tool_name, cib))
        tool(["crm_resource", "--resource", "vm1", "--set-parameter", "drbd_two_primaries", "--parameter-value",
              "migration"], {"CIB_file": str(cib)})
        document = _check_json(cib)
        (row,) = [c for c in document["checks"] if c["name"] == "drbd-clone"]
        assert row["status"] == "fail" and "two owners of the role" in row["found"]
        for command in row["fix_detail"][tool_name].split("; "):
            argv = shlex.split(command)
            if argv[0] == "pcs":
                argv = ["pcs", "-f", str(cib), *argv[1:]]
            tool(argv, env)
        root = ET.parse(cib).getroot()
        assert [e.get("id") for e in root.iter() if "drbd_r0" in (e.get("id") or "")] == []
        (row,) = [c for c in _check_json(cib)["checks"] if c["name"] == "drbd-clone"]
        assert row["status"] == "ok", row
