"""Host checks of ``livemig check``: what a node shutdown does to the VMs.

Two things decide whether a node shutdown migrates the VMs away or kills them
(docs/packaging.md, "Node shutdown"):

- ``shutdown-order``: Pacemaker (``After=resource-agents-deps.target``) must stop
  before libvirt's daemons, libvirt-guests and the guests' scopes. The packages
  ship a drop-in for ``resource-agents-deps.target``; this row reads the unit
  files and drop-ins as systemd would merge them at its next (re)load.
- ``libvirt-guests-boot`` / ``libvirt-guests-shutdown``: an enabled
  libvirt-guests.service starts guests at boot (``ON_BOOT=start``) and suspends
  or shuts them down at shutdown (``ON_SHUTDOWN``), outside Pacemaker.

Only files are read (under an injectable root, bounded in size and time), never
systemd itself: the verdict is the same whether systemd runs or not (a
container, a chroot), and what cannot be read is a warning with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from livemig.check.model import LAYER_HOST, CheckResult, Fix, fail, ok, warn
from livemig.files import FileUnreadable, read_text_file

#: systemd's system unit search path, highest priority first (what ``systemd-analyze unit-paths`` lists).
UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system",
             "lib/systemd/system", "usr/lib/systemd/system")
#: where libvirt-guests reads its settings: Debian's, then Fedora/RHEL's.
GUESTS_CONFIGS = ("etc/default/libvirt-guests", "etc/sysconfig/libvirt-guests")
#: libvirt's own defaults (libvirt-guests.sh upstream; Debian builds it with ON_BOOT=ignore, ON_SHUTDOWN=shutdown).
UPSTREAM_DEFAULTS = {"ON_BOOT": "start", "ON_SHUTDOWN": "suspend"}
MAX_FILE_BYTES = 1024 * 1024
READ_SECONDS = 5.0

TARGET = "resource-agents-deps.target"
GUESTS = "libvirt-guests.service"
SHUTDOWN_TARGET = "virt-guest-shutdown.target"
#: what Pacemaker must stop before, when installed (the units the packages' drop-in names).
ORDERED_AFTER = ("libvirtd.service", "virtqemud.service", "virtproxyd.service", "virtnetworkd.service",
                 "virtnwfilterd.service", "virtsecretd.service", "virtstoraged.service", "virtlogd.service",
                 "virtlockd.service", GUESTS, SHUTDOWN_TARGET)
DROP_IN = "/usr/lib/systemd/system/resource-agents-deps.target.d/livemig.conf"


@dataclass(frozen=True)
class HostPaths:
    """Where the host's files are: ``root`` (``/``, or a tree for tests) and the paths under it."""

    root: str = "/"
    unit_dirs: Sequence[str] = UNIT_DIRS
    guests_configs: Sequence[str] = GUESTS_CONFIGS

    def path(self, relative: str) -> str:
        return os.path.join(self.root, relative.lstrip("/"))


