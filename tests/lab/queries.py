"""Reading the lab without changing it: the host's state ``down`` must restore, the nodes' logs
(agent actions and probes Pacemaker ran), a node's diagnostics, the VM's QEMU processes."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List

from tests.lab.core import DRBD_RES, LAB_DIR, SHARED, VM_NAME, node_dir, run
from tests.lab.nodes import on_node


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


def agent_messages(node: str, rsc: str = VM_NAME) -> List[str]:
    """What the VM's agent logged on ``node`` (``VirtualDomain(RSC)[PID]: LEVEL: text`` lines of its
    pacemaker.log), as ``LEVEL: text``, oldest first."""
    logf = node_dir(node) / "ovl/var/upper/log/pacemaker/pacemaker.log"
    try:
        lines = logf.read_text(errors="replace").splitlines()
    except OSError:
        return []
    tag = f" VirtualDomain({rsc})["
    return [line.split("]: ", 1)[1] for line in lines if tag in line and "]: " in line]


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


def drbd_roles(res: str = DRBD_RES) -> Dict[str, str]:
    """Each node's role of ``res`` as the DRBD simulator's store holds it (read from the host, no
    node involved: cheap enough to sample every few ms; the store is what `drbdsim dump` prints)."""
    import json

    try:
        data = json.loads((SHARED / "drbd" / "state.json").read_text())
    except (OSError, ValueError):
        return {}  # being replaced at this instant: the next sample reads it
    nodes = data.get("resources", {}).get(res, {}).get("nodes", {})
    return {n: str(v.get("role")) for n, v in nodes.items() if v.get("up")}


def window_markers(node: str) -> List[str]:
    """The agent's two-primaries window markers on ``node`` (HA_RSCTMP/*-window.json), from the host."""
    from tests.lab.nodes import node_path

    try:
        return sorted(p.name for p in node_path(node, "/run/resource-agents").glob("*-window.json"))
    except OSError:
        return []


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
