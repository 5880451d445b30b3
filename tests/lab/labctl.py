"""The livemig two-node lab: real Corosync, Pacemaker and libvirtd per node, simulated DRBD.

Everything the lab creates lives in

* network namespaces named ``lmlab-*`` (one per node plus ``lmlab-sw`` holding the
  bridge), so no link or address ever appears in the host's network namespace;
* one PID/mount/UTS namespace per node whose PID 1 is ``nodeinit.py``; every daemon and
  QEMU of the node is inside it, so killing it kills the node;
* the directory ``/run/livemig-lab`` (tmpfs) with the shared DRBD state store, the shared
  disk image, the VM definition and each node's overlay upper directories (configs, logs,
  CIB), and
* one loop device backing the simulated DRBD device.

``down`` removes all of it and also works without the state file (after a failed ``up``):
it discovers ``lmlab-*`` namespaces, the processes inside them and loop devices backed by
files under the lab directory.  The host's /usr/lib/ocf, /etc, /var and /root are never
written: the nodes see them through overlayfs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAB_DIR = Path(os.environ.get("LIVEMIG_LAB_DIR", "/run/livemig-lab"))
STATE_FILE = LAB_DIR / "state.json"
SHARED = LAB_DIR / "shared"
NS_PREFIX = "lmlab-"
SWITCH_NS = NS_PREFIX + "sw"
SUBNET = "10.77.0"
CLUSTER_NAME = "livemiglab"
DRBD_RES = "r0"
DRBD_MINOR = 1000
VM_NAME = "lmvm1"
PY = "/usr/bin/python3"
FENCING = os.environ.get("LIVEMIG_LAB_FENCING", "1") != "0"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The nodes' lower layer for /etc, /var, /root and /usr: the host's (default), or a root file
# system of another release (tests/tools/distroot.py path debian13: Pacemaker 3.0, libvirt 11.3).
LOWER_ROOT = os.environ.get("LIVEMIG_LAB_ROOT", "")
GUEST_CACHE = os.environ.get("LIVEMIG_GUEST_CACHE", "/var/cache/livemig-tests/guest")

_T0 = time.monotonic()


class LabError(RuntimeError):
    """A lab component could not be set up."""


LAB_LOCK = Path("/run/lock/livemig-lab.lock")


_LOCK_HELD: Dict[str, int] = {}  # this process's lock fd and how many holders share it


def acquire_lab_lock(timeout: float = 1800.0) -> int:
    """Hold the machine's one lab: an exclusive flock, waited for (bounded) rather than failed.

    Two test sessions (or a session and `make demo`) on one machine take turns. Re-entrant
    within a process (tests/lab and tests/e2e each register the session fixture): a second
    flock on a new fd of the same process would wait for itself. Returns the fd; release it
    with :func:`release_lab_lock` (exiting releases it too).
    """
    import fcntl

    if _LOCK_HELD.get("count"):
        _LOCK_HELD["count"] += 1
        return _LOCK_HELD["fd"]
    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(LAB_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _LOCK_HELD.update(fd=fd, count=1)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise LabError(f"another lab holds {LAB_LOCK} for more than {timeout:.0f}s") from None
            time.sleep(1.0)


def release_lab_lock(fd: int) -> None:
    if _LOCK_HELD.get("fd") == fd and _LOCK_HELD.get("count", 0) > 1:
        _LOCK_HELD["count"] -= 1
        return
    _LOCK_HELD.clear()
    os.close(fd)


def log(msg: str) -> None:
    sys.stderr.write(f"[lab {time.monotonic() - _T0:6.1f}s] {msg}\n")
    sys.stderr.flush()


def node_names(count: int) -> List[str]:
    return [f"node{i}" for i in range(1, count + 1)]


def node_ip(name: str) -> str:
    return f"{SUBNET}.{10 + int(name[4:])}"


def node_dir(name: str) -> Path:
    return LAB_DIR / "nodes" / name


def proc_drbd_path(name: str) -> str:
    return str(node_dir(name) / "proc-drbd")


def console_log_path() -> str:
    """The VM's serial console, appended to by whichever node runs it (shared directory)."""
    return str(SHARED / "vm" / (VM_NAME + "-console.log"))


