"""Check results: one row per condition, with what was found and the exact fix.

A row's ``status`` is one of:

- ``ok``: the condition holds;
- ``warn``: migration can work, but something is risky or was not checked;
- ``fail``: migration is unsafe or will not happen until fixed;
- ``unknown``: the input could not be read, so the condition could not be judged.

The exit status of ``livemig check`` follows from the rows (:func:`exit_code`):
1 when any row fails, else 2 when any is unknown, else 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

OK = "ok"
WARN = "warn"
FAIL = "fail"
UNKNOWN = "unknown"
STATUSES = (OK, WARN, FAIL, UNKNOWN)

LAYER_DOMAIN = "domain"
LAYER_DRBD_CONFIG = "drbd-config"
LAYER_DRBD_RUNTIME = "drbd-runtime"
LAYER_PACEMAKER = "pacemaker"
LAYER_LIBVIRT = "libvirt"
LAYER_HOST = "host"  # this node's systemd units and libvirt-guests (check/host.py)
LAYERS = (LAYER_DOMAIN, LAYER_DRBD_CONFIG, LAYER_DRBD_RUNTIME, LAYER_PACEMAKER, LAYER_LIBVIRT, LAYER_HOST)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_UNKNOWN = 2

#: Printed with every report: changing DRBD or libvirt under a running cluster makes
#: Pacemaker react to half-applied changes (a failed monitor, a demote) mid-edit.
MAINTENANCE_REMINDER = (
    "Before changing DRBD or libvirt configuration, set maintenance mode "
    "(crm configure property maintenance-mode=true, or pcs property set maintenance-mode=true) "
    "and set it back to false once every node has the change.")


@dataclass(frozen=True)
class Fix:
    """How to fix a row: a crmsh command, the pcs equivalent, or instructions.

    ``crm`` and ``pcs`` hold the same fix in each tool's words; a fix that is
    not a Pacemaker command (DRBD, libvirt) has only ``text``.
    """

    text: str = ""
    crm: str = ""
    pcs: str = ""

    def render(self, pcs: bool = False) -> str:
        command = (self.pcs or self.crm) if pcs else (self.crm or self.pcs)
        parts = [p for p in (command, self.text) if p]
        return "; ".join(parts)

    def as_json(self) -> Dict[str, str]:
        return {"text": self.text, "crm": self.crm, "pcs": self.pcs}


NO_FIX = Fix()


@dataclass(frozen=True)
class CheckResult:
    """One condition: its layer, a short stable name, the verdict, what was found, the fix."""

    layer: str
    name: str
    status: str
    found: str
    fix: Fix = NO_FIX
    subject: str = ""  # the DRBD resource, disk or node the row is about ("" when it is the VM)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown check status {self.status!r}")
        if self.layer not in LAYERS:
            raise ValueError(f"unknown check layer {self.layer!r}")

    def as_json(self) -> Dict[str, Any]:
        return {"layer": self.layer, "name": self.name, "subject": self.subject, "status": self.status,
                "found": self.found, "fix": self.fix.render(), "fix_detail": self.fix.as_json()}


def ok(layer: str, name: str, found: str, subject: str = "") -> CheckResult:
    return CheckResult(layer, name, OK, found, NO_FIX, subject)


def warn(layer: str, name: str, found: str, fix: Fix, subject: str = "") -> CheckResult:
    return CheckResult(layer, name, WARN, found, fix, subject)


def fail(layer: str, name: str, found: str, fix: Fix, subject: str = "") -> CheckResult:
    return CheckResult(layer, name, FAIL, found, fix, subject)


def unknown(layer: str, name: str, found: str, fix: Fix = NO_FIX, subject: str = "") -> CheckResult:
    return CheckResult(layer, name, UNKNOWN, found, fix, subject)


def exit_code(results: Iterable[CheckResult]) -> int:
    """1 if anything fails, else 2 if anything could not be checked, else 0."""
    statuses = {r.status for r in results}
    if FAIL in statuses:
        return EXIT_FAIL
    if UNKNOWN in statuses or not statuses:
        return EXIT_UNKNOWN
    return EXIT_OK


@dataclass(frozen=True)
class CheckReport:
    """Everything ``livemig check`` found about one VM."""

    vm: str
    results: Sequence[CheckResult]
    domain: Optional[str] = None
    drbd_resources: Sequence[str] = ()
    peer: Optional[str] = None

    @property
    def exit_code(self) -> int:
        return exit_code(self.results)

    def failed(self) -> List[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    def by_name(self, name: str) -> List[CheckResult]:
        return [r for r in self.results if r.name == name]

    def counts(self) -> Dict[str, int]:
        return {s: sum(1 for r in self.results if r.status == s) for s in STATUSES}

    def as_json(self) -> Dict[str, Any]:
        return {
            "vm": self.vm, "domain": self.domain, "drbd_resources": list(self.drbd_resources),
            "peer": self.peer, "exit_code": self.exit_code, "counts": self.counts(),
            "checks": [r.as_json() for r in self.results],
            "reminder": MAINTENANCE_REMINDER,
        }
