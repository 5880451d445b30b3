"""The lab's nodes: each node's files (overlay upper directories), its PID 1 (``nodeinit.py`` in
fresh mount, UTS and PID namespaces inside the node's network namespace), its daemons
(virtlogd, libvirtd, corosync, pacemakerd), running a command in it, and stopping all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from tests.lab.core import (
    DRBD_RES,
    GUEST_CACHE,
    HERE,
    LAB_DIR,
    LOWER_ROOT,
    NODE_PATH,
    NS_PREFIX,
    PY,
    REPO,
    LabError,
    is_alive,
    log,
    node_dir,
    node_ip,
    proc_drbd_path,
    run,
    write_file,
)
from tests.lab.state import LabState, load_state

# livemig's libvirt QEMU hook (docs/two-primaries.md), installed where the packages put it:
# libvirtd reads /etc/libvirt/hooks at start, so it is in place before the node's daemons start.
# The working tree's executable, the first of these it has (none: no hook, the nodes run without).
# libvirt runs a hook with a clean environment (LC_ALL, PATH, HOME), and a lab node has no
# /proc/drbd: the simulator's is the file LIVEMIG_PROC_DRBD names (without it livemig takes DRBD
# for not loaded and the hook does nothing). So the node's hook is a two-line wrapper that sets
# the node's variables and execs the tree's hook, not the packages' symlink.
HOOK_WRAPPER = """#!/bin/sh
# livemig lab node (tests/lab/nodes.py): libvirt clears the environment; the lab's DRBD needs it.
exec env {env} {hook} "$@"
"""
HOOK_CANDIDATES = ("hooks/livemig-qemu-hook", "agents/livemig-libvirt-hook")
HOOK_EXECUTABLE = "livemig-libvirt-hook"  # never an OCF agent, should agents/ hold it
HOOK_PATH = "libvirt/hooks/qemu.d/livemig"  # under /etc


def repo_hook() -> Optional[Path]:
    """The working tree's libvirt hook, or None where it has none."""
    return next((REPO / c for c in HOOK_CANDIDATES if (REPO / c).is_file()), None)


SYSTEMCTL_SHIM = """#!/bin/sh
# livemig lab node (tests/lab/nodes.py): no systemd here; is-active is read from the processes.
[ "$1" = is-active ] || { echo "systemctl (livemig lab): only is-active is answered here" >&2; exit 1; }
shift
rc=0
for unit in "$@"; do
    case ${unit%.service} in
    pacemaker) daemon=pacemakerd ;; corosync) daemon=corosync ;; libvirtd) daemon=libvirtd ;;
    *) daemon= ;;
    esac
    if [ -n "$daemon" ] && pgrep -x "$daemon" >/dev/null; then echo active; else echo inactive; rc=3; fi
done
exit $rc
"""

# Each daemon is started whatever happened to the one before (a libvirtd that fails to start must
# not keep the node out of the cluster), and each start is logged with its exit status.
DAEMONS_SH = (
    "exec </dev/null >>/var/log/lab-daemons.log 2>&1; "
    "for d in 'virtlogd -d' 'libvirtd -d --listen' corosync; do "
    "$d; rc=$?; echo \"$(date +%T) $d: exit $rc\"; done; "
    "{ setsid pacemakerd & }; echo \"$(date +%T) pacemakerd started\""
)




def boot_sh(state: LabState) -> str:
    """What a node runs at every (re)boot: the daemons, after DRBD's resource where Pacemaker does
    not bring it up (drbd_two_primaries=migration: no DRBD clone; drbd.service's job on a real node)."""
    if state.two_primaries == "migration":
        return f"drbdadm up {DRBD_RES} </dev/null >>/var/log/lab-daemons.log 2>&1; " + DAEMONS_SH
    return DAEMONS_SH


# --------------------------------------------------------------------------- running in a node


