"""`livemig config`: the commands, their operation timeouts, and the CLI around check/config."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import pytest

from livemig.agents.virtualdomain_meta import METADATA
from livemig.check.config_commands import ConfigError, VmSetup, crmsh_commands, pcs_commands
from livemig.cli.main import main
from livemig.ocf.metadata import Action
from livemig.run import CommandResult, CommandRunner
from tests.unit.check.helpers import CIB, DRBD

DOMAIN = str(CIB / "domain-vm1.xml")


class FileCibRunner(CommandRunner):
    """cibadmin --query answered from the file CIB_file names, as the real one does."""

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        assert list(argv) == ["cibadmin", "--query"] and env is not None
        return CommandResult(list(argv), 0, Path(env["CIB_file"]).read_text(encoding="utf-8"), "")


def run(argv: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, runner=FileCibRunner(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def setup(**kw: object) -> VmSetup:
    values = {"vm_id": "vm1", "config_path": "/etc/libvirt/qemu/vm1.xml", "drbd_resources": ["r0"],
              "actions": METADATA.actions}
    values.update(kw)
    return VmSetup(**values)  # type: ignore[arg-type]


def test_crmsh_commands() -> None:
    text = crmsh_commands(setup())
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[0].startswith("primitive drbd_r0 ocf:linbit:drbd params drbd_resource=r0 op monitor interval=29s "
                               "role=Promoted")
    assert lines[1] == ("clone ms_drbd_r0 drbd_r0 meta promotable=true promoted-max=2 promoted-node-max=1 "
                        "clone-max=2 clone-node-max=1 notify=true interleave=true")
    assert "colocation col_vm1_on_ms_drbd_r0 inf: vm1 ms_drbd_r0:Promoted" in lines
    assert "order ord_ms_drbd_r0_before_vm1 Mandatory: ms_drbd_r0:promote vm1:start" in lines
    assert lines[-1] == "property stonith-enabled=true"
    assert "fencing (stonith) device" in text


def test_operation_timeouts_come_from_the_meta_data() -> None:
    vm_line = next(line for line in crmsh_commands(setup()).splitlines() if line.startswith("primitive vm1"))
    for action in METADATA.actions:
        if action.name in ("start", "stop", "monitor", "migrate_to", "migrate_from"):
            assert f"op {action.name}" in vm_line and f"timeout={action.timeout}s" in vm_line
    custom = setup(actions=[Action("start", 11), Action("migrate_to", 222), Action("monitor", 7, interval=3)])
    vm_line = next(line for line in crmsh_commands(custom).splitlines() if line.startswith("primitive vm1"))
    assert vm_line.endswith("op start timeout=11s op monitor interval=3s timeout=7s op migrate_to timeout=222s")
    assert "no migrate_from timeout" in crmsh_commands(custom)


def test_pcs_commands() -> None:
    lines = [line for line in pcs_commands(setup(drbd_resources=["r0", "r1"])).splitlines()
             if not line.startswith("#")]
    assert lines[0].startswith("pcs resource create drbd_r0 ocf:linbit:drbd drbd_resource=r0 op monitor")
    assert "promotable ms_drbd_r0 promoted-max=2" in lines[0]
    assert "pcs constraint colocation add vm1 with Promoted ms_drbd_r1 INFINITY" in lines
    assert "pcs constraint order promote ms_drbd_r1 then start vm1" in lines
    assert lines[-1] == "pcs property set stonith-enabled=true"


@pytest.mark.parametrize("bad", [{"vm_id": "1 vm"}, {"config_path": "vm1.xml"}, {"drbd_resources": []},
                                 {"drbd_resources": ["r0; rm"]}])
def test_bad_setups_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError):
        crmsh_commands(setup(**bad))


def test_cli_config() -> None:
    code, out, err = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0"])
    assert code == 0 and err == "" and f"config={DOMAIN}" in out
    code, out, _ = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0", "--pcs",
                        "--config-path", "/etc/libvirt/qemu/vm1.xml"])
    assert code == 0 and "pcs resource create vm1 ocf:livemig:VirtualDomain config=/etc/libvirt/qemu/vm1.xml" in out
    code, _, err = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r7"])
    assert code == 0 and "disk vda is on DRBD resource r0, which no --drbd-resource names" in err
    code, _, err = run(["config", "vm1", "--domain-xml", "/nonexistent.xml", "--drbd-resource", "r0"])
    assert code == 2 and "/nonexistent.xml" in err


def test_cli_check_table_json_and_exit_codes() -> None:
    base = ["check", "vm1", "--drbd-xml", str(DRBD / "check-9-good.dump-xml.txt"), "--domain-xml", DOMAIN,
            "--skip-runtime", "--skip-libvirt", "--peer", "beta"]
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-good.xml")])
    assert code == 0 and "nothing prevents a safe live migration" in out and "maintenance-mode=true" in out
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-promoted-max-1.xml")])
    assert code == 1
    assert "fix: crm resource meta ms_drbd_r0 set promoted-max 2" in out
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-promoted-max-1.xml"), "--pcs", "--problems"])
    assert "fix: pcs resource meta ms_drbd_r0 promoted-max=2" in out and "\nok " not in out
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-promoted-max-1.xml"), "--json"])
    document = json.loads(out)
    assert document["exit_code"] == 1 and document["counts"]["fail"] == 1
    failed = [c for c in document["checks"] if c["status"] == "fail"]
    assert failed[0]["name"] == "promoted-max" and failed[0]["fix_detail"]["pcs"].startswith("pcs resource meta")
    code, _, err = run(base + ["--cib", "/nonexistent/cib.xml"])
    assert code == 2 and "/nonexistent/cib.xml" in err
    assert run(["check", "--help"])[0] == 0