def vm_config_path() -> str:
    return str(SHARED / "vm" / (VM_NAME + ".xml"))


def run(argv: Sequence[str], check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip()
        raise LabError(f"{' '.join(argv)} failed (exit {res.returncode}): {detail}")
    return res


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns a true value; LabError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (LabError, subprocess.SubprocessError, OSError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise LabError("timed out after {:.0f}s waiting for {}{}".format(
                timeout, what, f": {last_exc}" if last_exc else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- state


def load_state() -> Dict[str, Any]:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def save_state(state: Dict[str, Any]) -> None:
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(STATE_FILE)


def holder_pid(name: str, state: Optional[Dict[str, Any]] = None) -> int:
    state = state if state is not None else load_state()
    pid = state.get("holders", {}).get(name)
    if not pid:
        raise LabError(f"node {name} is not running (is the lab up?)")
    return int(pid)


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


def nsenter_argv(name: str, state: Optional[Dict[str, Any]] = None) -> List[str]:
    return ["nsenter", "-t", str(holder_pid(name, state)), "-m", "-u", "-n", "-p", "--wd=/"]


def on_node(name: str, argv: Sequence[str], check: bool = True, timeout: float = 60,
            state: Optional[Dict[str, Any]] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``argv`` inside node ``name`` (its mount, UTS, network and PID namespaces)."""
    return run(nsenter_argv(name, state) + list(argv), check=check, timeout=timeout,
               env=node_env(name), input=input)


def node_path(name: str, path: str, state: Optional[Dict[str, Any]] = None) -> Path:
    """A path as the node sees it, reachable from the host via /proc/PID/root."""
    return Path(f"/proc/{holder_pid(name, state)}/root") / path.lstrip("/")


# --------------------------------------------------------------------------- snapshot


def snapshot() -> Dict[str, List[str]]:
    """What `lab down` must restore: processes, mounts, namespaces, links, loop devices."""
    procs = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                procs.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except OSError:
                pass
    mounts = [" ".join(line.split()[:3]) for line in Path("/proc/self/mounts").read_text().splitlines()]
    netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    links = run(["ip", "-o", "link", "show"]).stdout.split("\n")
    links = sorted(line.split(":")[1].strip() for line in links if line.strip())
    loops = run(["losetup", "-a"], check=False).stdout.splitlines()
    return {
        "processes": sorted(c for c in procs if c),
        "mounts": sorted(mounts),
        "netns": netns,
        "links": links,
        "loops": sorted(loops),
        "lab_dir": [str(LAB_DIR)] if LAB_DIR.exists() else [],
    }


# --------------------------------------------------------------------------- files


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(str(path), mode)


def corosync_conf(names: List[str]) -> str:
    nodes = "".join(
        f"    node {{\n        ring0_addr: {node_ip(n)}\n        name: {n}\n        nodeid: {i + 1}\n    }}\n"
        for i, n in enumerate(names))
    two_node = "    two_node: 1\n" if len(names) == 2 else ""
    return (
        f"totem {{\n    version: 2\n    cluster_name: {CLUSTER_NAME}\n    transport: knet\n"
        "    crypto_cipher: none\n    crypto_hash: none\n    token: 3000\n}\n"
        "logging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n"
        "    to_syslog: no\n    to_stderr: no\n    timestamp: on\n}\n"
        f"quorum {{\n    provider: corosync_votequorum\n{two_node}}}\n"
        f"nodelist {{\n{nodes}}}\n")


SYSTEMCTL_SHIM = """#!/bin/sh
# livemig lab node (tests/lab/labctl.py): no systemd here; is-active is read from the processes.
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


def prepare_node_files(name: str, names: List[str]) -> None:
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
    _write(etc / "passwd", passwd)
    _write(etc / "group", group)
    _write(etc / "hostname", name + "\n")
    hosts = "127.0.0.1\tlocalhost\n" + "".join(f"{node_ip(n)}\t{n}\n" for n in names)
    _write(etc / "hosts", hosts)
    _write(etc / "corosync/corosync.conf", corosync_conf(names))
    host_uuid = str(uuid.uuid4())
    _write(etc / "libvirt/libvirtd.conf",
           f'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\nlisten_addr = "{node_ip(name)}"\n'
           f'host_uuid = "{host_uuid}"\nlog_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')
    _write(etc / "libvirt/qemu.conf",
           'user = "root"\ngroup = "root"\nsecurity_driver = "none"\ndynamic_ownership = 0\n'
           'remember_owner = 0\ncgroup_controllers = [ ]\nnamespaces = [ ]\n'
           f'migration_address = "{node_ip(name)}"\nmigration_host = "{name}"\n')
    for d in ("log/corosync", "log/libvirt/qemu", "lib/libvirt", "lib/corosync"):
        (var / d).mkdir(parents=True, exist_ok=True)
    # Fake DRBD tools in place of drbd-utils' binaries, for any caller whatever its PATH.
    sim = HERE / "drbdsim.py"
    for tool in ("drbdadm", "drbdsetup"):
        _write(usr / "sbin" / tool,
               f'#!/bin/sh\nexec {PY} {sim} {tool} "$@"\n', 0o755)
    _write(usr / "sbin/drbdsim", f'#!/bin/sh\nexec {PY} {sim} drbdsim "$@"\n', 0o755)
    if LOWER_ROOT:
        # crmsh 5 asks systemd whether Pacemaker runs before `crm -w` waits for the DC; a node has
        # no systemd, so it would answer "Pacemaker is not running". This answers is-active from
        # the node's processes, and refuses everything else.
        _write(usr / "local/sbin/systemctl", SYSTEMCTL_SHIM, 0o755)
    # OCF providers: the working tree's agents (symlinks, so edits show up at once).
    rd = usr / "lib/ocf/resource.d"
    (rd / "livemig").mkdir(parents=True)
    for agent in sorted((REPO / "agents").iterdir()):
        if agent.is_file() and os.access(str(agent), os.X_OK):
            (rd / "livemig" / agent.name).symlink_to(agent)
    (rd / "livemiglab").mkdir(parents=True)
    (rd / "livemiglab" / "drbd").symlink_to(HERE / "ocf" / "drbd")
    # Lab fence agent, found by pacemaker-fenced in /usr/sbin.
    (usr / "sbin" / "fence_livemiglab").symlink_to(HERE / "fence_livemiglab")


# --------------------------------------------------------------------------- up


def _netns_add(name: str, state: Dict[str, Any]) -> None:
    run(["ip", "netns", "add", name])
    state.setdefault("netns", []).append(name)
    save_state(state)
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def setup_network(names: List[str], state: Dict[str, Any]) -> None:
    _netns_add(SWITCH_NS, state)
    run(["ip", "-n", SWITCH_NS, "link", "add", "br0", "type", "bridge", "stp_state", "0"])
    run(["ip", "-n", SWITCH_NS, "link", "set", "br0", "up"])
    for n in names:
        ns = NS_PREFIX + n
        _netns_add(ns, state)
        port = "p-" + n
        run(["ip", "-n", SWITCH_NS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", SWITCH_NS, "link", "set", port, "master", "br0", "up"])
        run(["ip", "-n", ns, "addr", "add", node_ip(n) + "/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])


def start_holder(name: str, state: Dict[str, Any]) -> None:
    nd = node_dir(name)
    cfg = {"name": name, "lab_dir": str(LAB_DIR), "node_dir": str(nd), "daemons_sh": DAEMONS_SH,
           "repo": str(REPO), "lower_root": LOWER_ROOT, "carry": [str(REPO), GUEST_CACHE],
           "env": node_env(name), "drbd_crash": ["/usr/sbin/drbdsim", "crash", name]}
    _write(nd / "init.json", json.dumps(cfg))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS_PREFIX + name, "unshare", "--mount", "--uts", "--pid", "--fork",
         "--propagation", "private", PY, str(HERE / "nodeinit.py"), str(nd / "init.json")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(str(nd / "init.log"), "ab"),
        start_new_session=True, env={"PATH": NODE_PATH, "LANG": "C.UTF-8"})
    state.setdefault("unshare", {})[name] = proc.pid
    save_state(state)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()   # nodeinit prints READY (or dies)
    if line != "READY":
        raise LabError("node {} failed to build its namespaces; see {}".format(name, nd / "init.log"))
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    if len(children) != 1:
        raise LabError(f"cannot find PID 1 of node {name}")
    state.setdefault("holders", {})[name] = int(children[0])
    save_state(state)


# Each daemon is started whatever happened to the one before (a libvirtd that fails to start must
# not keep the node out of the cluster), and each start is logged with its exit status.
DAEMONS_SH = (
    "exec </dev/null >>/var/log/lab-daemons.log 2>&1; "
    "for d in 'virtlogd -d' 'libvirtd -d --listen' corosync; do "
    "$d; rc=$?; echo \"$(date +%T) $d: exit $rc\"; done; "
    "{ setsid pacemakerd & }; echo \"$(date +%T) pacemakerd started\""
)


def start_daemons(name: str, state: Dict[str, Any]) -> None:
    on_node(name, ["/bin/sh", "-c", DAEMONS_SH], state=state)


def libvirt_ready(name: str, state: Dict[str, Any]) -> bool:
    return on_node(name, ["virsh", "-q", "-c", "qemu:///system", "uri"], check=False,
                   timeout=90, state=state).returncode == 0


def crm_mon_xml(name: str, state: Optional[Dict[str, Any]] = None) -> ET.Element:
    out = on_node(name, ["crm_mon", "-1", "--output-as=xml"], check=False, timeout=30, state=state)
    if not out.stdout.strip():
        raise LabError(f"crm_mon on {name}: {out.stderr.strip()}")
    return ET.fromstring(out.stdout)


def cluster_online(name: str, names: List[str], state: Dict[str, Any]) -> bool:
    root = crm_mon_xml(name, state)
    dc = root.find("summary/current_dc")
    if dc is None or dc.get("present") != "true":
        return False
    online = {n.get("name") for n in root.iter("node") if n.get("online") == "true"}
    return set(names) <= online


def configure_cluster(names: List[str], state: Dict[str, Any], vm: bool = True) -> List[str]:
    """The configuration an administrator would type, one crm command per line."""
    first = names[0]
    fence_hosts = ",".join(names)
    agent = vm_agent()
    state["vm_agent"] = agent
    # Fencing first: crmsh 5 (Debian 13) verifies the whole CIB at every commit and refuses one
    # with fencing enabled and no fencing device; crmsh 4 only warned.
    if FENCING:
        cmds = ["crm configure primitive lab-fence stonith:fence_livemiglab "
                f"params pcmk_host_list={fence_hosts} op monitor interval=60s",
                "crm configure property stonith-enabled=true stonith-timeout=30s"]
    else:
        cmds = ["crm configure property stonith-enabled=false"]
    cmds += [
        f"crm configure property cluster-name={CLUSTER_NAME}",
        "crm configure rsc_defaults resource-stickiness=100",
        f"crm configure primitive drbd-{DRBD_RES} ocf:livemiglab:drbd params drbd_resource={DRBD_RES} "
        "op monitor interval=15s role=Promoted op monitor interval=17s role=Unpromoted",
        f"crm configure clone drbd-{DRBD_RES}-clone drbd-{DRBD_RES} meta promotable=true promoted-max=2 "
        f"promoted-node-max=1 clone-max={len(names)} clone-node-max=1 notify=true interleave=true",
    ]
    if vm:
        cmds += [
            f"crm configure primitive {VM_NAME} {agent} params config={vm_config_path()} "
            "hypervisor=qemu:///system migration_transport=tcp "
            "meta allow-migrate=true target-role=Stopped "
            "op monitor interval=10s timeout=30s op start timeout=90s op stop timeout=90s "
            "op migrate_to timeout=120s op migrate_from timeout=60s",
            f"crm configure colocation {VM_NAME}-with-drbd inf: {VM_NAME} drbd-{DRBD_RES}-clone:Promoted",
            f"crm configure order drbd-promote-before-{VM_NAME} Mandatory: drbd-{DRBD_RES}-clone:promote "
            f"{VM_NAME}:start",
        ]
    for c in cmds:
        log(f"{first}$ {c}")
        on_node(first, c.split(), state=state, timeout=90)
    return cmds


def vm_agent() -> str:
    """ocf:livemig:VirtualDomain once the working tree's agent answers meta-data, else heartbeat's."""
    forced = os.environ.get("LIVEMIG_LAB_VM_AGENT")
    if forced:
        return forced
    res = run([PY, str(REPO / "agents" / "VirtualDomain"), "meta-data"], check=False, timeout=30)
    if res.returncode == 0 and "<resource-agent" in res.stdout:
        return "ocf:livemig:VirtualDomain"
    why = (res.stderr.strip().splitlines() or ["?"])[-1]
    log(f"WARNING: agents/VirtualDomain meta-data fails ({why}); using ocf:heartbeat:VirtualDomain")
    return "ocf:heartbeat:VirtualDomain"


def prepare_shared(names: List[str], state: Dict[str, Any], vm: bool = True) -> None:
    (SHARED / "drbd").mkdir(parents=True)
    (SHARED / "vm").mkdir(parents=True)
    img = SHARED / "drbd" / (DRBD_RES + ".img")
    with open(str(img), "wb") as f:
        f.truncate(64 * 1024 * 1024)
    loop = run(["losetup", "--find", "--show", str(img)]).stdout.strip()
    state["loop"] = loop
    save_state(state)
    sys.path.insert(0, str(HERE))
    import drbdsim  # noqa: E402

    drbdsim.init_store(str(SHARED / "drbd" / "state.json"), DRBD_RES, DRBD_MINOR, loop,
                       [(n, node_ip(n)) for n in names], proc_paths={n: proc_drbd_path(n) for n in names})
    if vm:
        _write(Path(vm_config_path()), vm_domain_xml())


def vm_domain_xml() -> str:
    """The lab VM: the shared guest image, disk on the simulated DRBD device."""
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    try:
        from support import guest  # type: ignore
    except ImportError as exc:
        raise LabError(f"tests/support/guest.py is not available ({exc})") from exc
    img = guest.ensure_guest_image()
    xml = guest.domain_xml(VM_NAME, img, console_log=Path(console_log_path()),
                           uuid="6c6d6c61-622d-4c6d-766d-000000000001")
    root = ET.fromstring(xml)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    for old in devices.findall("disk"):
        devices.remove(old)
    disk = ET.SubElement(devices, "disk", type="block", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none", io="native")
    ET.SubElement(disk, "source", dev=f"/dev/drbd/by-res/{DRBD_RES}/0")
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    return ET.tostring(root, encoding="unicode")


def up(count: int = 2, configure: bool = True, vm: bool = True) -> Dict[str, Any]:
    if LAB_DIR.exists():
        raise LabError(f"{LAB_DIR} exists: the lab is already up (or left over): run `lab down` first")
    names = node_names(count)
    if LOWER_ROOT and not (Path(LOWER_ROOT) / "usr/sbin/pacemakerd").exists():
        raise LabError(f"LIVEMIG_LAB_ROOT={LOWER_ROOT} is no root file system with Pacemaker (no usr/sbin/pacemakerd)")
    LAB_DIR.mkdir(mode=0o755)
    state: Dict[str, Any] = {
        "names": names,
        "netns_dir_existed": os.path.isdir("/run/netns"),
        "netns_dir_was_mount": _is_mount("/run/netns"),
        "started": time.time(),
        "lower_root": LOWER_ROOT,
    }
    save_state(state)
    try:
        log("preparing shared storage and node files" + (f" (nodes on {LOWER_ROOT})" if LOWER_ROOT else ""))
        prepare_shared(names, state, vm)
        for n in names:
            prepare_node_files(n, names)
        setup_network(names, state)
        for n in names:
            start_holder(n, state)
            log(f"{n}: namespaces ready (PID 1 = host pid {state['holders'][n]})")
        for n in names:
            start_daemons(n, state)
        log("daemons started; waiting for libvirtd (QEMU capabilities probe) and the cluster")
        for n in names:
            wait_for(f"libvirtd on {n}", lambda n=n: libvirt_ready(n, state), 120, 0.5)
            log(f"{n}: libvirtd answers")
        wait_for("all nodes Online with a DC", lambda: cluster_online(names[0], names, state), 180, 1.0)
        log("cluster: {} Online, DC elected".format(", ".join(names)))
        if configure:
            state["crm_commands"] = configure_cluster(names, state, vm)
            save_state(state)
            wait_for("drbd clone promoted on all nodes", lambda: promoted_nodes(names[0], state) == set(names),
                     120, 1.0)
            log("cluster configured; drbd-{} promoted on {}".format(DRBD_RES, ", ".join(names)))
        state["ready"] = True
        save_state(state)
        return state
    except BaseException:
        log("lab up failed: tearing down what was started")
        keep_logs = os.environ.get("LIVEMIG_LAB_KEEP_LOGS_ON_FAILURE")
        if keep_logs:
            collect_logs(Path(keep_logs))
        down()
        raise


def promoted_nodes(first: str, state: Optional[Dict[str, Any]] = None) -> set:
    root = crm_mon_xml(first, state)
    out = set()
    for res in root.iter("resource"):
        if res.get("id", "").startswith(f"drbd-{DRBD_RES}") and res.get("role") in ("Promoted", "Master"):
            for node in res.findall("node"):
                out.add(node.get("name"))
    return out


def resource_nodes(first: str, rsc: str, state: Optional[Dict[str, Any]] = None) -> List[str]:
    root = crm_mon_xml(first, state)
    out = []
    for res in root.iter("resource"):
        if res.get("id") == rsc and res.get("active") == "true" and res.get("failed") != "true":
            out.extend(node.get("name", "") for node in res.findall("node"))
    return out


def collect_logs(dest: Path) -> None:
    if not (LAB_DIR / "nodes").exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for nd in (LAB_DIR / "nodes").iterdir():
        src = nd / "ovl/var/upper/log"
        if src.exists():
            shutil.copytree(str(src), str(dest / nd.name), dirs_exist_ok=True)
        if (nd / "init.log").exists():
            shutil.copy(str(nd / "init.log"), str(dest / (nd.name + "-init.log")))


# --------------------------------------------------------------------------- down


def _is_mount(path: str) -> bool:
    try:
        return any(line.split()[1] == path for line in Path("/proc/self/mounts").read_text().splitlines())
    except OSError:
        return False


def _ns_inode(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _pids_in_netns(inodes: set) -> List[int]:
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            try:
                if os.stat(f"/proc/{p}/ns/net").st_ino in inodes:
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def down(timeout: float = 30) -> None:
    """Remove everything the lab created; safe to call at any time, also twice."""
    state = load_state()
    our_ns = sorted({n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
                     if n.startswith(NS_PREFIX)} | set(state.get("netns", [])))
    inodes = {i for i in (_ns_inode("/run/netns/" + n) for n in our_ns) if i}
    # 1. Ask each node's PID 1 to stop its node (TERM all, bounded wait, KILL), then kill stragglers.
    holders = [int(p) for p in state.get("holders", {}).values()]
    for pid in holders:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in holders):
        time.sleep(0.1)
    for _attempt in range(50):
        pids = [p for p in _pids_in_netns(inodes) if _alive(p)]
        for pid in state.get("unshare", {}).values():
            if _alive(int(pid)):
                pids.append(int(pid))
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
    for pid in list(state.get("unshare", {}).values()):
        try:
            os.waitpid(int(pid), os.WNOHANG)
        except ChildProcessError:
            pass
    # 2. Network namespaces (their links go with them).
    for ns in our_ns:
        run(["ip", "netns", "delete", ns], check=False)
    if state and not state.get("netns_dir_was_mount") and _is_mount("/run/netns") and not os.listdir("/run/netns"):
        run(["umount", "/run/netns"], check=False)
    if state and not state.get("netns_dir_existed") and os.path.isdir("/run/netns") \
            and not os.listdir("/run/netns") and not _is_mount("/run/netns"):
        os.rmdir("/run/netns")
    # 3. Loop devices backed by lab files.
    for line in run(["losetup", "-a"], check=False).stdout.splitlines():
        if str(LAB_DIR) in line:
            run(["losetup", "-d", line.split(":")[0]], check=False)
    # 4. The lab directory.
    if LAB_DIR.exists():
        shutil.rmtree(str(LAB_DIR))


# --------------------------------------------------------------------------- status / CLI


def status() -> int:
    state = load_state()
    if not state:
        print("lab: down")
        return 3
    print("lab: {} (nodes: {}, up since {})".format("ready" if state.get("ready") else "NOT READY",
                                               ", ".join(state["names"]),
                                               time.strftime("%H:%M:%S", time.localtime(state["started"]))))
    rc = 0
    for n in state["names"]:
        pid = state.get("holders", {}).get(n)
        if not pid or not _alive(int(pid)):
            print(f"  {n}: DOWN")
            rc = 1
            continue
        ps = on_node(n, ["ps", "-eo", "comm="], check=False, state=state).stdout.split()
        daemons = [d for d in ("virtlogd", "libvirtd", "corosync", "pacemakerd", "pacemaker-contr",
                               "qemu-system-x86") if d in ps]
        print("  {}: {}  pid1={}  daemons: {}".format(n, node_ip(n), pid, " ".join(daemons)))
    first = state["names"][0]
    if state.get("holders", {}).get(first):
        out = on_node(first, ["crm_mon", "-1", "-r"], check=False, state=state)
        print(out.stdout.rstrip() or out.stderr.rstrip())
    return rc


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="build the lab")
    p_up.add_argument("--nodes", type=int, default=int(os.environ.get("LAB_NODES", "2")), choices=(2, 3))
    p_up.add_argument("--bare", action="store_true", help="no cluster configuration")
    p_up.add_argument("--no-vm", action="store_true", help="no VM (no guest image needed)")
    sub.add_parser("down", help="tear everything down")
    sub.add_parser("status", help="show nodes, daemons and crm_mon")
    p_run = sub.add_parser("run", help="run a command on a node")
    p_run.add_argument("node")
    p_run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("snapshot", help="print the host state `down` restores (JSON)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lab: must run as root", file=sys.stderr)
        return 2
    try:
        if args.cmd == "up":
            up(args.nodes, configure=not args.bare, vm=not args.no_vm)
            log("lab is up: `tests/lab/lab status`, `tests/lab/lab run node1 crm_mon -1`")
            return 0
        if args.cmd == "down":
            down()
            log("lab is down")
            return 0
        if args.cmd == "status":
            return status()
        if args.cmd == "snapshot":
            print(json.dumps(snapshot(), indent=1))
            return 0
        if args.cmd == "run":
            cmd = args.command or ["/bin/bash"]
            argv2 = nsenter_argv(args.node) + cmd
            os.execvpe(argv2[0], argv2, node_env(args.node))
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- helpers for tests/demo

def _pacemaker_log_matches(pattern: str) -> Iterator[re.Match[str]]:
    """Matches of ``pattern`` over every node's pacemaker.log, line by line."""
    pat = re.compile(pattern)
    for nd in sorted((LAB_DIR / "nodes").iterdir()):
        logf = nd / "ovl/var/upper/log/pacemaker/pacemaker.log"
        if logf.exists():
            for line in logf.read_text(errors="replace").splitlines():
                m = pat.match(line)
                if m:
                    yield m


def agent_ops(rsc: str) -> List[Dict[str, Any]]:
    """Agent actions pacemaker-execd ran for ``rsc`` on every node, from the nodes' pacemaker.log."""
    ops: List[Dict[str, Any]] = []
    for m in _pacemaker_log_matches(
            r"^(\w+ +\d+ [\d:.]+) (\S+) pacemaker-execd .*\(log_finished\)\s+\w+: (\S+) (\S+) "
            r"\(call \d+, PID \d+\) exited with status (\d+)(?: \(.*\))? \(execution time ([\d.]+)(ms|s)"):
        if m.group(3) == rsc:
            ms = float(m.group(6)) * (1000 if m.group(7) == "s" else 1)
            ops.append({"time": m.group(1), "node": m.group(2), "action": m.group(4),
                        "rc": int(m.group(5)), "ms": ms})
    ops.sort(key=lambda o: o["time"])
    return ops


def node_diagnostics(name: str, lines: int = 25) -> str:
    """What a test prints when a node does not come back: its init and daemon logs, its processes."""
    out = []
    for label, path in (("init.log", node_dir(name) / "init.log"),
                        ("lab-daemons.log", node_dir(name) / "ovl/var/upper/log/lab-daemons.log"),
                        ("corosync.log", node_dir(name) / "ovl/var/upper/log/corosync/corosync.log")):
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            tail = [f"({exc})"]
        out.append(f"--- {name} {label}\n" + "\n".join(tail))
    ps = on_node(name, ["ps", "-eo", "pid,stat,etime,args"], check=False, timeout=10)
    out.append(f"--- {name} processes\n{ps.stdout}{ps.stderr}")
    return "\n".join(out)


def probe_results(rsc: str) -> List[Dict[str, Any]]:
    """Probes of ``rsc`` as each node's controller recorded them (execd does not log a probe's 7)."""
    found: List[Dict[str, Any]] = []
    for m in _pacemaker_log_matches(
            r"^(\w+ +\d+ [\d:.]+) (\S+) pacemaker-controld .*\(log_executor_event\)\s+\w+: Result of "
            r"probe operation for (\S+) on (\S+): .*\brc=(\d+)"):
        if m.group(3) == rsc and m.group(2) == m.group(4):
            found.append({"time": m.group(1), "node": m.group(4), "rc": int(m.group(5))})
    found.sort(key=lambda o: o["time"])
    return found


def wait_resource_on(first: str, rsc: str, node: Optional[str], timeout: float = 120) -> str:
    """Wait until ``rsc`` runs (on ``node`` if given) and return where it runs."""
    def where() -> Optional[str]:
        nodes = resource_nodes(first, rsc)
        if len(nodes) == 1 and (node is None or nodes[0] == node):
            return nodes[0]
        return None
    return str(wait_for("{} running{}".format(rsc, " on " + node if node else ""), where, timeout, 0.5))


def qemu_pids(vm: str = VM_NAME) -> List[int]:
    """Host PIDs of the QEMU processes running ``vm`` (in whatever namespace)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"qemu-system-x86_64") and (f"guest={vm},").encode() in b" ".join(cmd):
                out.append(int(p))
    return out
