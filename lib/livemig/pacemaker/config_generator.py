"""``livemig config``: the crmsh or pcs commands that set a VM up for live migration on DRBD.

For each DRBD resource: an ``ocf:linbit:drbd`` primitive in a promotable clone
(promoted-max=2, notify=true, interleave=true); the VM as an
``ocf:livemig:VirtualDomain`` primitive with allow-migrate=true and the operation
timeouts the agent's meta-data advises; the VM colocated with each clone's
Promoted role and ordered after its promote.

With ``two_primaries="migration"`` (the agent's ``drbd_two_primaries=migration``, DRBD 9):
no DRBD primitive or clone at all (the agent promotes the DRBD resources where the VM runs and
allows two primaries only for a live migration; DRBD is brought up at boot by drbd-utils'
``drbd@RES.target``), the VM primitive with ``drbd_two_primaries=migration``, a location
constraint (-INFINITY) per diskless node, and the DRBD resource file's settings as comments.

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
from livemig.pacemaker.naming import (
    avoid_location_id,
    colocation_id,
    drbd_clone_id,
    drbd_primitive_id,
    order_id,
)

#: Operations whose timeouts come from the agent's meta-data, in the order they are written.
VM_OPERATIONS = ("start", "stop", "monitor", "migrate_to", "migrate_from")
#: ocf:linbit:drbd's own advice (its meta-data) for the operations that are not monitors.
DRBD_OPERATIONS = (("start", "240s"), ("stop", "100s"), ("promote", "90s"), ("demote", "90s"), ("notify", "90s"))
#: ocf:linbit:drbd monitors: different intervals per role, as Pacemaker requires.
DRBD_MONITORS = (("29s", "Promoted"), ("31s", "Unpromoted"))
DRBD_MONITOR_TIMEOUT = "20s"
#: The promotable clone's meta attributes, in today's names (promoted-max, not master-max).
CLONE_META = ("promotable=true promoted-max=2 promoted-node-max=1 clone-max=2 clone-node-max=1 "
              "notify=true interleave=true")

#: ``drbd_two_primaries``: today's both-Primary (``always``) or a window per migration (``migration``).
TWO_PRIMARIES_ALWAYS = "always"
TWO_PRIMARIES_MIGRATION = "migration"
TWO_PRIMARIES_MODES = (TWO_PRIMARIES_ALWAYS, TWO_PRIMARIES_MIGRATION)
#: What the DRBD resource file needs in ``migration`` mode (DRBD 9), printed as comments.
MIGRATION_NET = "net { protocol C; allow-two-primaries no; }"
MIGRATION_OPTIONS = "options { auto-promote yes; quorum majority; on-no-quorum io-error; }"

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_NODE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
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
    two_primaries: str = TWO_PRIMARIES_ALWAYS
    #: diskless DRBD nodes (tiebreakers) the VM must never run on (``migration`` mode)
    diskless: Sequence[str] = ()

    @property
    def window(self) -> bool:
        return self.two_primaries == TWO_PRIMARIES_MIGRATION

    def values(self) -> List[Tuple[str, str]]:
        """(what, value) for every value the commands contain."""
        return ([("the VM id", self.vm_id), ("the config path", self.config_path),
                 ("the hypervisor URI", self.hypervisor)]
                + [("the DRBD resource", res) for res in self.drbd_resources]
                + [("the diskless node", node) for node in self.diskless])

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
        if self.two_primaries not in TWO_PRIMARIES_MODES:
            raise ConfigError(f"two primaries {self.two_primaries!r}: one of {', '.join(TWO_PRIMARIES_MODES)}")
        if self.diskless and not self.window:
            raise ConfigError("--diskless is for --two-primaries migration (with always, the promotable clone "
                              "would have to be kept off the diskless node too: not written by livemig config)")
        for node in self.diskless:
            if not _NODE.fullmatch(node):
                raise ConfigError(f"{node!r} is not a node name (letters, digits, _ . -)")


def _ops(actions: Sequence[Action]) -> List[Action]:
    by_name = {a.name: a for a in actions}
    return [by_name[name] for name in VM_OPERATIONS if name in by_name]


def _missing_migrate_ops(actions: Sequence[Action]) -> List[str]:
    names = {a.name for a in actions}
    return [name for name in ("migrate_to", "migrate_from") if name not in names]


def _notes(setup: VmSetup, tool: str) -> List[str]:
    if setup.window:
        lines = [f"# livemig config: {setup.vm_id} on DRBD {', '.join(setup.drbd_resources)} ({tool}), "
                 "drbd_two_primaries=migration"]
        lines += _window_notes(setup)
        lines += ["# Fencing: a fencing (stonith) device for every node must exist before these resources",
                  "# run; stonith-enabled stays true."]
    else:
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


def _window_notes(setup: VmSetup) -> List[str]:
    """What ``migration`` mode needs outside Pacemaker: DRBD's file, its start at boot, the hook."""
    names = " ".join(setup.drbd_resources)
    lines = [
        "# Pacemaker manages no DRBD resource in this mode (no ocf:linbit:drbd, no promotable clone):",
        f"# the agent promotes {names} where {setup.vm_id} runs, allows two primaries only while a live",
        "# migration runs, and demotes when the VM stops. DRBD 9 only.",
        "# Bring DRBD up at boot on every node with drbd-utils' units: drbd@RES.target starts drbd@RES.service",
        "# (drbdadm adjust RES, ordered before pacemaker.service; drbd@.target(7), drbd@.service(7)):",
    ]
    lines += [f"#   systemctl enable drbd@{res}.target" for res in setup.drbd_resources]
    lines += [
        "# In each DRBD resource's file, on every node (then drbdadm adjust RES on every node):",
        f"#   {MIGRATION_NET}",
        f"#   {MIGRATION_OPTIONS}",
        "# quorum majority needs three or more nodes: with two, add a diskless tiebreaker (DRBD 9: disk none;",
        "# in its on section) and name it with --diskless NODE; the guard refuses a migration that could",
        "# leave either node without quorum.",
        "# Every node needs the libvirt hook /etc/libvirt/hooks/qemu.d/livemig (the livemig package installs",
        "# it); libvirtd (or virtqemud) reads hooks when it starts: restart it after installing.",
    ]
    for node in setup.diskless:
        lines.append(f"# {setup.vm_id} never runs on {node} (diskless): {avoid_location_id(setup.vm_id, node)}.")
    return lines


