"""`livemig config` with hostile-but-legal values, applied with the real crmsh and pcs.

Each value (spaces, quotes, shell syntax, a crmsh comment sign) must reach the
CIB as exactly that value, and the commands must create exactly the expected
objects: nothing a value could have added. pcs lines go through a real POSIX
shell (/bin/sh), as an operator pasting them would run them. Nothing touches a
live cluster (CIB_file for crmsh and cibadmin, -f for pcs).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

from lxml import etree

from livemig.cli.check_commands import vm_actions
from livemig.pacemaker.config_generator import VmSetup, crmsh_commands, pcs_commands
from tests.integration.test_check_roundtrip import (
    DOMAIN,
    FENCING,
    crm_verify,
    crmsh_env,
    empty_cib,
    livemig,
    need,
    sh,
)

CRMSH_CONFIG = "/srv/vm 1/it's \"a\" $(id) `id`;|&<>#*?~=%!{x}[y].xml"
PCS_CONFIG = CRMSH_CONFIG + " back\\slash é"
HYPERVISOR = "qemu+ssh://root@beta/system?keyfile=/root/.ssh/id x&no_verify=1;#"


def setup(config_path: str) -> VmSetup:
    return VmSetup(vm_id="vm1", config_path=config_path, drbd_resources=["r0"], actions=vm_actions(),
                   hypervisor=HYPERVISOR)


def objects(cib: Path) -> Tuple[List[Tuple[str, str]], Dict[str, str], List[Tuple[str, str, str]]]:
    """(kind, id) of every resource and constraint, vm1's parameters, and every cluster property."""
    root = etree.parse(str(cib)).getroot()
    found = sorted((el.tag, el.get("id") or "") for el in root.iterfind("configuration/resources//*[@id]")
                   if el.tag in ("primitive", "clone", "master", "group"))
    found += sorted((el.tag, el.get("id") or "") for el in root.iterfind("configuration/constraints/*"))
    params = {nv.get("name") or "": nv.get("value") or "" for nv in
              root.iterfind("configuration/resources/primitive[@id='vm1']/instance_attributes/nvpair")}
    props = sorted((nv.getparent().get("id") or "", nv.get("name") or "", nv.get("value") or "")
                   for nv in root.iterfind("configuration/crm_config//nvpair"))
    return found, params, props


EXPECTED = [("clone", "ms_drbd_r0"), ("primitive", "drbd_r0"), ("primitive", "fence-alpha"),
            ("primitive", "fence-beta"), ("primitive", "vm1")]


def test_crmsh_reads_each_hostile_value_as_one_value(tmp_path: Path) -> None:
    need("crm", "cibadmin", "crm_verify")
    cib = empty_cib(tmp_path)
    script = tmp_path / "vm1.crm"
    script.write_text(FENCING + crmsh_commands(setup(CRMSH_CONFIG)), encoding="utf-8")
    result = sh(["crm", "configure", "load", "update", str(script)], crmsh_env(tmp_path, cib))
    assert result.returncode == 0, result.stdout + result.stderr
    crm_verify(cib)
    found, params, props = objects(cib)
    assert [kind for kind in found if kind[0] not in ("rsc_colocation", "rsc_order")] == EXPECTED
    assert [kind[0] for kind in found if kind[0] in ("rsc_colocation", "rsc_order")] == ["rsc_colocation",
                                                                                          "rsc_order"]
    assert params == {"config": CRMSH_CONFIG, "hypervisor": HYPERVISOR}
    assert [(name, value) for _set, name, value in props] == [("stonith-enabled", "true")]


def test_pcs_through_a_shell_reads_each_hostile_value_as_one_value(tmp_path: Path) -> None:
    need("pcs", "cibadmin", "crm_verify")
    cib = empty_cib(tmp_path)
    # pcs, as the shell runs it, pointed at the scratch CIB (and forced for the agent, which a test
    # host does not have installed)
    wrapper = ('pcs() { case "$*" in *ocf:livemig:VirtualDomain*) command pcs -f "$CIB" "$@" --force;; '
               '*) command pcs -f "$CIB" "$@";; esac || exit 1; }\n'
               "pcs stonith create fence-alpha external/ssh hostlist=alpha\n"
               "pcs stonith create fence-beta external/ssh hostlist=beta\n")
    script = wrapper + pcs_commands(setup(PCS_CONFIG))
    result = subprocess.run(["/bin/sh", "-c", script], env={"CIB": str(cib), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    crm_verify(cib)
    found, params, props = objects(cib)
    assert [kind for kind in found if kind[0] not in ("rsc_colocation", "rsc_order")] == EXPECTED
    assert sorted(kind[0] for kind in found if kind[0] in ("rsc_colocation", "rsc_order")) == ["rsc_colocation",
                                                                                                "rsc_order"]
    assert params == {"config": PCS_CONFIG, "hypervisor": HYPERVISOR}
    assert [(name, value) for _set, name, value in props] == [("stonith-enabled", "true")]


def test_a_value_with_a_newline_is_refused_before_anything_is_printed() -> None:
    """A newline ends a crmsh statement (and, outside quotes, a shell command): the value is refused."""
    injected = "/etc/libvirt/qemu/vm1.xml'\ndelete fence-alpha\n#'"
    for extra in ([], ["--pcs"]):
        code, text = livemig(["config", "vm1", "--domain-xml", str(DOMAIN), "--drbd-resource", "r0",
                              "--config-path", injected, *extra])
        assert code == 2 and "contains a control character (U+000A" in text
        assert "primitive" not in text and "pcs " not in text
