"""One rule for the ids of the DRBD clone and the VM's constraints: livemig config creates what check fixes."""

from __future__ import annotations

import pytest

from livemig.agents.virtualdomain.metadata import METADATA
from livemig.check.pacemaker import check_pacemaker
from livemig.pacemaker.cib import parse_cib
from livemig.pacemaker.config_generator import VmSetup, crmsh_commands, pcs_commands

#: a VM primitive and nothing for its DRBD resource: check proposes creating the clone
CIB = """<cib><configuration><crm_config/><nodes/><resources>
  <primitive id="vm1" class="ocf" provider="livemig" type="VirtualDomain"/>
</resources><constraints/></configuration></cib>"""
#: the clone livemig config creates, and no constraint: check proposes the colocation and the order
CLONED = """<cib><configuration><crm_config/><nodes/><resources>
  <primitive id="vm1" class="ocf" provider="livemig" type="VirtualDomain"/>
  <clone id="{clone}"><meta_attributes id="m"><nvpair id="m1" name="promotable" value="true"/></meta_attributes>
    <primitive id="{primitive}" class="ocf" provider="linbit" type="drbd">
      <instance_attributes id="i"><nvpair id="i1" name="drbd_resource" value="{res}"/></instance_attributes>
    </primitive></clone>
</resources><constraints/></configuration></cib>"""


@pytest.mark.parametrize("res", ["r0", "r0+r1", "srv00-sql1_0", "a.b"])
def test_check_fixes_name_what_config_creates(res: str) -> None:
    """Before, check built ms_drbd_<RES> and drbd_<RES> from the raw name ('r0+r1' is no Pacemaker id)
    and its pcs fix let pcs name the clone drbd_<RES>-clone; livemig config replaced '+' by '_'."""
    setup = VmSetup(vm_id="vm1", config_path="/etc/libvirt/qemu/vm1.xml", drbd_resources=[res],
                    actions=list(METADATA.actions))
    crm_config, pcs_config = crmsh_commands(setup), pcs_commands(setup)
    rows = {r.name: r for r in check_pacemaker(parse_cib(CIB), "vm1", [res])}
    crm_fix = rows["drbd-clone"].fix.render()
    pcs_fix = rows["drbd-clone"].fix.render(pcs=True)
    primitive = crm_config.split("drbd_resource=")[0].split("primitive ")[-1].split()[0]
    clone = crm_config.split("\nclone ")[1].split()[0]
    assert f"primitive {primitive} ocf:linbit:drbd" in crm_fix and f"clone {clone} {primitive} " in crm_fix
    assert f"pcs resource create {primitive} " in pcs_fix
    assert f"pcs resource promotable {primitive} {clone} meta " in pcs_fix
    assert f"pcs resource promotable {primitive} {clone} meta " in pcs_config
    colocation = crm_config.split("\ncolocation ")[1].split()[0]
    order = crm_config.split("\norder ")[1].split()[0]
    cloned = parse_cib(CLONED.format(clone=clone, primitive=primitive, res=res))
    rows = {r.name: r for r in check_pacemaker(cloned, "vm1", [res])}
    assert colocation in rows["colocation"].fix.render() and order in rows["order"].fix.render()