def _drbd_ops(prefix: str) -> str:
    """ocf:linbit:drbd's operations, each introduced by ``prefix`` ('op ' for crmsh, '' for pcs)."""
    ops = [f"{prefix}{name} interval=0s timeout={timeout}" for name, timeout in DRBD_OPERATIONS]
    ops += [f"{prefix}monitor interval={interval} role={role} timeout={DRBD_MONITOR_TIMEOUT}"
            for interval, role in DRBD_MONITORS]
    return " ".join(ops)


def crm_drbd_statements(res: str) -> List[str]:
    """The crmsh statements of DRBD resource ``res``'s primitive and promotable clone."""
    primitive = _word(drbd_primitive_id(res))
    return [f"primitive {primitive} ocf:linbit:drbd params drbd_resource={_word(res)} {_drbd_ops('op ')}",
            f"clone {_word(drbd_clone_id(res))} {primitive} meta {CLONE_META}"]


def pcs_drbd_commands(res: str) -> List[str]:
    """The pcs commands for the same: the primitive, then the promotable clone around it."""
    primitive = _word(drbd_primitive_id(res))
    meta = CLONE_META.replace("promotable=true ", "")
    return [f"pcs resource create {primitive} ocf:linbit:drbd drbd_resource={_word(res)} "
            f"op {_drbd_ops('')} --no-default-ops",
            f"pcs resource promotable {primitive} {_word(drbd_clone_id(res))} meta {meta}"]


def crm_colocation(vm_id: str, clone_id: str) -> str:
    # vm:Started, as pcs writes it (rsc-role=Started, Pacemaker's default): the same CIB either way.
    return (f"colocation {_word(colocation_id(vm_id, clone_id))} inf: {_word(vm_id + ':Started')} "
            f"{_word(clone_id + ':Promoted')}")


def crm_order(vm_id: str, clone_id: str) -> str:
    return (f"order {_word(order_id(clone_id, vm_id))} Mandatory: {_word(clone_id + ':promote')} "
            f"{_word(vm_id + ':start')}")


def pcs_colocation(vm_id: str, clone_id: str) -> str:
    return (f"pcs constraint colocation add {_word(vm_id)} with Promoted {_word(clone_id)} score=INFINITY "
            f"id={_word(colocation_id(vm_id, clone_id))}")


