#!/usr/bin/python3
"""PID 1 of one lab node.

Started by ``lab up`` as::

    ip netns exec lmlab-NODE unshare --mount --uts --pid --fork --propagation private \
        /usr/bin/python3 nodeinit.py CONFIG.json

It runs inside fresh mount, UTS and PID namespaces (and the node's network
namespace) and builds the node's private view of the machine:

* hostname = node name;
* a private /proc (for the PID namespace);
* overlayfs over /etc, /var, /root and /usr: the node sees the host's files (or, with
  ``lower_root``, another root file system's: a Debian 13 root for Pacemaker 3.0), but
  everything it writes (configs, logs, CIB, libvirt state, the OCF provider
  directory, the fake drbdadm/drbdsetup) lands in an upper directory under the lab
  directory, so the host's files are never modified;
* tmpfs over /run and /tmp, with the lab directory, the working tree and the guest
  image bound back at their host paths;
* a private /dev (tmpfs copy of the host's device nodes, own /dev/shm) where the
  DRBD simulator creates /dev/drbdN and /dev/drbd/by-res/<res>/<vol>.

Then it prints ``READY`` and reaps orphans (every daemon started in the node ends up
as its child).  On SIGTERM it terminates every process of the node, waits a bounded
time, kills what is left and exits; the kernel then tears the namespaces down.
"""

import ctypes
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from typing import Any, Dict, List

OVERLAYS = ("/etc", "/var", "/root", "/usr")


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True)


def mount(*args: str) -> None:
    sh("mount", *args)


_libc = ctypes.CDLL(None, use_errno=True)
MS_BIND, MS_REC = 4096, 16384


def mount2(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2) itself: mount(8) would resolve a /proc/self/fd/N path to its path name, which by
    then names whatever an overlay or tmpfs put in its place."""
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def bind_fd(fd: int, path: str) -> None:
    """Bind the directory open as ``fd`` (opened before the overlays hid it) onto ``path``."""
    os.makedirs(path, exist_ok=True)
    mount2(f"/proc/self/fd/{fd}", path, "", MS_BIND | MS_REC, "")
    os.close(fd)


def build_view(cfg: Dict[str, Any]) -> None:
    lab = cfg["lab_dir"]
    node_dir = cfg["node_dir"]
    # The lower layer of /etc, /var, /root and /usr: the host's own directories, or those of another
    # root file system (LIVEMIG_LAB_ROOT: a Debian 13 root, so the node runs its Pacemaker).
    lower_root = cfg.get("lower_root") or "/"
    socket.sethostname(cfg["name"])
    mount("--make-rprivate", "/")
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", "/proc")
    # Directories the node must see as the host has them, wherever they are (the lab directory
    # under /run; the working tree and the guest image under /tmp, /root or /var, which the
    # overlays and tmpfs mounts below would hide): held open now, bound back afterwards.
    carried = []
    for path in [lab] + list(cfg.get("carry", [])):
        if path and os.path.isdir(path) and path not in [p for p, _ in carried]:
            carried.append((path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
    # The lower root may itself lie under /var (a cached root): reached through a descriptor.
    lower_fd = os.open(lower_root, os.O_PATH | os.O_DIRECTORY)
    for path in OVERLAYS:
        base = os.path.join(node_dir, "ovl", path.strip("/"))
        lower = f"/proc/self/fd/{lower_fd}/{path.strip('/')}"
        mount2("overlay", path, "overlay", 0, f"lowerdir={lower},upperdir={base}/upper,workdir={base}/work")
    os.close(lower_fd)
    mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev,size=256m", "tmpfs", "/run")
    os.makedirs("/run/lock", mode=0o1777)
    os.chmod("/run/lock", 0o1777)
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev,size=256m", "tmpfs", "/tmp")
    # Shortest first: a carried directory inside another one is bound after its parent.
    for path, fd in sorted(carried, key=lambda c: len(c[0])):
        bind_fd(fd, path)
    # /dev: a private copy, so that /dev/drbd* and /dev/shm exist only in this node.
    dev = "/run/.livemig-dev"
    os.makedirs(dev)
    mount("-t", "tmpfs", "-o", "mode=0755,nosuid,size=64m", "tmpfs", dev)
    sh("cp", "-a", "--one-file-system", "/dev/.", dev + "/")
    # FUSE mounts in a node (tests/faults/test_lab_integrity.py): /dev/fuse (misc 10:229) is copied
    # when the host has it; where the host has no node yet, the first open loads the module.
    if not os.path.exists(dev + "/fuse"):
        os.mknod(dev + "/fuse", stat.S_IFCHR | 0o600, os.makedev(10, 229))
    mount("--rbind", "/dev/pts", dev + "/pts")
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev,size=512m", "tmpfs", dev + "/shm")
    mount("--move", dev, "/dev")
    os.rmdir(dev)


def kill_all() -> None:
    """A power cut: SIGKILL every process of the node but PID 1, and reap them."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bounded: a process stuck in the kernel must not stop the fence
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)
    sys.stderr.write("{} power cut: processes still there after 10 s: {}\n".format(
        time.strftime("%H:%M:%S"), [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]))


def check_fence(cfg: Dict[str, Any]) -> None:
    """Act on a request of the lab fence agent (tests/lab/fence_livemiglab)."""
    fdir = os.path.join(cfg["lab_dir"], "fence")
    req = os.path.join(fdir, cfg["name"] + ".request")
    try:
        with open(req) as f:
            action = f.read().strip()
        os.unlink(req)
    except OSError:
        return
    off_flag = os.path.join(fdir, cfg["name"] + ".off")
    sys.stderr.write("{} fence request: {}\n".format(time.strftime("%H:%M:%S"), action))
    if action in ("off", "reboot"):
        kill_all()
        subprocess.run(cfg["drbd_crash"], env=cfg["env"])
        open(off_flag, "w").close()
    if action == "on":  # after a 'reboot', once the survivors' corosync has dropped the node
        power_on(cfg)
    open(os.path.join(fdir, cfg["name"] + ".done"), "w").close()


def power_on(cfg: Dict[str, Any]) -> None:
    try:
        os.unlink(os.path.join(cfg["lab_dir"], "fence", cfg["name"] + ".off"))
    except FileNotFoundError:
        pass
    sys.stderr.write("{} power on\n".format(time.strftime("%H:%M:%S")))
    subprocess.run(["/bin/sh", "-c", cfg["daemons_sh"]], env=cfg["env"])


def main() -> int:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    build_view(cfg)
    log = os.open(os.path.join(cfg["node_dir"], "init.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # PID 1 of the node: reap orphans, act on fence requests, stop on SIGTERM. The signal
    # handler only sets a flag: an exception raised from a handler can surface anywhere (between
    # two statements of this loop, inside a fence action) and kill PID 1, and with it the node.
    stopping: List[bool] = []

    def on_term(signum: int, frame: Any) -> None:
        stopping.append(True)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stopping:
        while True:  # reap every child that has exited
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        check_fence(cfg)
        time.sleep(0.1)  # a zombie waits at most this long to be reaped
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Shutdown: TERM everybody, bounded wait, then KILL.
    grace = float(cfg.get("stop_grace", 8))
    try:
        os.kill(-1, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = -1
        if pid == -1 or not [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]:
            return 0
        if pid == 0:
            time.sleep(0.1)
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
