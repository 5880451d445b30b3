"""``livemig config``: the crmsh or pcs commands that set a VM up for live migration on DRBD.

For each DRBD resource: an ``ocf:linbit:drbd`` primitive in a promotable clone
(promoted-max=2, notify=true, interleave=true); the VM as an
``ocf:livemig:VirtualDomain`` primitive with allow-migrate=true and the operation
timeouts the agent's meta-data advises; the VM colocated with each clone's
Promoted role and ordered after its promote.

Fencing is never turned off here: dual-primary DRBD needs it. The commands keep
``stonith-enabled=true`` and say that a fencing device must exist, since which
device a site has cannot be known from the VM.

Every value is one word: a value with a line break, a carriage return, a NUL
or any other control or format character (or text that is not valid, from
undecodable bytes) is refused, since it could end a crmsh statement or a shell
command and add one of its own; every value is quoted with POSIX shell quoting,
which crmsh (shlex) and a shell read back as that one word. crmsh does not
store a backslash or a non-ASCII character faithfully (it re-reads what it
stored with a backslash as an escape, and writes non-ASCII as ``&#NNN;``): such
values are refused for crmsh, and work with ``--pcs``.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from livemig.ocf.metadata import Action
from livemig.pacemaker.naming import colocation_id, drbd_clone_id, drbd_primitive_id, order_id

#: Operations whose timeouts come from the agent's meta-data, in the order they are written.
VM_OPERATIONS = ("start", "stop", "monitor", "migrate_to", "migrate_from")
#: ocf:linbit:drbd monitors: different intervals per role, as Pacemaker requires.
DRBD_MONITORS = (("29s", "Promoted"), ("31s", "Unpromoted"))
DRBD_MONITOR_TIMEOUT = "20s"

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_DRBD_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


#: Unicode categories no value may contain: controls (C0, DEL, C1: newline, carriage return,
#: NUL, tab, NEL ...), format characters (bidirectional overrides, zero-width ...), line and
#: paragraph separators, and surrogates (bytes that were not valid UTF-8).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


class ConfigError(ValueError):
    """An argument cannot become a valid Pacemaker id or DRBD resource name, or is not one safe word."""


def _forbidden(value: str) -> str:
    """The first character of ``value`` that may not appear in a command, described; '' if none."""
    for char in value:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            name = unicodedata.name(char, "")
            return f"U+{ord(char):04X}" + (f" {name}" if name else "")
    return ""


def _crmsh_unsafe(value: str) -> str:
    """Why crmsh would not store ``value`` as given ('' if it would)."""
    if "\\" in value:
        return "a backslash"
    if not value.isascii():
        return "a non-ASCII character"
    return ""


def _word(value: str) -> str:
    """``value`` as one word for crmsh and a POSIX shell (checked for control characters before)."""
    return shlex.quote(value)


@dataclass(frozen=True)
class VmSetup:
    """What the commands are for."""

    vm_id: str
    config_path: str
    drbd_resources: Sequence[str]
    actions: Sequence[Action]
    hypervisor: str = "qemu:///system"

    def values(self) -> List[Tuple[str, str]]:
        """(what, value) for every value the commands contain."""
        return ([("the VM id", self.vm_id), ("the config path", self.config_path),
                 ("the hypervisor URI", self.hypervisor)]
                + [("the DRBD resource", res) for res in self.drbd_resources])

    def validate(self, crmsh: bool = False) -> None:
        for what, value in self.values():
            bad = _forbidden(value)
            if bad:
                raise ConfigError(f"{what} {value!r} contains a control character ({bad}): refused, it could "
                                  "end a statement or command and add one of its own")
            why = _crmsh_unsafe(value) if crmsh else ""
            if why:
                raise ConfigError(f"{what} {value!r} contains {why}, which crmsh does not store as given; "
                                  "use --pcs, or set it with crm configure edit")
        if not _ID.fullmatch(self.vm_id):
            raise ConfigError(f"{self.vm_id!r} is not a valid Pacemaker id (letters, digits, _ . -)")
        if not self.config_path.startswith("/"):
            raise ConfigError(f"the config file must be an absolute path, got {self.config_path!r}")
        if not self.drbd_resources:
            raise ConfigError("at least one DRBD resource is needed")
        for res in self.drbd_resources:
            if not _DRBD_NAME.fullmatch(res):
                raise ConfigError(f"{res!r} is not a DRBD resource name")


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
    setup.validate(crmsh=True)
    lines = _header(setup, "crmsh")
    lines.append("# Paste into `crm configure` and commit, or save to FILE and run: crm configure load update FILE")
    for res in setup.drbd_resources:
        monitors = " ".join(f"op monitor interval={interval} role={role} timeout={DRBD_MONITOR_TIMEOUT}"
                            for interval, role in DRBD_MONITORS)
        lines.append(f"primitive {_word(drbd_primitive_id(res))} ocf:linbit:drbd params "
                     f"drbd_resource={_word(res)} {monitors}")
        lines.append(f"clone {_word(drbd_clone_id(res))} {_word(drbd_primitive_id(res))} meta promotable=true "
                     "promoted-max=2 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true interleave=true")
    ops = " ".join(_crm_op(a) for a in _ops(setup.actions))
    vm = _word(setup.vm_id)
    lines.append(f"primitive {vm} ocf:livemig:VirtualDomain params "
                 f"config={_word(setup.config_path)} hypervisor={_word(setup.hypervisor)} "
                 f"meta allow-migrate=true {ops}".rstrip())
    for res in setup.drbd_resources:
        cid = drbd_clone_id(res)
        lines.append(f"colocation {_word(colocation_id(setup.vm_id, cid))} inf: {vm} {_word(cid + ':Promoted')}")
        lines.append(f"order {_word(order_id(cid, setup.vm_id))} Mandatory: {_word(cid + ':promote')} "
                     f"{_word(setup.vm_id + ':start')}")
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
        lines.append(f"pcs resource create {_word(drbd_primitive_id(res))} ocf:linbit:drbd "
                     f"drbd_resource={_word(res)} op {monitors} promotable {_word(drbd_clone_id(res))} "
                     "promoted-max=2 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true interleave=true")
    ops = " ".join(_pcs_op(a) for a in _ops(setup.actions))
    vm = _word(setup.vm_id)
    lines.append(f"pcs resource create {vm} ocf:livemig:VirtualDomain "
                 f"config={_word(setup.config_path)} hypervisor={_word(setup.hypervisor)} "
                 f"meta allow-migrate=true" + (f" op {ops}" if ops else ""))
    for res in setup.drbd_resources:
        cid = _word(drbd_clone_id(res))
        lines.append(f"pcs constraint colocation add {vm} with Promoted {cid} INFINITY")
        lines.append(f"pcs constraint order promote {cid} then start {vm}")
    lines.append("pcs property set stonith-enabled=true")
    return "\n".join(lines) + "\n"


def _pcs_op(action: Action) -> str:
    text = action.name
    if action.interval:
        text += f" interval={action.interval}s"
    text += f" timeout={action.timeout}s"
    return text