def pcs_order(vm_id: str, clone_id: str) -> str:
    return (f"pcs constraint order promote {_word(clone_id)} then start {_word(vm_id)} kind=Mandatory "
            f"id={_word(order_id(clone_id, vm_id))}")


def crm_avoid(vm_id: str, node: str) -> str:
    return f"location {_word(avoid_location_id(vm_id, node))} {_word(vm_id)} -inf: {_word(node)}"


def pcs_avoid(vm_id: str, node: str) -> str:
    # Not `location add ID VM NODE -INFINITY`: pcs 0.11.5 deprecates the bare negative score (wants `--`),
    # 0.12 a standalone score, and 0.11.5 refuses score=-INFINITY there. `avoids` names it avoid_location_id.
    return f"pcs constraint location {_word(vm_id)} avoids {_word(node)}"


def _vm_params(setup: VmSetup) -> str:
    text = f"config={_word(setup.config_path)} hypervisor={_word(setup.hypervisor)}"
    if setup.window:
        text += f" drbd_two_primaries={TWO_PRIMARIES_MIGRATION}"
    return text


def crmsh_commands(setup: VmSetup) -> str:
    """crm configure syntax: paste into ``crm configure`` (then ``commit``), or ``crm configure load update FILE``.

    The notes come last, as ``#`` lines: crmsh 4.4 and 5 store comment lines that
    precede a statement as XML comments inside that statement's element (the first
    primitive would carry them), and drop the ones after the last statement.
    """
    setup.validate(crmsh=True)
    lines: List[str] = []
    clones = [] if setup.window else list(setup.drbd_resources)
    for res in clones:
        lines += crm_drbd_statements(res)
    ops = " ".join(_crm_op(a) for a in _ops(setup.actions))
    vm = _word(setup.vm_id)
    lines.append(f"primitive {vm} ocf:livemig:VirtualDomain params {_vm_params(setup)} "
                 f"meta allow-migrate=true {ops}".rstrip())
    for res in clones:
        lines += [crm_colocation(setup.vm_id, drbd_clone_id(res)), crm_order(setup.vm_id, drbd_clone_id(res))]
    lines += [crm_avoid(setup.vm_id, node) for node in setup.diskless]
    lines.append("property stonith-enabled=true")
    lines += _notes(setup, "crmsh")
    lines.append("# Paste into `crm configure` and commit, or save to FILE and run: crm configure load update FILE")
    return "\n".join(lines) + "\n"


def _crm_op(action: Action) -> str:
    return f"op {action.name} interval={action.interval or 0}s timeout={action.timeout}s"


def pcs_commands(setup: VmSetup) -> str:
    """Shell commands for pcs; to apply them at once, run them with ``-f FILE`` and ``pcs cluster cib-push``.

    Forms that pcs 0.11 and 0.12 both read without a deprecation warning: the
    promotable clone made by ``pcs resource promotable ... meta ...`` after the
    primitive (inside ``resource create``, ``promotable ... meta`` would put the meta
    attributes on the primitive, where Pacemaker does not read them), the score as
    ``score=INFINITY``, the constraint ids given (the ones the crmsh output uses), and
    ``--no-default-ops``: the operations are the ones listed, as with crmsh, whatever
    meta-data the installed agents advertise.
    """
    setup.validate()
    lines = _notes(setup, "pcs")
    lines.append("# To apply them together: pcs cluster cib FILE; run each command as pcs -f FILE ...; "
                 "pcs cluster cib-push FILE --config")
    clones = [] if setup.window else list(setup.drbd_resources)
    for res in clones:
        lines += pcs_drbd_commands(res)
    ops = " ".join(_pcs_op(a) for a in _ops(setup.actions))
    vm = _word(setup.vm_id)
    lines.append(f"pcs resource create {vm} ocf:livemig:VirtualDomain {_vm_params(setup)} "
                 f"meta allow-migrate=true" + (f" op {ops}" if ops else "") + " --no-default-ops")
    for res in clones:
        lines += [pcs_colocation(setup.vm_id, drbd_clone_id(res)), pcs_order(setup.vm_id, drbd_clone_id(res))]
    lines += [pcs_avoid(setup.vm_id, node) for node in setup.diskless]
    lines.append("pcs property set stonith-enabled=true")
    return "\n".join(lines) + "\n"


def _pcs_op(action: Action) -> str:
    text = action.name
    if action.interval:
        text += f" interval={action.interval}s"
    text += f" timeout={action.timeout}s"
    return text