class HostFiles:
    """Unit files, drop-ins and shell settings, read as systemd and libvirt-guests.sh read them."""

    def __init__(self, paths: HostPaths) -> None:
        self.paths = paths
        self.problems: List[str] = []

    def read(self, path: str) -> Optional[str]:
        try:
            return read_text_file(path, MAX_FILE_BYTES, READ_SECONDS)
        except FileUnreadable as exc:
            self.problems.append(str(exc))
            return None

    def unit_file(self, name: str) -> Optional[str]:
        """The path of unit ``name`` (the first in the search path), or None."""
        for directory in self.paths.unit_dirs:
            candidate = os.path.join(self.paths.path(directory), name)
            if os.path.lexists(candidate):
                return candidate
        return None

    def masked(self, name: str) -> bool:
        path = self.unit_file(name)
        return path is not None and os.path.islink(path) and os.path.realpath(path) == "/dev/null"

    def drop_ins(self, name: str) -> List[str]:
        """``name.d/*.conf`` over the search path: one per file name (the highest priority), sorted by name."""
        chosen: Dict[str, str] = {}
        for directory in self.paths.unit_dirs:
            folder = os.path.join(self.paths.path(directory), name + ".d")
            try:
                entries = sorted(os.listdir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.endswith(".conf") and entry not in chosen:
                    chosen[entry] = os.path.join(folder, entry)
        return [chosen[entry] for entry in sorted(chosen)]

    def unit_values(self, name: str, key: str) -> Tuple[List[str], List[str]]:
        """(values of ``key=`` in [Unit] of the unit and its drop-ins, the files they came from)."""
        values: List[str] = []
        sources: List[str] = []
        path = self.unit_file(name)
        files = ([path] if path and not self.masked(name) else []) + self.drop_ins(name)
        for file in files:
            text = self.read(file)
            if text is None:
                continue
            found = unit_setting(text, "Unit", key)
            if found and file != path:
                sources.append(file)
            values += found
        return values, sources

    def enabled(self, name: str) -> bool:
        """A ``*.wants/NAME`` or ``*.requires/NAME`` link anywhere on the search path (what enabling makes)."""
        for directory in self.paths.unit_dirs:
            base = self.paths.path(directory)
            try:
                entries = os.listdir(base)
            except OSError:
                continue
            for entry in entries:
                if entry.endswith((".wants", ".requires")) and os.path.lexists(os.path.join(base, entry, name)):
                    return True
        return False


def unit_setting(text: str, section: str, key: str) -> List[str]:
    """The space-separated values of ``key=`` in ``[section]`` of a unit file (continuations joined)."""
    values: List[str] = []
    current = ""
    joined = re.sub(r"\\\n", " ", text)
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line:
            name, _, value = line.partition("=")
            if name.strip() == key:
                values += value.split()
    return values


_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$")


def shell_settings(text: str, *, top_level: bool = False) -> Dict[str, Optional[str]]:
    """``KEY=value`` lines of a sourced shell file; the last wins; None for a value that needs a shell.

    ``top_level``: only unindented lines (a script's defaults, not assignments inside its functions)."""
    settings: Dict[str, Optional[str]] = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line) if not top_level or line[:1] not in (" ", "\t") else None
        if not match:
            continue
        key, value = match.group(1), match.group(2).strip()
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            settings[key] = None
            continue
        expands = _expands(value)
        settings[key] = None if expands or len(words) > 1 else (words[0] if words else "")
    return settings


def _expands(value: str) -> bool:
    """Whether the shell would expand something in ``value`` ($ or ` outside single quotes)."""
    quoted = False
    for char in value:
        if char == "'":
            quoted = not quoted
        elif char in "$`" and not quoted:
            return True
    return False


def check_host(paths: Optional[HostPaths] = None) -> List[CheckResult]:
    """The host rows: shutdown ordering, libvirt-guests' boot and shutdown actions."""
    files = HostFiles(paths or HostPaths())
    return [check_shutdown_order(files)] + check_libvirt_guests(files)


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names)


def check_shutdown_order(files: HostFiles) -> CheckResult:
    running = os.path.isdir(files.paths.path("run/systemd/system"))
    how = "" if running else " (read from the unit files; systemd is not running here)"
    pacemaker = files.unit_file("pacemaker.service")
    install = Fix(f"install the livemig package (it ships {DROP_IN}), or write that file with "
                  f"[Unit] After= and Wants= lines as docs/packaging.md shows; then systemctl daemon-reload")
    if pacemaker is None:
        return warn(LAYER_HOST, "shutdown-order", f"not checked: pacemaker.service is not installed here{how}",
                    Fix("run livemig check on a cluster node"), "pacemaker.service")
    after, _ = files.unit_values("pacemaker.service", "After")
    if TARGET not in after:
        return warn(LAYER_HOST, "shutdown-order",
                    f"pacemaker.service is not After={TARGET}: nothing orders it before libvirt at node "
                    f"shutdown{how}", Fix(f"add After={TARGET} and Wants={TARGET} to pacemaker.service "
                                          "(systemctl edit pacemaker.service)"), "pacemaker.service")
    if files.unit_file(TARGET) is None:
        return warn(LAYER_HOST, "shutdown-order",
                    f"{TARGET} is not installed: drop-ins for it (livemig's orders Pacemaker before libvirt) "
                    f"have no effect, so a node shutdown may stop libvirt before Pacemaker moves the VMs{how}",
                    Fix("install resource-agents (apt-get install resource-agents, or dnf install resource-agents)"),
                    TARGET)
    ordered, sources = files.unit_values(TARGET, "After")
    wanted, _ = files.unit_values(TARGET, "Wants")
    installed = [unit for unit in ORDERED_AFTER if files.unit_file(unit) is not None]
    missing = [unit for unit in installed if unit not in ordered]
    if SHUTDOWN_TARGET in installed and SHUTDOWN_TARGET not in wanted:
        missing.append(f"Wants={SHUTDOWN_TARGET}")
    unread = f"; unreadable: {'; '.join(files.problems)}" if files.problems else ""
    if missing:
        return warn(LAYER_HOST, "shutdown-order",
                    f"{TARGET} lacks {_listing(missing)}: at node shutdown systemd may stop them before "
                    f"Pacemaker has moved the VMs away (they are then killed or stopped){how}{unread}",
                    install, TARGET)
    if not installed:
        return ok(LAYER_HOST, "shutdown-order", f"no libvirt units installed here to order Pacemaker against{how}",
                  TARGET)
    return ok(LAYER_HOST, "shutdown-order",
              f"Pacemaker stops before {_listing(installed)} at node shutdown ({TARGET}: "
              f"{_listing(sources) or 'its unit file'}){how}", TARGET)


