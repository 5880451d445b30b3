"""Helpers for tests that run VMs in the lab (tests/e2e, tests/faults).

``run_agent`` calls the agent on a node as Pacemaker would (tests/support/agent.py's
``run_agent``, inside the node); ``DirectVM`` is a domain outside Pacemaker (``direct_vm``
fixture) that tests migrate, abort and break freely; ``cluster_vm`` starts the lab's
Pacemaker-managed VM; ``QemuCounter`` catches a VM ever running twice.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from tests.lab import cluster as lab_cluster
from tests.lab import core, queries
from tests.lab import nodes as lab_nodes
from tests.lab import state as lab_state
from tests.lab.labfixtures import LabSession
from tests.support import guest
from tests.support.agent import AgentResult
from tests.support.agent import run_agent as run_agent_process

AGENT = "/usr/lib/ocf/resource.d/livemig/VirtualDomain"
DIRECT = "lmdirect"


def run_agent(lab: LabSession, node: str, action: str, config: str, timeout_s: int = 60,
              **params: str) -> AgentResult:
    """The agent on ``node`` of ``lab`` as pacemaker-execd runs it there: tests/support/agent.py's
    ``run_agent`` through nsenter, with the node's environment and the OCF variables, no
    PYTHONPATH (the node's /usr/lib/ocf link finds the working tree's package itself), killed 30 s
    past ``timeout_s``. ``params``: OCF_* and other upper-case names go as they are (e.g.
    LIVEMIG_DRBDSIM_STORE), the rest are the resource's parameters."""
    assert node in lab.names, f"{node} is no node of the lab ({lab.names})"
    env = lab_nodes.node_env(node)
    env.update({"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": DIRECT, "OCF_RESKEY_config": config,
                "OCF_RESKEY_hypervisor": "qemu:///system", "OCF_RESKEY_CRM_meta_timeout": str(timeout_s * 1000),
                "OCF_RESKEY_CRM_meta_on_node": node, "HA_RSCTMP": "/run/resource-agents"})
    for key, value in params.items():
        env[key if key.startswith("OCF_") or key.isupper() else f"OCF_RESKEY_{key}"] = value
    return run_agent_process(action, env, agent=(*lab_nodes.nsenter_argv(node), AGENT), grace=30,
                             pythonpath=None)


def domain_nodes(lab: LabSession, name: str) -> List[str]:
    """Nodes where libvirt reports ``name`` running."""
    found = []
    for node in lab.names:
        out = lab.run(node, "virsh", "-q", "domstate", name, check=False)
        if out.returncode == 0 and out.stdout.strip() in ("running", "paused"):
            found.append(node)
    return found


class DirectVM:
    def __init__(self, lab: LabSession, dirty_mib_s: float = 0) -> None:
        self.lab = lab
        shared = Path(core.vm_config_path()).parent
        self.config = str(shared / f"{DIRECT}.xml")
        self.console = shared / f"{DIRECT}.console"
        image = guest.ensure_guest_image()
        xml = guest.domain_xml(DIRECT, image, console_log=self.console, dirty_mib_s=dirty_mib_s,
                               uuid="6c6d6c61-622d-4c6d-766d-0000000000d1")
        Path(self.config).write_text(xml)
        self.console.write_bytes(b"")

    def start(self, node: str) -> None:
        res = run_agent(self.lab, node, "start", self.config)
        assert res.code == 0, res.details()
        guest.wait_for_console(self.console, "LIVEMIG-GUEST-READY", timeout=60)

    def stop_everywhere(self) -> None:
        for node in self.lab.names:
            run_agent(self.lab, node, "stop", self.config)

    def migrate(self, source: str, target: str, timeout_s: int = 60, **params: str):  # type: ignore[no-untyped-def]
        return run_agent(self.lab, source, "migrate_to", self.config, timeout_s,
                         OCF_RESKEY_CRM_meta_migrate_target=target, migration_transport="tcp", **params)

    def arrive(self, source: str, target: str, timeout_s: int = 60, **params: str):  # type: ignore
        return run_agent(self.lab, target, "migrate_from", self.config, timeout_s,
                         OCF_RESKEY_CRM_meta_migrate_source=source, **params)

    def boots(self) -> int:
        return self.console.read_bytes().count(b"LIVEMIG-GUEST-READY")


