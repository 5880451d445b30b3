"""Running `livemig check` over fixture files, in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from livemig.check.model import CheckReport, CheckResult
from livemig.check.readiness import CheckOptions, check_vm
from livemig.ocf.deadline import Deadline
from tests.unit.drbd.scripted import ScriptedRunner

ROOT = Path(__file__).resolve().parents[2] / "fixtures"
CIB = ROOT / "cib"
DRBD = ROOT / "drbd" / "check"
DOMAIN = CIB / "domain-vm1.xml"


def run_check(cib: str = "crmsh-good.xml", drbd: str = "check-9-good.dump-xml.txt",
              domain: Optional[Path] = DOMAIN, vm: str = "vm1", **extra: object) -> CheckReport:
    """check_vm over fixtures; runtime and libvirt skipped unless asked for in ``extra``."""
    options = CheckOptions(cib_file=str(CIB / cib), drbd_xml=(DRBD / drbd).read_text(encoding="utf-8"),
                           domain_xml=domain.read_text(encoding="utf-8") if domain else None,
                           runtime=bool(extra.pop("runtime", False)), libvirt=bool(extra.pop("libvirt", False)),
                           peer=str(extra.pop("peer", "beta")))
    runner = extra.pop("runner", None) or ScriptedRunner({"cibadmin": (0, (CIB / cib).read_text())})
    return check_vm(vm, options, runner=runner, deadline=Deadline(30), **extra)  # type: ignore[arg-type]


def problems(report: CheckReport) -> list[CheckResult]:
    return [r for r in report.results if r.status in ("fail", "unknown")]
