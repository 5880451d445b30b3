"""``livemig config``: the crmsh or pcs commands that set a VM up for live migration on DRBD.

For each DRBD resource: an ``ocf:linbit:drbd`` primitive in a promotable clone
(promoted-max=2, notify=true, interleave=true); the VM as an
``ocf:livemig:VirtualDomain`` primitive with allow-migrate=true and the operation
timeouts the agent's meta-data advises; the VM colocated with each clone's
Promoted role and ordered after its promote.

Fencing is never turned off here: dual-primary DRBD needs it. The commands keep
``stonith-enabled=true`` and say that a fencing device must exist, since which
device a site has cannot be known from the VM.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import List, Sequence

from livemig.ocf.metadata import Action

#: Operations whose timeouts come from the agent's meta-data, in the order they are written.
VM_OPERATIONS = ("start", "stop", "monitor", "migrate_to", "migrate_from")
#: ocf:linbit:drbd monitors: different intervals per role, as Pacemaker requires.
DRBD_MONITORS = (("29s", "Promoted"), ("31s", "Unpromoted"))
DRBD_MONITOR_TIMEOUT = "20s"

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_DRBD_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


class ConfigError(ValueError):
    """An argument cannot become a valid Pacemaker id or DRBD resource name."""


@dataclass(frozen=True)
class VmSetup:
    """What the commands are for."""

    vm_id: str
    config_path: str
    drbd_resources: Sequence[str]
    actions: Sequence[Action]
    hypervisor: str = "qemu:///system"

    def validate(self) -> None:
        if not _ID.match(self.vm_id):
            raise ConfigError(f"{self.vm_id!r} is not a valid Pacemaker id (letters, digits, _ . -)")
        if not self.config_path.startswith("/"):
            raise ConfigError(f"the config file must be an absolute path, got {self.config_path!r}")
        if not self.drbd_resources:
            raise ConfigError("at least one DRBD resource is needed")
        for res in self.drbd_resources:
            if not _DRBD_NAME.match(res):
                raise ConfigError(f"{res!r} is not a DRBD resource name")


def drbd_primitive_id(res: str) -> str:
    return f"drbd_{_id_part(res)}"


def clone_id(res: str) -> str:
    return f"ms_drbd_{_id_part(res)}"


def _id_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _ops(actions: Sequence[Action]) -> List[Action]:
    by_name = {a.name: a for a in actions}
    return [by_name[name] for name in VM_OPERATIONS if name in by_name]


def _missing_migrate_ops(actions: Sequence[Action]) -> List[str]:
    names = {a.name for a in actions}
    return [name for name in ("migrate_to", "migrate_from") if name not in names]


def _header(setup: VmSetup, tool: str) -> List[str]:
    lines = [
        f"# livemig config: {setup.vm_id} on DRBD {', '.join(setup.drbd_resources)} ({tool})",
        "# Dual-primary DRBD needs fencing: a fencing (stonith) device for every node must exist",
        "# before these resources run; stonith-enabled stays true.",
    ]
    missing = _missing_migrate_ops(setup.actions)
    if missing:
        lines.append(f"# The agent's meta-data declares no {' or '.join(missing)} timeout: Pacemaker's "
                     "default operation timeout applies.")
    return lines


def crmsh_commands(setup: VmSetup) -> str:
    """crm configure syntax: paste into ``crm configure`` (then ``commit``), or ``crm configure load update FILE``."""
    setup.validate()
    lines = _header(setup, "crmsh")
    lines.append("# Paste into `crm configure` and commit, or save to FILE and run: crm configure load update FILE")
    for res in setup.drbd_resources:
        monitors = " ".join(f"op monitor interval={interval} role={role} timeout={DRBD_MONITOR_TIMEOUT}"
                            for interval, role in DRBD_MONITORS)
        lines.append(f"primitive {drbd_primitive_id(res)} ocf:linbit:drbd params drbd_resource={res} {monitors}")
        lines.append(f"clone {clone_id(res)} {drbd_primitive_id(res)} meta promotable=true promoted-max=2 "
                     "promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true interleave=true")
    ops = " ".join(_crm_op(a) for a in _ops(setup.actions))
    lines.append(f"primitive {setup.vm_id} ocf:livemig:VirtualDomain params "
                 f"config={shlex.quote(setup.config_path)} hypervisor={shlex.quote(setup.hypervisor)} "
                 f"meta allow-migrate=true {ops}".rstrip())
    for res in setup.drbd_resources:
        cid = clone_id(res)
        lines.append(f"colocation col_{setup.vm_id}_on_{cid} inf: {setup.vm_id} {cid}:Promoted")
        lines.append(f"order ord_{cid}_before_{setup.vm_id} Mandatory: {cid}:promote {setup.vm_id}:start")
    lines.append("property stonith-enabled=true")
    return "\n".join(lines) + "\n"


def _crm_op(action: Action) -> str:
    text = f"op {action.name}"
    if action.interval:
        text += f" interval={action.interval}s"
    text += f" timeout={action.timeout}s"
    return text


def pcs_commands(setup: VmSetup) -> str:
    """Shell commands for pcs; to apply them at once, run them with ``-f FILE`` and ``pcs cluster cib-push``."""
    setup.validate()
    lines = _header(setup, "pcs")
    lines.append("# To apply them together: pcs cluster cib FILE; run each command as pcs -f FILE ...; "
                 "pcs cluster cib-push FILE --config")
    for res in setup.drbd_resources:
        monitors = " ".join(f"monitor interval={interval} role={role} timeout={DRBD_MONITOR_TIMEOUT}"
                            for interval, role in DRBD_MONITORS)
        lines.append(f"pcs resource create {drbd_primitive_id(res)} ocf:linbit:drbd drbd_resource={res} "
                     f"op {monitors} promotable {clone_id(res)} promoted-max=2 promoted-node-max=1 "
                     "clone-max=2 clone-node-max=1 notify=true interleave=true")
    ops = " ".join(_pcs_op(a) for a in _ops(setup.actions))
    lines.append(f"pcs resource create {setup.vm_id} ocf:livemig:VirtualDomain "
                 f"config={shlex.quote(setup.config_path)} hypervisor={shlex.quote(setup.hypervisor)} "
                 f"meta allow-migrate=true" + (f" op {ops}" if ops else ""))
    for res in setup.drbd_resources:
        cid = clone_id(res)
        lines.append(f"pcs constraint colocation add {setup.vm_id} with Promoted {cid} INFINITY")
        lines.append(f"pcs constraint order promote {cid} then start {setup.vm_id}")
    lines.append("pcs property set stonith-enabled=true")
    return "\n".join(lines) + "\n"


def _pcs_op(action: Action) -> str:
    text = action.name
    if action.interval:
        text += f" interval={action.interval}s"
    text += f" timeout={action.timeout}s"
    return text