def _guests_config(files: HostFiles, unit: str) -> Tuple[Optional[str], Dict[str, Optional[str]]]:
    """(the settings file libvirt-guests reads, as an absolute path on the host; its settings)."""
    named = [value.lstrip("-") for value in unit_setting(files.read(unit) or "", "Service", "EnvironmentFile")]
    for candidate in named + ["/" + p.lstrip("/") for p in files.paths.guests_configs]:
        path = files.paths.path(candidate)
        if os.path.isfile(path):
            text = files.read(path)
            return candidate, shell_settings(text) if text is not None else {}
    return None, {}


def _script_defaults(files: HostFiles, unit: str) -> Tuple[Dict[str, str], str]:
    """The defaults of the libvirt-guests.sh the unit runs, and where they come from."""
    for command in unit_setting(files.read(unit) or "", "Service", "ExecStart"):
        if command.endswith("libvirt-guests.sh"):
            text = files.read(files.paths.path(command.lstrip("-@")))
            if text is None:
                break
            found = {k: v for k, v in shell_settings(text, top_level=True).items() if k in UPSTREAM_DEFAULTS and v}
            if len(found) == len(UPSTREAM_DEFAULTS):
                return {k: str(v) for k, v in found.items()}, f"the default of {command}"
            break
    return dict(UPSTREAM_DEFAULTS), "libvirt's default"


def check_libvirt_guests(files: HostFiles) -> List[CheckResult]:
    unit = files.unit_file(GUESTS)
    if unit is None:
        return [ok(LAYER_HOST, "libvirt-guests", f"{GUESTS} is not installed", GUESTS)]
    if files.masked(GUESTS):
        return [ok(LAYER_HOST, "libvirt-guests", f"{GUESTS} is masked", GUESTS)]
    if not files.enabled(GUESTS):
        return [ok(LAYER_HOST, "libvirt-guests", f"{GUESTS} is not enabled: it neither starts nor stops guests",
                   GUESTS)]
    config, settings = _guests_config(files, unit)
    defaults, default_source = _script_defaults(files, unit)
    disable = "systemctl disable libvirt-guests.service (Pacemaker starts, stops and moves the cluster's VMs)"
    results: List[CheckResult] = []
    for key in ("ON_BOOT", "ON_SHUTDOWN"):
        if key in settings and settings[key] is None:
            results.append(warn(LAYER_HOST, f"libvirt-guests-{key[3:].lower()}",
                                f"{GUESTS} is enabled and {config} sets {key} to something only a shell can "
                                f"tell", Fix(f"set {key} to a plain value, or {disable}"), GUESTS))
            continue
        value = settings.get(key) or defaults[key]
        where = f"{key}={value} ({config})" if settings.get(key) else f"{key}={value} ({default_source})"
        if key == "ON_BOOT":
            if value == "start":
                results.append(fail(LAYER_HOST, "libvirt-guests-boot",
                                    f"{GUESTS} is enabled with {where}: at boot it starts the guests that ran at "
                                    "shutdown, outside Pacemaker, which may run the same VM on another node",
                                    Fix(f"set ON_BOOT=ignore in {config or '/etc/default/libvirt-guests'}, or "
                                        f"{disable}"), GUESTS))
            else:
                results.append(ok(LAYER_HOST, "libvirt-guests-boot", f"{GUESTS}: {where}", GUESTS))
            continue
        action = "shuts down" if value == "shutdown" else "suspends (managedsave)"
        results.append(warn(LAYER_HOST, "libvirt-guests-shutdown",
                            f"{GUESTS} is enabled with {where}: at node shutdown it {action} the guests still "
                            "running once Pacemaker has stopped (left running in maintenance mode, or unmanaged)",
                            Fix(f"{disable}; ON_SHUTDOWN has no value that leaves guests alone"), GUESTS))
    return results
