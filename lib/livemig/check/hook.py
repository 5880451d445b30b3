"""The ``libvirt-hook`` row of ``livemig check`` (``drbd_two_primaries=migration``).

In that mode the target of a live migration is promoted by livemig's libvirt hook,
``/etc/libvirt/hooks/qemu.d/livemig``, which libvirt runs with ``migrate begin`` before
the incoming QEMU opens the disks. libvirt's daemon (libvirtd, or virtqemud with the modular
daemons) notes when it starts, and again on SIGHUP (reload), whether any executable qemu hook
exists (``virHookInitialize`` in libvirt's src/util/virhook.c); if none did, it runs none
until then, while the ``qemu.d`` entries themselves are listed at each call. So the row wants
the hook present, executable, and older than the start of every running libvirt daemon. That
is conservative: another qemu hook present at the start would have made it run, and a package
upgrade that rewrites the hook makes it newer (a reload clears the row).

Everything is read from files under :class:`~livemig.check.host.HostPaths`' root: the hook
(``lstat``, so a symlink's own time counts, and ``stat`` through it), and ``/proc``: each
daemon's start (field 22 of ``/proc/PID/stat``, in clock ticks after boot) and the boot time
(``btime`` in ``/proc/stat``).
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from livemig.check.host import HostPaths
from livemig.check.model import LAYER_HOST, CheckResult, Fix, fail, ok, unknown
from livemig.files import FileUnreadable, read_text_file

HOOK = "/etc/libvirt/hooks/qemu.d/livemig"
DAEMONS = ("libvirtd", "virtqemud")
_SMALL = 64 * 1024
_READ_SECONDS = 2.0
_INSTALL = (f"install the livemig package on this node (it installs {HOOK} from agents/livemig-libvirt-hook), "
            "or copy that file there with mode 0755")


@dataclass(frozen=True)
class Daemon:
    name: str
    pid: int
    started: float  # seconds since the epoch


def _read(path: str) -> Optional[str]:
    try:
        return read_text_file(path, _SMALL, _READ_SECONDS)
    except FileUnreadable:
        return None


def boot_time(proc: str) -> Optional[float]:
    text = _read(os.path.join(proc, "stat"))
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "btime" and words[1].isdigit():
            return float(words[1])
    return None


def start_ticks(stat_text: str) -> Optional[int]:
    """Field 22 (starttime) of a ``/proc/PID/stat`` line; the command may hold spaces and parentheses."""
    rest = stat_text.rpartition(")")[2].split()
    # rest[0] is field 3 (state): starttime, field 22, is rest[19]
    if len(rest) < 20 or not rest[19].isdigit():
        return None
    return int(rest[19])


def running_daemons(proc: str, ticks_per_second: Optional[int] = None) -> List[Daemon]:
    """The libvirt daemons running, with their start times (a process that vanishes is skipped)."""
    hz = ticks_per_second or os.sysconf("SC_CLK_TCK")
    boot = boot_time(proc)
    found: List[Daemon] = []
    try:
        entries = sorted(os.listdir(proc))
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        comm = (_read(os.path.join(proc, entry, "comm")) or "").strip()
        if comm not in DAEMONS:
            continue
        ticks = start_ticks(_read(os.path.join(proc, entry, "stat")) or "")
        if ticks is None or boot is None:
            continue
        found.append(Daemon(comm, int(entry), boot + ticks / hz))
    return found


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _installed(path: str) -> Tuple[Optional[float], str]:
    """(when the hook got its current form, '') or (None, what is wrong)."""
    try:
        link = os.lstat(path)
        target = os.stat(path)
    except FileNotFoundError:
        return None, f"no {HOOK}: the target of a migration is not promoted before its QEMU opens the disks, " \
                     "so every live migration fails"
    except OSError as exc:
        return None, f"{HOOK}: {exc.strerror or exc}"
    if not stat.S_ISREG(target.st_mode):
        return None, f"{HOOK} is not a regular file"
    if not target.st_mode & 0o111:
        return None, f"{HOOK} is not executable: libvirt skips it, so the target is never promoted"
    return max(link.st_mtime, target.st_mtime), ""


def check_hook(paths: HostPaths, ticks_per_second: Optional[int] = None) -> List[CheckResult]:
    """The ``libvirt-hook`` row for this node."""
    installed, problem = _installed(paths.path(HOOK))
    if installed is None:
        fix = Fix(f"chmod 0755 {HOOK}") if "executable" in problem else Fix(_INSTALL + "; then systemctl "
                                                                            "restart libvirtd (or virtqemud)")
        return [fail(LAYER_HOST, "libvirt-hook", problem + " (on this node; every node needs it)", fix)]
    daemons = running_daemons(paths.path("proc"), ticks_per_second)
    if not daemons:
        if boot_time(paths.path("proc")) is None:
            return [unknown(LAYER_HOST, "libvirt-hook", f"{HOOK} installed; /proc unreadable: whether libvirt "
                            "started after it is not known", Fix("systemctl restart libvirtd (or virtqemud)"))]
        return [ok(LAYER_HOST, "libvirt-hook", f"{HOOK} installed; no libvirtd or virtqemud runs (it reads "
                   "hooks when it starts)")]
    late = [d for d in daemons if d.started < installed]
    if late:
        names = ", ".join(f"{d.name} (pid {d.pid}, started {_when(d.started)})" for d in late)
        return [fail(LAYER_HOST, "libvirt-hook",
                     f"{HOOK} installed {_when(installed)}, after {names}: libvirt looks for hooks when it starts "
                     "(or reloads), so the hook may not run and the target's DRBD is not promoted",
                     Fix("; ".join(f"systemctl restart {d.name}" for d in late)
                         + " (or reload; running VMs keep running)"))]
    names = ", ".join(f"{d.name} (pid {d.pid})" for d in daemons)
    return [ok(LAYER_HOST, "libvirt-hook", f"{HOOK} installed {_when(installed)}, executable, older than {names}")]