class DrbdDirectVM(DirectVM):
    """A DirectVM whose disk is the lab's DRBD device (as the Pacemaker VM's: only one of them may
    run at a time), every action with the resource parameters ``params`` (e.g.
    drbd_two_primaries=migration)."""

    def __init__(self, lab: LabSession, dirty_mib_s: float = 0, **params: str) -> None:
        super().__init__(lab, dirty_mib_s)
        from tests.lab.storage import with_drbd_disk

        Path(self.config).write_text(with_drbd_disk(Path(self.config).read_text()))
        self.params = params

    def start(self, node: str) -> None:
        res = run_agent(self.lab, node, "start", self.config, **self.params)
        assert res.code == 0, res.details()
        guest.wait_for_console(self.console, "LIVEMIG-GUEST-READY", timeout=60)

    def stop_everywhere(self) -> None:
        for node in self.lab.names:
            run_agent(self.lab, node, "stop", self.config, **self.params)

    def migrate(self, source: str, target: str, timeout_s: int = 60, **params: str):  # type: ignore[no-untyped-def]
        return super().migrate(source, target, timeout_s, **{**self.params, **params})

    def arrive(self, source: str, target: str, timeout_s: int = 60, **params: str):  # type: ignore
        return super().arrive(source, target, timeout_s, **{**self.params, **params})


@pytest.fixture
def direct_vm(lab: LabSession) -> Iterator[DirectVM]:
    vms: List[DirectVM] = []

    def make(dirty_mib_s: float = 0) -> DirectVM:
        vm = DirectVM(lab, dirty_mib_s)
        vms.append(vm)
        return vm

    yield make  # type: ignore[misc]
    for vm in vms:
        vm.stop_everywhere()


@pytest.fixture
def drbd_direct_vm(lab_session: LabSession) -> Iterator[Callable[..., DrbdDirectVM]]:
    """DrbdDirectVM factory on the session's lab (whichever lab the test asked for), stopped
    everywhere afterwards."""
    vms: List[DrbdDirectVM] = []

    def make(dirty_mib_s: float = 0, **params: str) -> DrbdDirectVM:
        vm = DrbdDirectVM(lab_session, dirty_mib_s, **params)
        vms.append(vm)
        return vm

    yield make
    for vm in vms:
        vm.stop_everywhere()


class Background:
    """Runs ``fn`` in a thread (an agent action), to inject a fault while it runs."""

    def __init__(self, fn: Callable[[], AgentResult]) -> None:
        self.result: Optional[AgentResult] = None
        self.started = time.monotonic()
        self.elapsed = 0.0
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], AgentResult]) -> None:
        self.result = fn()
        self.elapsed = time.monotonic() - self.started

    def wait(self, timeout: float) -> bool:
        """True once the action has returned (within ``timeout`` seconds)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def join(self, timeout: float) -> AgentResult:
        self._thread.join(timeout)
        assert self.result is not None, f"the agent did not return within {timeout} s"
        return self.result


def wait_migration_job(lab: LabSession, node: str, name: str = DIRECT, timeout: float = 20) -> None:
    """Until libvirt on ``node`` shows the outgoing migration job of ``name``."""
    core.wait_for(f"migration job of {name} on {node}", lambda: "Unbounded" in lab.run(
        node, "virsh", "domjobinfo", name, check=False).stdout, timeout=timeout, interval=0.2)


def signal_libvirtd(lab: LabSession, node: str, sig: str) -> None:
    lab.run(node, "pkill", f"-{sig}", "-x", "libvirtd", check=False)


def restart_libvirtd(lab: LabSession, node: str) -> None:
    """A libvirtd on ``node`` again (killing a frozen or living one first), answering."""
    signal_libvirtd(lab, node, "KILL")
    core.wait_for(f"libvirtd gone on {node}", lambda: lab.run(
        node, "pgrep", "-x", "libvirtd", check=False).returncode != 0, timeout=10, interval=0.1)
    lab.run(node, "sh", "-c", "libvirtd -d --listen </dev/null >/dev/null 2>&1", check=False)
    core.wait_for(f"libvirtd back on {node}", lambda: lab.run(
        node, "virsh", "-q", "uri", check=False).returncode == 0, timeout=60, interval=0.3)



# -- the Pacemaker-managed VM ------------------------------------------------------------------


def vm_on(lab: LabSession) -> str:
    return lab_cluster.wait_resource_on(lab.names[0], core.VM_NAME, None, timeout=120)


@contextlib.contextmanager
def running_cluster_vm(lab: LabSession) -> Iterator[str]:
    """The lab's VM started by Pacemaker and booted (yields its node); stopped and cleaned up after."""
    console = Path(core.console_log_path())
    # The console log keeps every boot: a VM this start boots is ready at the marker written after it.
    since = 0 if queries.qemu_pids(core.VM_NAME) else (console.stat().st_size if console.exists() else 0)
    lab.crm("resource", "start", core.VM_NAME)
    node = vm_on(lab)
    guest.wait_for_console(console, "LIVEMIG-GUEST-READY", timeout=60, since=since)
    try:
        yield node
    finally:
        lab.crm("resource", "clear", core.VM_NAME)
        lab.crm("resource", "stop", core.VM_NAME)
        lab.run(lab.names[0], "crm_resource", "--cleanup", "-r", core.VM_NAME, check=False)