def holder_pid(name: str, state: Optional[LabState] = None) -> int:
    """Host PID of node ``name``'s PID 1 (from ``state``, else from the state file)."""
    state = state if state is not None else load_state()
    if state is None:
        raise LabError(f"node {name} is not running (is the lab up?)")
    return state.holder_pid(name)


def node_env(name: str) -> Dict[str, str]:
    env = {
        "PATH": NODE_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": os.environ.get("TERM", "dumb"),
        "LIVEMIG_PROC_DRBD": proc_drbd_path(name),
        "LIVEMIG_LAB_NODE": name,
    }
    return env


def nsenter_argv(name: str, state: Optional[LabState] = None) -> List[str]:
    return ["nsenter", "-t", str(holder_pid(name, state)), "-m", "-u", "-n", "-p", "--wd=/"]


def on_node(name: str, argv: Sequence[str], check: bool = True, timeout: float = 60,
            state: Optional[LabState] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``argv`` inside node ``name`` (its mount, UTS, network and PID namespaces)."""
    return run(nsenter_argv(name, state) + list(argv), check=check, timeout=timeout,
               env=node_env(name), input=input)


def node_path(name: str, path: str, state: Optional[LabState] = None) -> Path:
    """A path as the node sees it, reachable from the host via /proc/PID/root."""
    return Path(f"/proc/{holder_pid(name, state)}/root") / path.lstrip("/")


# --------------------------------------------------------------------------- files


def prepare_node_files(name: str, names: List[str], corosync_conf: str) -> None:
    nd = node_dir(name)
    for part in ("etc", "var", "root", "usr"):
        (nd / "ovl" / part / "upper").mkdir(parents=True)
        (nd / "ovl" / part / "work").mkdir(parents=True)
    etc = nd / "ovl/etc/upper"
    var = nd / "ovl/var/upper"
    usr = nd / "ovl/usr/upper"
    # Users the QEMU driver insists on (libvirt-daemon-system would create them).
    lower_etc = Path(LOWER_ROOT or "/") / "etc"
    passwd = (lower_etc / "passwd").read_text()
    group = (lower_etc / "group").read_text()
    if not any(line.startswith("libvirt-qemu:") for line in passwd.splitlines()):
        passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n"
    if not any(line.startswith("kvm:") for line in group.splitlines()):
        group += "kvm:x:64054:\n"
    if not any(line.startswith("libvirt-qemu:") for line in group.splitlines()):
        group += "libvirt-qemu:x:64055:\n"
    write_file(etc / "passwd", passwd)
    write_file(etc / "group", group)
    write_file(etc / "hostname", name + "\n")
    hosts = "127.0.0.1\tlocalhost\n" + "".join(f"{node_ip(n)}\t{n}\n" for n in names)
    write_file(etc / "hosts", hosts)
    write_file(etc / "corosync/corosync.conf", corosync_conf)
    host_uuid = str(uuid.uuid4())
    write_file(etc / "libvirt/libvirtd.conf",
               f'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\nlisten_addr = "{node_ip(name)}"\n'
               f'host_uuid = "{host_uuid}"\nlog_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')
    write_file(etc / "libvirt/qemu.conf",
               'user = "root"\ngroup = "root"\nsecurity_driver = "none"\ndynamic_ownership = 0\n'
               'remember_owner = 0\ncgroup_controllers = [ ]\nnamespaces = [ ]\n'
               f'migration_address = "{node_ip(name)}"\nmigration_host = "{name}"\n')
    for d in ("log/corosync", "log/libvirt/qemu", "lib/libvirt", "lib/corosync"):
        (var / d).mkdir(parents=True, exist_ok=True)
    # Fake DRBD tools in place of drbd-utils' binaries, for any caller whatever its PATH.
    sim = HERE / "drbdsim.py"
    for tool in ("drbdadm", "drbdsetup"):
        write_file(usr / "sbin" / tool, f'#!/bin/sh\nexec {PY} {sim} {tool} "$@"\n', 0o755)
    write_file(usr / "sbin/drbdsim", f'#!/bin/sh\nexec {PY} {sim} drbdsim "$@"\n', 0o755)
    if LOWER_ROOT:
        # crmsh 5 asks systemd whether Pacemaker runs before `crm -w` waits for the DC; a node has
        # no systemd, so it would answer "Pacemaker is not running". This answers is-active from
        # the node's processes, and refuses everything else.
        write_file(usr / "local/sbin/systemctl", SYSTEMCTL_SHIM, 0o755)
    # OCF providers: the working tree's agents (symlinks, so edits show up at once).
    rd = usr / "lib/ocf/resource.d"
    (rd / "livemig").mkdir(parents=True)
    for agent in sorted((REPO / "agents").iterdir()):
        if agent.is_file() and os.access(str(agent), os.X_OK) and agent.name != HOOK_EXECUTABLE:
            (rd / "livemig" / agent.name).symlink_to(agent)
    hook = repo_hook()
    if hook is not None:
        env = " ".join(f"{k}={v}" for k, v in sorted(node_env(name).items())
                       if k.startswith("LIVEMIG_") and " " not in v)
        write_file(etc / HOOK_PATH, HOOK_WRAPPER.format(env=env, hook=hook), 0o755)
    (rd / "livemiglab").mkdir(parents=True)
    (rd / "livemiglab" / "drbd").symlink_to(HERE / "ocf" / "drbd")
    # Lab fence agent, found by pacemaker-fenced in /usr/sbin.
    (usr / "sbin" / "fence_livemiglab").symlink_to(HERE / "fence_livemiglab")


# --------------------------------------------------------------------------- PID 1 and daemons


def start_holder(name: str, state: LabState) -> None:
    nd = node_dir(name)
    cfg = {"name": name, "lab_dir": str(LAB_DIR), "node_dir": str(nd), "daemons_sh": boot_sh(state),
           "repo": str(REPO), "lower_root": LOWER_ROOT, "carry": [str(REPO), GUEST_CACHE],
           "env": node_env(name), "drbd_crash": ["/usr/sbin/drbdsim", "crash", name]}
    write_file(nd / "init.json", json.dumps(cfg))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS_PREFIX + name, "unshare", "--mount", "--uts", "--pid", "--fork",
         "--propagation", "private", PY, str(HERE / "nodeinit.py"), str(nd / "init.json")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(str(nd / "init.log"), "ab"),
        start_new_session=True, env={"PATH": NODE_PATH, "LANG": "C.UTF-8"})
    state.unshare[name] = proc.pid
    state.save()
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()   # nodeinit prints READY (or dies)
    if line != "READY":
        raise LabError("node {} failed to build its namespaces; see {}".format(name, nd / "init.log"))
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    if len(children) != 1:
        raise LabError(f"cannot find PID 1 of node {name}")
    state.holders[name] = int(children[0])
    state.save()


def start_daemons(name: str, state: LabState) -> None:
    on_node(name, ["/bin/sh", "-c", boot_sh(state)], state=state)


def libvirt_ready(name: str, state: LabState) -> bool:
    return on_node(name, ["virsh", "-q", "-c", "qemu:///system", "uri"], check=False,
                   timeout=90, state=state).returncode == 0


def stop_nodes(state: Optional[LabState], lab_pids: Callable[[], List[int]], timeout: float = 30) -> None:
    """Ask each node's PID 1 to stop its node (TERM all, bounded wait, KILL), then kill stragglers:
    every process ``lab_pids()`` finds in the lab's network namespaces, and the ``unshare``s."""
    holders = [int(p) for p in (state.holders.values() if state else [])]
    unshares = [int(p) for p in (state.unshare.values() if state else [])]
    for pid in holders:
        if is_alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_alive(p) for p in holders):
        time.sleep(0.1)
    for _attempt in range(50):
        pids = [p for p in lab_pids() if is_alive(p)]
        pids += [p for p in unshares if is_alive(p)]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    else:
        log(f"WARNING: processes survive in the lab namespaces: {pids}")
    # Reap our own children, if `up` ran in this process.
    for pid in unshares:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
