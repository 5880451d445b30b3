"""Issue 13 in the two-node lab (tests/lab), with real Pacemaker and libvirtd: exactly one running
copy, every DRBD volume checked, every action bounded.

The cases assert invariants rather than exact codes:

- never more than one QEMU of a domain across the nodes (outside a live migration, which runs two
  by design);
- an agent ``stop`` that returns 0 on a node: no QEMU of that domain runs on that node;
- a probe or monitor that returns 7 on a node: no QEMU of the domain there; 0: one runs there;
- every agent action returns within its operation timeout;

and the intended outcome where issue 13 states it. ``pytest -s`` prints one FAULT line per
observed action, for docs/reliability.md.

The faults: a resource whose config file exists on one node only (its domain named unlike the
resource), a DRBD disk hot-plugged behind the config's back, a ``snapshot=`` save slowed down by
its file system, and the config file on a file system that stops answering. The slow file systems
are FUSE mounts (bindfs) in a node's mount namespace whose daemon is stopped (SIGSTOP) and resumed
(SIGCONT): every access to the mount then blocks, as on an NFS or cluster file system that stopped
answering, and resumes where it was.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from tests.lab import cluster as lab_cluster
from tests.lab import core, drbdsim
from tests.lab import nodes as lab_nodes
from tests.lab.labfixtures import LabSession
from tests.lab.labvm import DIRECT, Background, QemuCounter, domain_nodes, qemu_nodes, run_agent
from tests.support import guest

GRACE = 5.0  # seconds past an action's timeout before the test calls it hung and lifts the fault


# -- observing actions and checking the invariants ----------------------------------------------


@dataclass
class Outcome:
    """One agent action on a node, as observed."""

    case: str
    node: str
    action: str  # start, stop, probe, monitor (recurring), migrate_to, ...
    domain: str
    timeout: float
    code: Optional[int]
    seconds: float
    reason: str
    qemus: int  # QEMUs of the domain on the node right after the action returned
    hung: bool = False  # not returned within timeout + GRACE: the fault was lifted to let it end

    def line(self) -> str:
        code = f"{self.code} (after the fault was lifted)" if self.hung else str(self.code)
        return (f"FAULT | {self.case} | {self.node} {self.action} | {code} | {self.seconds:.2f} s "
                f"({self.timeout:.0f} s) | {self.reason} | {self.qemus} QEMU of {self.domain} there")

    def violations(self) -> List[str]:
        found = []
        what = f"{self.action} on {self.node}"
        if self.hung or self.seconds >= self.timeout:
            found.append(f"{what} returned after {self.seconds:.1f} s, past its {self.timeout:.0f} s timeout")
        if self.action == "stop" and self.code == 0 and self.qemus:
            found.append(f"{what} returned 0 while {self.qemus} QEMU of {self.domain} runs there")
        if self.action in ("probe", "monitor"):
            if self.code == 7 and self.qemus:
                found.append(f"{what} returned 7 while {self.qemus} QEMU of {self.domain} runs there")
            if self.code == 0 and self.qemus != 1:
                found.append(f"{what} returned 0 with {self.qemus} QEMU of {self.domain} there")
        return found


def act(lab: LabSession, case: str, node: str, action: str, config: str, timeout_s: int,
        domain: str = DIRECT, on_hang: Optional[Callable[[], None]] = None, **params: str) -> Outcome:
    """The agent's ``action`` on ``node`` as Pacemaker calls it (``probe``: a monitor with interval
    0, ``monitor``: a recurring one). Past its timeout + GRACE, ``on_hang`` lifts the fault and the
    action is waited for: the outcome records it as hung."""
    if action in ("probe", "monitor"):
        params.setdefault("OCF_RESKEY_CRM_meta_interval", "0" if action == "probe" else "10000")
    verb = "monitor" if action in ("probe", "monitor") else action
    job = Background(lambda: run_agent(lab, node, verb, config, timeout_s, **params))
    hung = not job.wait(timeout_s + GRACE)
    if hung and on_hang is not None:
        on_hang()
    res = job.join(timeout_s + 60)
    out = Outcome(case, node, action, domain, timeout_s, res.code, job.elapsed, res.exit_reason,
                  qemu_nodes(domain).get(node, 0), hung)
    print("\n" + out.line())
    return out


def all_violations(outcomes: List[Outcome]) -> List[str]:
    return [v for o in outcomes for v in o.violations()]


class QemuLog:
    """libvirt's QEMU log of a domain on a node (host-visible in the node's /var overlay), from now on."""

    def __init__(self, node: str, domain: str) -> None:
        self.path = core.node_dir(node) / "ovl/var/upper/log/libvirt/qemu" / f"{domain}.log"
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def text(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def endings(self) -> List[str]:
        """How QEMU ended since: libvirt's ``shutting down, reason=...`` and QEMU's ``terminating on
        signal N from pid P (name)``."""
        return re.findall(r"shutting down, reason=\S+|terminating on signal \d+ from pid \d+ \([^)]*\)", self.text())

    def killed_outside_libvirt(self) -> List[str]:
        """Endings that mean QEMU was killed by someone else than libvirtd (the agent, as if libvirtd
        were stuck) or died: a signal from another process, or ``reason=crashed``."""
        return [e for e in self.endings()
                if e == "shutting down, reason=crashed" or (e.startswith("terminating") and "(libvirtd)" not in e)]

    def last_start(self) -> str:
        """The command line of the last QEMU started since (libvirt logs each before starting it)."""
        starts = self.text().split("starting up libvirt version")
        return starts[-1] if len(starts) > 1 else ""


# -- 1. the config file on one node only, the domain named unlike the resource -------------------

IDENT = "lmident"
IDENT_DOMAIN = "guest-other-name"
IDENT_CONFIG = "/etc/livemig-lab/lmident.xml"  # node1's private /etc (its overlay), not the shared directory
IDENT_TIMEOUTS = {"start": 90, "stop": 90, "monitor": 30, "probe": 30, "migrate_to": 120, "migrate_from": 60}

_RESULT = re.compile(r"^(\w+ +\d+ [\d:.]+) (\S+) pacemaker-controld .*\(log_executor_event\)\s+\w+: Result of (\w+) "
                     r"operation for (\S+) on (\S+): (.*?) \|.*\bkey=(\S+) rc=(\d+)")
_FINISHED = re.compile(r"^(\w+ +\d+ [\d:.]+) (\S+) pacemaker-execd .*\(log_finished\)\s+\w+: (\S+) (\S+) "
                       r"\(call \d+, PID \d+\) exited with status (\d+)(?: \((.*?)\))? \(execution time ([\d.]+)(ms|s)")


def pacemaker_results(rsc: str) -> List[Dict[str, Any]]:
    """Every result of ``rsc``'s operations as each node's controller recorded it (probes and
    recurring monitors included; cancellations, which carry no code, left out)."""
    found = []
    for nd in sorted((core.LAB_DIR / "nodes").iterdir()):
        logf = nd / "ovl/var/upper/log/pacemaker/pacemaker.log"
        if not logf.exists():
            continue
        for line in logf.read_text(errors="replace").splitlines():
            m = _RESULT.match(line)
            if m and m.group(4) == rsc and m.group(2) == m.group(5):
                interval = m.group(7).rsplit("_", 1)[-1]
                action = m.group(3)
                if action == "monitor" and interval == "0":
                    action = "probe"
                found.append({"time": m.group(1), "node": m.group(5), "action": action, "rc": int(m.group(8)),
                              "text": m.group(6).strip()})
    found.sort(key=lambda r: r["time"])
    return found


def execd_finished(rsc: str) -> List[Dict[str, Any]]:
    """Non-recurring actions of ``rsc`` as execd logged their end: code, exit reason, execution time."""
    found = []
    for nd in sorted((core.LAB_DIR / "nodes").iterdir()):
        logf = nd / "ovl/var/upper/log/pacemaker/pacemaker.log"
        if not logf.exists():
            continue
        for line in logf.read_text(errors="replace").splitlines():
            m = _FINISHED.match(line)
            if m and m.group(3) == rsc:
                seconds = float(m.group(7)) / (1000 if m.group(8) == "ms" else 1)
                found.append({"time": m.group(1), "node": m.group(2), "action": m.group(4), "rc": int(m.group(5)),
                              "reason": m.group(6) or "", "seconds": seconds})
    found.sort(key=lambda r: r["time"])
    return found


def timed_out_lines(rsc: str) -> List[str]:
    out = []
    for nd in sorted((core.LAB_DIR / "nodes").iterdir()):
        logf = nd / "ovl/var/upper/log/pacemaker/pacemaker.log"
        if logf.exists():
            out += [ln for ln in logf.read_text(errors="replace").splitlines()
                    if rsc in ln and "timed out" in ln.lower()]
    return out


def record_agrees_with_proc(lab: LabSession, results: List[Dict[str, Any]], domain: str) -> List[str]:
    """Each node's last recorded result of the resource against the QEMUs there now (the cluster
    has settled, so nothing ran since): stop 0 and probe/monitor 7 mean none, monitor 0 and
    start/migrate_from 0 mean one."""
    qemus = qemu_nodes(domain)
    found = []
    for node in lab.names:
        mine = [r for r in results if r["node"] == node]
        if not mine:
            continue
        last = mine[-1]
        n = qemus.get(node, 0)
        says_none = (last["action"] == "stop" and last["rc"] == 0) or \
                    (last["action"] in ("probe", "monitor") and last["rc"] == 7)
        says_one = last["rc"] == 0 and last["action"] in ("probe", "monitor", "start", "migrate_from")
        if (says_none and n) or (says_one and n != 1):
            found.append(f"Pacemaker's last result on {node} is {last['action']} {last['rc']} ({last['text']}) "
                         f"but {n} QEMU of {domain} runs there")
    return found


def settle(lab: LabSession) -> None:
    lab.run(lab.names[0], "crm_resource", "--wait", "--timeout", "180s", timeout=200)


@pytest.fixture
def ident_resource(lab: LabSession) -> Iterator[Path]:
    """``lmident``, a second VirtualDomain resource whose domain is ``guest-other-name`` and whose
    config file exists on node1 only (node1's /etc); no disk. Stopped, probed, preferring node1."""
    n1 = lab.names[0]
    console = core.SHARED / "vm" / f"{IDENT}-console.log"
    console.write_bytes(b"")
    xml = guest.domain_xml(IDENT_DOMAIN, guest.ensure_guest_image(), console_log=console,
                           uuid="6c6d6c61-622d-4c6d-766d-0000000000e1")
    config = lab_nodes.node_path(n1, IDENT_CONFIG)  # through node1's mount namespace
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(xml)
    ops = [f"op {name} {'interval=10s ' if name == 'monitor' else ''}timeout={t}s"
           for name, t in IDENT_TIMEOUTS.items() if name != "probe"]
    lab.crm("configure", "primitive", IDENT, "ocf:livemig:VirtualDomain", "params", f"config={IDENT_CONFIG}",
            "hypervisor=qemu:///system", "migration_transport=tcp", "meta", "allow-migrate=true",
            "target-role=Stopped", *" ".join(ops).split())
    lab.run(n1, "crm_resource", "--move", "-r", IDENT, "-N", n1)
    try:
        yield console
    finally:
        lab.run(n1, "crm_resource", "--clear", "-r", IDENT, check=False)
        lab.run(n1, "crm_resource", "--meta", "-r", IDENT, "-p", "is-managed", "-v", "true", check=False)
        lab.run(n1, "crm", "-w", "resource", "stop", IDENT, check=False, timeout=200)
        for node in lab.names:  # whatever the agent left behind
            lab.run(node, "virsh", "destroy", IDENT_DOMAIN, check=False)
        lab.run(n1, "crm_resource", "--cleanup", "-r", IDENT, check=False)
        lab.run(n1, "crm", "configure", "delete", "--force", IDENT, check=False)
        settle(lab)
        config.unlink()


def test_config_on_one_node_only_domain_named_unlike_the_resource(lab: LabSession, ident_resource: Path) -> None:
    """Start on node1, ``crm_resource --move`` to node2 (migrate_to, migrate_from), then the agent
    run directly on node2 (probe, stop) and Pacemaker's stop. On node2 neither the config file nor a
    domain named like the resource exists: the agent must find the arrived domain by the identity
    it wrote into the domain at start, never report it stopped or absent while it runs, and
    Pacemaker must never run it twice."""
    case = "config on node1 only, domain named unlike the resource"
    n1, n2 = lab.names[:2]
    lab.crm("resource", "start", IDENT)
    lab_cluster.wait_resource_on(n1, IDENT, n1, timeout=120)
    guest.wait_for_console(ident_resource, guest.READY, timeout=60)
    since = len(pacemaker_results(IDENT))
    done = len(execd_finished(IDENT))
    lab.run(n1, "crm_resource", "--move", "-r", IDENT, "-N", n2)
    core.wait_for("migrate_to to finish", lambda: [r for r in pacemaker_results(IDENT)[since:]
                                                   if r["action"] == "migrate_to"], timeout=150, interval=0.1)
    # From the end of migrate_to on, one QEMU of the domain at most.
    with QemuCounter(IDENT_DOMAIN) as counter:
        settle(lab)
        after_move = pacemaker_results(IDENT)
        where_pacemaker = lab_cluster.resource_nodes(n1, IDENT)
        where_qemu = qemu_nodes(IDENT_DOMAIN)
        moved_ok = record_agrees_with_proc(lab, after_move, IDENT_DOMAIN)
        # The agent directly on node2, as Pacemaker calls it; Pacemaker leaves the resource alone meanwhile.
        lab.crm("resource", "unmanage", IDENT)
        direct = {"OCF_RESOURCE_INSTANCE": IDENT}
        outcomes = [act(lab, case, n2, "probe", IDENT_CONFIG, IDENT_TIMEOUTS["probe"], IDENT_DOMAIN, **direct),
                    act(lab, case, n2, "stop", IDENT_CONFIG, IDENT_TIMEOUTS["stop"], IDENT_DOMAIN, **direct),
                    act(lab, case, n2, "probe", IDENT_CONFIG, IDENT_TIMEOUTS["probe"], IDENT_DOMAIN, **direct)]
        # Then Pacemaker stops the resource wherever it thinks it runs.
        lab.crm("resource", "stop", IDENT)
        lab.crm("resource", "manage", IDENT)
        settle(lab)
        final = pacemaker_results(IDENT)
        left = qemu_nodes(IDENT_DOMAIN)
        final_ok = record_agrees_with_proc(lab, final, IDENT_DOMAIN)
    chain = [f"{r['node']} {r['action']} {r['rc']}" for r in after_move[since:]]
    ran = execd_finished(IDENT)[done:]
    for r in ran:
        print(f"\nFAULT | {case} | {r['node']} {r['action']} (Pacemaker) | {r['rc']} | {r['seconds']:.2f} s "
              f"({IDENT_TIMEOUTS.get(r['action'], 20)} s) | {r['reason']} |")
    print(f"\nFAULT | {case} | chain after the move: {', '.join(chain)} | Pacemaker says {where_pacemaker}, "
          f"QEMU on {where_qemu} | at most {counter.max} QEMU from migrate_to on | after Pacemaker's stop: "
          f"QEMU on {left}")

    problems = moved_ok + final_ok + all_violations(outcomes)
    if counter.max > 1:
        problems.append(f"{counter.max} QEMUs of {IDENT_DOMAIN} ran at once after migrate_to")
    problems += [f"Pacemaker's {r['action']} on {r['node']} took {r['seconds']:.1f} s"
                 for r in ran if r["seconds"] >= IDENT_TIMEOUTS.get(r["action"], 20)]
    problems += timed_out_lines(IDENT)
    if left:
        problems.append(f"after Pacemaker stopped {IDENT}, QEMU of {IDENT_DOMAIN} still runs on {left}")
    assert not problems, "\n".join(problems)
    # Intended: the domain arrived on node2 and migrate_from said so, naming the unreadable config.
    arrived = [r for r in ran if r["action"] == "migrate_from" and r["node"] == n2]
    assert arrived and arrived[0]["rc"] == 0, arrived
    assert IDENT_CONFIG in arrived[0]["reason"], arrived
    assert where_pacemaker == [n2] and where_qemu == {n2: 1}, (where_pacemaker, where_qemu)
    assert [o.code for o in outcomes] == [0, 0, 7], [o.line() for o in outcomes]


# -- 2. a DRBD disk hot-plugged behind the config's back ----------------------------------------

HOT_RES = "t8"
HOT_MINOR = 1008


class HotDrbd:
    """A dual-primary DRBD resource of the test's own in the simulator, with a device on every node
    (``/dev/drbd/by-res/t8/0``, a loop device over an image in the shared directory), in a store of
    its own (the agent is told with ``LIVEMIG_DRBDSIM_STORE``)."""

    def __init__(self, lab: LabSession) -> None:

        self.lab = lab
        self.store = core.SHARED / "drbd" / "integrity.json"
        self.image = core.SHARED / "drbd" / f"{HOT_RES}.img"
        with open(self.image, "wb") as f:
            f.truncate(16 * 1024 * 1024)
        self.loop = core.run(["losetup", "--find", "--show", str(self.image)]).stdout.strip()
        rdev = os.stat(self.loop).st_rdev
        for node in lab.names:  # a node's /dev is a copy made when it started
            dev = lab_nodes.node_path(node, self.loop)
            if not dev.exists():
                os.mknod(str(dev), stat.S_IFBLK | 0o660, rdev)
        drbdsim.init_store(str(self.store), HOT_RES, HOT_MINOR, self.loop,
                           [(n, core.node_ip(n)) for n in lab.names], devices=True)
        for node in lab.names:
            self.adm(node, "up", HOT_RES)
        for node in lab.names:
            self.adm(node, "net-options", "--allow-two-primaries=yes", HOT_RES)
            self.adm(node, "primary", HOT_RES)

    @property
    def env(self) -> Dict[str, str]:
        return {"LIVEMIG_DRBDSIM_STORE": str(self.store)}

    def adm(self, node: str, *args: str, check: bool = True) -> str:
        res = self.lab.run(node, "env", f"LIVEMIG_DRBDSIM_STORE={self.store}", "drbdadm", *args, check=False)
        assert res.returncode == 0 or not check, f"drbdadm {' '.join(args)} on {node}: {res.stderr}"
        return res.stdout

    def remove(self) -> None:
        for node in self.lab.names:
            self.adm(node, "down", HOT_RES, check=False)
        core.run(["losetup", "-d", self.loop], check=False)
        for path in (self.store, Path(f"{self.store}.lock"), self.image):
            path.unlink(missing_ok=True)


@pytest.fixture
def hot_drbd(lab: LabSession) -> Iterator[HotDrbd]:
    sim = HotDrbd(lab)
    yield sim
    sim.remove()


HOT_DISK = (f"<disk type='block' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/>"
            f"<source dev='/dev/drbd/by-res/{HOT_RES}/0'/><target dev='vdb' bus='virtio'/></disk>")


def test_hot_plugged_drbd_disk_is_guarded(lab: LabSession, hot_drbd: HotDrbd, direct_vm) -> None:
    """The config names no disk; a disk on DRBD resource t8 is attached to the running domain
    (``virsh attach-device --live``), then t8's peer disconnects. migrate_to must refuse, naming t8:
    the guard must look at the disks the domain has, not those its config file lists."""
    case = "hot-plugged DRBD disk, its resource disconnected"
    n1, n2 = lab.names[:2]
    vm = direct_vm()
    vm.start(n1)
    disk = core.SHARED / "vm" / f"{HOT_RES}-disk.xml"
    disk.write_text(HOT_DISK)
    lab.run(n1, "virsh", "attach-device", DIRECT, str(disk), "--live")
    assert f"/dev/drbd/by-res/{HOT_RES}/0" in lab.run(n1, "virsh", "domblklist", DIRECT).stdout
    hot_drbd.adm(n2, "disconnect", HOT_RES)
    with QemuCounter(DIRECT) as counter:
        out = act(lab, case, n1, "migrate_to", vm.config, 60, OCF_RESKEY_CRM_meta_migrate_target=n2,
                  migration_transport="tcp", **hot_drbd.env)
    where = domain_nodes(lab, DIRECT)
    print(f"\nFAULT | {case} | afterwards | VM on {where} | at most {counter.max} QEMU")
    assert not out.violations(), out.violations()
    assert out.code == 1, out.line()
    assert HOT_RES in out.reason, out.line()
    assert counter.max == 1, "the target started a QEMU: the migration began"
    assert where == [n1] and qemu_nodes(DIRECT) == {n1: 1}
    assert vm.boots() == 1


# -- slow and frozen file systems (FUSE) ---------------------------------------------------------


class FuseDir:
    """A directory of ``node`` served by bindfs (FUSE) from a backing directory under the lab's
    node directory (read from the host directly, never through the mount). ``freeze`` stops the
    daemon (SIGSTOP): every access to the mount blocks until ``thaw``. The kernel caches nothing
    (``attr_timeout``, ``entry_timeout`` and ``negative_timeout`` 0), so a frozen mount cannot
    answer from a cache."""

    def __init__(self, lab: LabSession, node: str, name: str) -> None:
        self.lab = lab
        self.node = node
        self.backing = core.node_dir(node) / f"fuse-{name}"
        self.backing.mkdir()
        self.mount = f"/run/lmfuse-{name}"  # the node's private /run
        self.frozen = False
        lab.run(node, "mkdir", "-p", self.mount)
        self._log = open(core.node_dir(node) / f"fuse-{name}.log", "ab")
        self._proc = subprocess.Popen(
            lab_nodes.nsenter_argv(node) + ["bindfs", "-f", "-o", "attr_timeout=0,entry_timeout=0,negative_timeout=0",
                                            str(self.backing), self.mount],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=lab_nodes.node_env(node))
        mounts = lab_nodes.node_path(node, "/proc/1/mounts")
        try:
            core.wait_for(f"bindfs mounted at {self.mount} on {node}",
                          lambda: f" {self.mount} fuse" in mounts.read_text() or self._proc.poll() is not None,
                          timeout=20, interval=0.05)
        except core.LabError as exc:
            self.close()
            pytest.fail(f"{exc}", pytrace=False)
        if self._proc.poll() is not None:
            self.close()
            pytest.fail(f"bindfs exited ({self._proc.returncode}) on {node}; see {self._log.name}", pytrace=False)
        # nsenter forks to enter the PID namespace: the daemon is its one child.
        children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        self.pid = int(children[0])

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            # nsenter, seeing its child stopped, stops itself (job control) until continued: both.
            for pid in (self.pid, self._proc.pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.frozen = False

    def close(self) -> None:
        try:
            self.thaw()
            self.lab.run(self.node, "umount", "-l", self.mount, check=False)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                for pid in (self.pid, self._proc.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self._proc.wait(10)
        finally:
            self._log.close()
            shutil.rmtree(self.backing, ignore_errors=True)


@pytest.fixture
def fuse_dir(lab: LabSession) -> Iterator[Callable[[str, str], FuseDir]]:
    made: List[FuseDir] = []

    def make(node: str, name: str) -> FuseDir:
        fs = FuseDir(lab, node, name)
        made.append(fs)
        return fs

    try:
        yield make
    finally:
        for fs in made:
            fs.close()


# -- 3. a snapshot= stop whose save takes longer than 30 s -------------------------------------

SAVE_FREEZE_S = 35.0  # the save's file system stops answering this long, mid-save


def open_by(path: str) -> List[int]:
    """Host PIDs of the processes that have ``path`` (as their node sees it) open. Reads only /proc's
    fd links, never the file: safe while its file system is frozen."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in (path, f"{path} (deleted)"):
                    pids.append(int(pid))
                    break
            except OSError:
                continue
    return pids


def _start_and_save(lab: LabSession, vm: Any, fs: FuseDir, stop_timeout: int, freeze_s: float,
                    case: str) -> Dict[str, Any]:
    """Start ``vm`` on the FUSE node with ``snapshot=`` the mount, stop it (a save); once the save
    writes the state file, freeze the mount for ``freeze_s`` (less if the stop returns first)."""
    node = fs.node
    params = {"snapshot": fs.mount}
    started = run_agent(lab, node, "start", vm.config, 60, **params)
    assert started.code == 0, started.stderr
    guest.wait_for_console(vm.console, guest.READY, timeout=60)
    qlog = QemuLog(node, DIRECT)
    state = fs.backing / f"{DIRECT}.state"
    job = Background(lambda: run_agent(lab, node, "stop", vm.config, stop_timeout, **params))
    core.wait_for("the save writing the state file", lambda: job.wait(0) or (state.exists() and state.stat().st_size),
                  timeout=30, interval=0.005)
    assert not job.wait(0), "the save finished before its file system could be frozen"
    at_freeze = state.stat().st_size
    fs.freeze()
    try:
        returned = job.wait(freeze_s)
        qemus = qemu_nodes(DIRECT).get(node, 0) if returned else 0  # before the thaw lets the save go on
    finally:
        fs.thaw()
    if not returned:
        hung = not job.wait(max(0.0, stop_timeout + GRACE - (time.monotonic() - job.started)))
        qemus = qemu_nodes(DIRECT).get(node, 0)
    else:
        hung = False
    res = job.join(stop_timeout + 60)
    out = Outcome(case, node, "stop", DIRECT, stop_timeout, res.code, job.elapsed, res.exit_reason, qemus, hung)
    print("\n" + out.line())
    # libvirt ends the save (or its failure) once the file system answers again: then nothing holds
    # the state file open any more.
    core.wait_for("libvirt done with the state file", lambda: not open_by(f"{fs.mount}/{DIRECT}.state"),
                  timeout=60, interval=0.1)
    return {"stop": out, "qlog": qlog, "state": state, "at_freeze": at_freeze, "params": params}


def test_snapshot_stop_whose_save_takes_longer_than_30s(lab: LabSession, fuse_dir, direct_vm) -> None:
    """``snapshot=`` on a file system that stops answering for 35 s mid-save, stop timeout 120 s.
    The stop must wait for the save (0 once it completed), QEMU must end as saved (not killed as if
    libvirtd were stuck), and the next start must restore the guest from the state file: the
    restored guest answers the power button without booting again."""
    case = "snapshot= save frozen 35 s, stop timeout 120 s"
    n1 = lab.names[0]
    fs = fuse_dir(n1, "snap")
    vm = direct_vm()
    seen = _start_and_save(lab, vm, fs, 120, SAVE_FREEZE_S, case)
    stop, qlog, state = seen["stop"], seen["qlog"], seen["state"]
    endings = qlog.endings()
    saved_size = state.stat().st_size if state.exists() else None
    mark = vm.console.stat().st_size
    found = state.exists()
    restart = act(lab, case, n1, "start", vm.config, 60, **seen["params"])
    restored = "-incoming" in qlog.last_start()
    # A plain (graceful) stop of what runs now: a restored guest's acpid answers the button at once;
    # a guest that booted again prints READY first.
    down = act(lab, case, n1, "stop", vm.config, 60)
    console = vm.console.read_bytes()[mark:].decode(errors="replace")
    print(f"\nFAULT | {case} | afterwards | state file {seen['at_freeze']} bytes at the freeze, {saved_size} after "
          f"the stop | QEMU endings {endings} | state file there at the restart: {found}; restart {restart.code}, "
          f"restored from it: {restored}, "
          f"booted again: {guest.READY in console}")
    problems = stop.violations() + restart.violations() + down.violations()
    problems += [f"QEMU was killed outside libvirt: {e}" for e in qlog.killed_outside_libvirt()]
    assert not problems, "\n".join(problems)
    assert stop.code == 0, stop.line()
    assert "shutting down, reason=saved" in endings, endings
    assert restart.code == 0 and restored, (restart.line(), qlog.last_start()[-400:])
    assert guest.ACPI_BUTTON in console and guest.READY not in console, console[-2000:]


def test_snapshot_save_that_cannot_finish_before_the_stop_deadline(lab: LabSession, fuse_dir, direct_vm) -> None:
    """The save's file system stops answering for longer than the whole stop (timeout 40 s). The
    stop must return within its timeout, never claim success while QEMU runs, and never end by the
    agent killing QEMU as if libvirtd were stuck (QEMU's log would name the agent's signal)."""
    case = "snapshot= save frozen past the stop's 40 s timeout"
    n1 = lab.names[0]
    fs = fuse_dir(n1, "snap")
    vm = direct_vm()
    seen = _start_and_save(lab, vm, fs, 40, 40 + GRACE, case)
    stop, qlog = seen["stop"], seen["qlog"]
    print(f"\nFAULT | {case} | afterwards | QEMU endings {qlog.endings()} | VM on {domain_nodes(lab, DIRECT)}")
    problems = stop.violations() + [f"QEMU was killed outside libvirt: {e}" for e in qlog.killed_outside_libvirt()]
    assert not problems, "\n".join(problems)


# -- 4. the config file on a file system that stops answering ------------------------------------


def test_config_on_a_file_system_that_stops_answering(lab: LabSession, fuse_dir, direct_vm) -> None:
    """The running domain's config file on a FUSE mount of node1 whose daemon is then frozen. A
    recurring monitor and a probe must answer from the identity remembered at start (0: it runs),
    and stop must stop the domain (0), each within its timeout, without reading the file."""
    case = "config file on a frozen file system"
    n1 = lab.names[0]
    fs = fuse_dir(n1, "cfg")
    vm = direct_vm()
    shared = vm.config
    (fs.backing / f"{DIRECT}.xml").write_text(Path(shared).read_text())
    vm.config = f"{fs.mount}/{DIRECT}.xml"
    outcomes = []
    try:
        vm.start(n1)
        for action, timeout in (("monitor", 10), ("probe", 10), ("stop", 20)):
            fs.freeze()
            try:
                outcomes.append(act(lab, case, n1, action, vm.config, timeout, on_hang=fs.thaw))
            finally:
                fs.thaw()
    finally:
        fs.thaw()
        vm.config = shared  # the fixture's stop reads the shared copy
    problems = all_violations(outcomes)
    assert not problems, "\n".join(problems)
    assert [o.code for o in outcomes] == [0, 0, 0], [o.line() for o in outcomes]
    assert outcomes[-1].qemus == 0
