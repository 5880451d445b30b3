"""Holds a private mount namespace for the test libvirtd (run under ``unshare --mount``).

Started as ``unshare --mount --propagation private -- python3 mountns_holder.py PLAN``
by :mod:`tests.support.libvirtd`. PLAN is a JSON file::

    {"scratch": "/run/livemig-tests/S/scratch",
     "binds": [["/run/livemig-tests/S/etc", "/etc/libvirt"], ...],
     "keep_visible": ["/run/livemig-tests/S"]}

Each ``binds`` source is bind-mounted over its target inside this namespace
only. A target missing on the host is not created there: its parent gets an
overlay (upper layer on a tmpfs that exists only in this namespace) and the
target is created in that overlay. ``keep_visible`` directories are then
bind-mounted back from the host (through file descriptors opened before any
overlay), so that what the daemons write there stays visible outside.

Prints ``ready`` once done, then waits for EOF on stdin (the parent closing the
pipe or dying) and exits. The namespace lives on while any process uses it.
Mounts are made with mount(2) directly: no shell, no path canonicalization.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from typing import Any, Dict, List

MS_BIND = 4096


def _mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    rc = libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                    ctypes.c_ulong(flags), data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(err)}")


def apply(plan: Dict[str, Any]) -> List[str]:
    scratch = str(plan["scratch"])
    binds = [(str(s), str(t)) for s, t in plan["binds"]]
    keep_visible = [str(p) for p in plan.get("keep_visible", [])]
    done: List[str] = []
    # Host objects, pinned before any overlay can hide them.
    fds = {path: os.open(path, os.O_PATH) for path in {s for s, _ in binds} | set(keep_visible)}

    _mount("tmpfs", scratch, "tmpfs", 0, "mode=0700")
    done.append(f"tmpfs {scratch}")
    # An overlay over an ancestor of scratch (/run) would hide it: go through an fd.
    scratch_fd = os.open(scratch, os.O_PATH | os.O_DIRECTORY)
    scratch_via_fd = f"/proc/self/fd/{scratch_fd}"
    overlaid: List[str] = []
    for _, target in binds:
        parent = os.path.dirname(target)
        if os.path.exists(target) or parent in overlaid:
            continue
        if not os.path.isdir(parent):
            raise OSError(f"{parent} does not exist: cannot place {target}")
        layer = os.path.join(scratch_via_fd, "ovl" + parent.replace("/", "_"))
        os.makedirs(layer + "/upper")
        os.makedirs(layer + "/work")
        _mount("overlay", parent, "overlay", 0,
               f"lowerdir={parent},upperdir={layer}/upper,workdir={layer}/work")
        overlaid.append(parent)
        done.append(f"overlay {parent}")
    for path in keep_visible:
        if any(path == p or path.startswith(p + "/") for p in overlaid):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fds[path]}", path, "", MS_BIND)
            done.append(f"bind {path} (host)")
    for source, target in binds:
        if not os.path.exists(target):
            os.makedirs(target)
        _mount(f"/proc/self/fd/{fds[source]}", target, "", MS_BIND)
        done.append(f"bind {source} -> {target}")
    for fd in [*fds.values(), scratch_fd]:
        os.close(fd)
    return done


def main() -> int:
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    try:
        done = apply(plan)
    except OSError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    print("ready " + "; ".join(done), flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
