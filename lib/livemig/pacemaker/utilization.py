"""Writing a resource's utilization attributes through ``crm_resource``.

Pacemaker's placement uses ``utilization`` (cpu, hv_memory, host_memory).
The agent writes them from what libvirt reports, but only when a value
changes: the last written values are remembered, so a steady-state monitor
forks nothing.
"""

from __future__ import annotations

from typing import Dict, Mapping, MutableMapping, Optional

from livemig.ocf.deadline import Deadline
from livemig.ocf.logs import get_logger
from livemig.run import CommandError, CommandRunner

log = get_logger("livemig")

UNSET = None


class UtilizationWriter:
    def __init__(self, resource: str, runner: CommandRunner, deadline: Deadline,
                 remembered: MutableMapping[str, Optional[str]]) -> None:
        self.resource = resource
        self.runner = runner
        self.deadline = deadline
        self.remembered = remembered

    def apply(self, wanted: Mapping[str, Optional[str]]) -> Dict[str, Optional[str]]:
        """Bring attributes to ``wanted`` (None = delete); returns what changed.

        Failures are logged, not raised: utilization is advisory and must not
        fail a monitor. A failed write is not remembered, so it is retried.
        """
        changed: Dict[str, Optional[str]] = {}
        for name, value in wanted.items():
            if name in self.remembered and self.remembered[name] == value:
                continue
            if value is None:
                argv = ["crm_resource", "--resource", self.resource, "--utilization",
                        "--delete-parameter", name]
            else:
                argv = ["crm_resource", "--resource", self.resource, "--utilization",
                        "--set-parameter", name, "--parameter-value", value]
            try:
                result = self.runner.run(argv, timeout=self.deadline.bound(10.0))
            except CommandError as exc:
                log.warning("could not update utilization %s: %s", name, exc)
                continue
            # Deleting an attribute that is not there is fine (crm_resource says so, exit 6/105).
            if result.ok or value is None:
                self.remembered[name] = value
                changed[name] = value
                log.info("utilization %s %s", name, "removed" if value is None else f"set to {value}")
            else:
                log.warning("could not update utilization %s: %s", name, result.describe())
        return changed