@pytest.fixture
def cluster_vm(lab: LabSession) -> Iterator[str]:
    with running_cluster_vm(lab) as node:
        yield node


class QemuCounter:
    """Samples how many QEMU processes run the VM (``vm``: the lab's by default), to catch it ever
    running twice."""

    def __init__(self, vm: str = core.VM_NAME) -> None:
        self.vm = vm
        self.max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max = max(self.max, len(queries.qemu_pids(self.vm)))
            time.sleep(0.02)

    def __enter__(self) -> QemuCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class PlacementSampler:
    """Samples, until stopped, on which nodes ``vm`` has a QEMU process (host /proc, every 20 ms)
    and on which libvirt reports it running (virsh on each node, in turn): to catch it ever
    running on two nodes at once, or anywhere it must not be."""

    def __init__(self, lab: LabSession, vm: str = core.VM_NAME) -> None:
        self.lab, self.vm = lab, vm
        self.qemu_on: set = set()          # nodes ever seen with a QEMU of the VM
        self.max_qemus = 0                 # most QEMU processes at once (2 during a migration)
        self.running_on: set = set()       # nodes ever seen with the VM running
        self.max_running = 0               # most nodes running it in one round of virsh calls
        self.samples = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._qemu, daemon=True),
                         threading.Thread(target=self._virsh, daemon=True)]

    def _qemu(self) -> None:
        while not self._stop.is_set():
            found = qemu_nodes(self.vm)
            self.qemu_on |= set(found)
            self.max_qemus = max(self.max_qemus, sum(found.values()))
            time.sleep(0.02)

    def _virsh(self) -> None:
        while not self._stop.is_set():
            running = set()
            for node in self.lab.names:
                out = self.lab.run(node, "virsh", "-q", "domstate", self.vm, check=False, timeout=20)
                if out.returncode == 0 and out.stdout.strip() == "running":
                    running.add(node)
            self.running_on |= running
            self.max_running = max(self.max_running, len(running))
            self.samples += 1

    def __enter__(self) -> PlacementSampler:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


class RoleSampler:
    """Samples every 20 ms which nodes are DRBD Primary (the simulator's store) and whether an
    agent's two-primaries window marker exists on any node, read before and after the roles: two
    Primaries in a sample with no marker on either side of it is two primaries outside a window
    (the marker is written before the allowance and removed after it is closed)."""

    def __init__(self, lab: LabSession) -> None:
        self.lab = lab
        self.max_primaries = 0
        self.two_primaries = 0             # samples with two (or more) Primaries
        self.outside: List[str] = []       # ... with no window marker anywhere
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _markers(self) -> bool:
        return any(queries.window_markers(n) for n in self.lab.names)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = self._markers()
            primaries = sorted(n for n, role in queries.drbd_roles().items() if role == "Primary")
            after = self._markers()
            self.samples += 1
            self.max_primaries = max(self.max_primaries, len(primaries))
            if len(primaries) > 1:
                self.two_primaries += 1
                if not (before or after):
                    self.outside.append(f"{time.strftime('%H:%M:%S')} Primary on {', '.join(primaries)}")
            time.sleep(0.02)

    def __enter__(self) -> RoleSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def qemu_nodes(vm: str = core.VM_NAME) -> Dict[str, int]:
    """How many QEMU processes of ``vm`` run on each node (the host's /proc, told apart by PID namespace)."""
    nodes = {}
    state = lab_state.load_state()
    for node, holder in (state.holders if state else {}).items():
        try:
            nodes[os.stat(f"/proc/{holder}/ns/pid").st_ino] = node
        except OSError:
            pass  # the node is down: nothing of it runs
    found: Dict[str, int] = {}
    for pid in queries.qemu_pids(vm):
        try:
            node = nodes.get(os.stat(f"/proc/{pid}/ns/pid").st_ino, "host")
        except OSError:
            continue  # exited meanwhile
        found[node] = found.get(node, 0) + 1
    return found


def agent_lines(node: str, needle: str) -> List[str]:
    logf = core.LAB_DIR / "nodes" / node / "ovl/var/upper/log/pacemaker/pacemaker.log"
    return [line for line in logf.read_text(errors="replace").splitlines() if needle in line and "execd" in line]


def find_failure(lab: LabSession, action: str) -> Optional[Dict[str, str]]:
    root = lab_cluster.crm_mon_xml(lab.names[0])
    for failure in root.iter("failure"):
        if failure.get("op_key", "").startswith(f"{core.VM_NAME}_{action}"):
            return dict(failure.attrib)
    return None


def failure_reason(lab: LabSession, action: str) -> Optional[str]:
    root = lab_cluster.crm_mon_xml(lab.names[0])
    for failure in root.iter("failure"):
        if failure.get("op_key", "").startswith(f"{core.VM_NAME}_{action}"):
            return failure.get("exitreason") or ""
    return None
