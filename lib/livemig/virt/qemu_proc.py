"""Finding a domain's QEMU process through /proc when libvirtd does not answer.

Reads ``/proc/<pid>/cmdline`` directly (no ``ps``): a QEMU started by
libvirt carries ``-name guest=<name>,...`` (older libvirt: ``-name <name>``),
with commas in the name doubled as QEMU's option syntax requires.
"""

from __future__ import annotations

import os
from typing import Iterable, List, Optional


def _name_from_option(value: str) -> Optional[str]:
    # Split on single commas; ",," is an escaped comma inside a value.
    parts: List[str] = []
    buf = ""
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == ",":
            if i + 1 < len(value) and value[i + 1] == ",":
                buf += ","
                i += 2
                continue
            parts.append(buf)
            buf = ""
        else:
            buf += ch
        i += 1
    parts.append(buf)
    first = parts[0]
    if first.startswith("guest="):
        return first[len("guest="):]
    if "=" not in first:
        return first
    for part in parts:
        if part.startswith("guest="):
            return part[len("guest="):]
    return None


def qemu_domain_name(argv: List[str]) -> Optional[str]:
    """The domain name in a QEMU command line, or None if it is not a QEMU."""
    if not argv or "qemu" not in os.path.basename(argv[0]):
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg == "-name":
            return _name_from_option(argv[i + 1])
    return None


def find_qemu_pids(name: str, proc: str = "/proc") -> List[int]:
    """PIDs of QEMU processes running domain ``name`` (normally zero or one)."""
    found: List[int] = []
    try:
        entries: Iterable[str] = os.listdir(proc)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as fh:
                raw = fh.read(65536)
        except OSError:
            continue  # the process exited meanwhile, or is not ours to read
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        if qemu_domain_name(argv) == name:
            found.append(int(entry))
    return sorted(found)


def local_qemu_pids(name: str, uri: Optional[str]) -> List[int]:
    """:func:`find_qemu_pids` when ``uri`` is this host's QEMU driver; [] for any other hypervisor."""
    from livemig.virt.options import is_local_qemu

    return find_qemu_pids(name) if is_local_qemu(uri) else []
