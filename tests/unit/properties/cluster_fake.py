"""Two fake nodes for the agent's state machine: one FakeLibvirt world, state dir and config dir each.

The agent runs in-process: :meth:`Cluster.run` points ``quiet_libvirt`` at the
node's world for the length of one action, as Pacemaker runs the agent on that
node. The oracle helpers read the worlds directly, never the agent's code.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from livemig.run import CommandResult, CommandRunner
from tests.support.scripted import ScriptedRunner
from tests.unit.fake_libvirt import VIR_DOMAIN_SHUTOFF, FakeLibvirt, libvirtError

NODES = ("node1", "node2")
#: every name a config file of this resource ever gives: the domains of the resource
RESOURCE_NAMES = ("vm1", "vm1-renamed")
#: above Linux's largest pid_max: never a real process
FAKE_PID = 4194305
REAL_KILL = os.kill
REPO = Path(__file__).resolve().parents[3]
DRBD_FAKES = REPO / "tests" / "fakes" / "drbd"
DRBD_FIXTURES = REPO / "tests" / "fixtures" / "drbd"
#: the resource's domain, its disk on DRBD resource beijing (the fixtures' resource)
DOMAIN_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><devices>
<disk type='block' device='disk'><source dev='/dev/drbd/by-res/beijing/0'/><target dev='vda'/></disk>
</devices></domain>"""
#: what `drbdsetup status --json` shows on a node (fixtures drbd9-status-json-<state>.txt; the peer
#: is salt-node3, the other node's DRBD name through drbd_peer_names), and the oracle's reading of
#: each, taken from the fixtures by hand: only with both sides Primary, Connected and UpToDate may
#: a live migration go ahead ("hang": drbdsetup never answers).
DRBD_STATES = {
    "derived-dual-primary": True,
    "derived-disconnected": False,
    "derived-peer-inconsistent": False,
    "salt-beijing-primary": False,  # the peer is Secondary
    "hang": False,
}
DRBD_TOOLS = ("drbdsetup", "drbdadm", "cibadmin")
HUNG_CALLS = ("open", "list", "lookup", "state", "create", "destroy", "shutdown", "metadata")


@dataclass
class Outcome:
    node: str
    action: str
    code: int
    elapsed: float
    timeout: float
    stderr: str
    #: the node's DRBD state when the action ran
    drbd: str = ""


@dataclass
class Node:
    name: str
    root: Path
    world: FakeLibvirt = field(default_factory=FakeLibvirt)
    release: threading.Event = field(default_factory=threading.Event)
    hung: bool = False
    #: a key of DRBD_STATES: what this node's DRBD tools show
    drbd: str = "derived-dual-primary"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "vm1.xml"

    @property
    def rsctmp(self) -> Path:
        return self.root / "rsctmp"

    # -- faults --------------------------------------------------------------------------------------

    def hang(self) -> None:
        """libvirtd stops answering: every modelled call blocks until restore (or 30 s)."""
        self.hung = True
        release = self.release
        for what in HUNG_CALLS:
            self.world.hooks[what] = lambda: (release.wait(30), None)[1]

    def jobs_hang(self) -> None:
        """libvirtd answers everything but the job queries (the progress of a migration)."""
        release = self.release
        for what in ("jobInfo", "jobStats"):
            self.world.hooks[what] = lambda: (release.wait(30), None)[1]

    def kill(self) -> None:
        self.world.open_error = libvirtError("Failed to connect socket to '/run/libvirt/libvirt-sock': "
                                             "Connection refused", 38)

    def restore(self) -> None:
        self.release.set()
        self.release = threading.Event()
        self.world.hooks.clear()
        self.world.open_error = None
        self.hung = False

    def write_config(self, variant: str) -> None:
        """ "same", "memory" (same name, other definition), "renamed" (another domain name) or "missing"."""
        if variant == "missing":
            if self.config.exists():
                self.config.unlink()
            return
        self.config.parent.mkdir(parents=True, exist_ok=True)
        name = "vm1-renamed" if variant == "renamed" else "vm1"
        xml = DOMAIN_XML.format(name=name)
        if variant == "memory":
            xml = xml.replace(">128<", ">256<")
        self.config.write_text(xml)

    def lose_state_file(self) -> None:
        """The agent's state file is gone (HA_RSCTMP cleaned) while domains keep running."""
        shutil.rmtree(self.rsctmp, ignore_errors=True)
        self.rsctmp.mkdir(parents=True)

    def fence(self) -> None:
        """Pacemaker's answer to a failed stop: the node is power-cycled (domains and /run gone)."""
        self.restore()
        self.world.domains.clear()
        shutil.rmtree(self.rsctmp, ignore_errors=True)

    # -- the oracle's view ---------------------------------------------------------------------------

    def qemu_pids(self, name: str, proc: str = "/proc") -> List[int]:
        """This node's /proc as the agent sees it: a QEMU process per active domain of the world."""
        dom = self.world.domains.get(name)
        return [FAKE_PID] if dom is not None and dom.state_[0] != VIR_DOMAIN_SHUTOFF else []

    def kill_qemu(self, pid: int, sig: int) -> None:
        """The agent's kill of a QEMU process (libvirtd hung): the world's active domains die."""
        if pid != FAKE_PID:
            return REAL_KILL(pid, sig)
        for dom in list(self.world.domains.values()):
            if dom.dname in RESOURCE_NAMES and dom.state_[0] != VIR_DOMAIN_SHUTOFF:
                dom._off()
        return None

    def running(self) -> List[str]:
        """This resource's domains that are active here (running, paused, in migration: a copy)."""
        return sorted(n for n, d in self.world.domains.items()
                      if n in RESOURCE_NAMES and d.state_[0] != VIR_DOMAIN_SHUTOFF)


class Cluster:
    def __init__(self, root: Path) -> None:
        self.nodes: Dict[str, Node] = {}
        for name in NODES:
            node = Node(name, root / name)
            node.rsctmp.mkdir(parents=True)
            node.write_config("same")
            self.nodes[name] = node
        for name, node in self.nodes.items():
            node.world.peers = {o: n.world for o, n in self.nodes.items() if o != name}
        self.proc_drbd = str(DRBD_FIXTURES / "drbd9-proc-synthetic-version-only.txt")
        self.runner = ScriptedRunner([])  # every command other than DRBD's tools succeeds
        self.tools = CommandRunner()

    def run_command(self, argv, timeout, stdin=None, env=None) -> CommandResult:  # type: ignore[no-untyped-def]
        """DRBD's tools (and cibadmin, for the fence constraint) are the fakes of tests/fakes/drbd
        printing the node's fixture; every other command is scripted to succeed."""
        if os.path.basename(argv[0]) in DRBD_TOOLS:
            return self.tools.run(argv, timeout, stdin=stdin, env=env)
        return self.runner.run(argv, timeout, stdin=stdin, env=env)

    def close(self) -> None:
        for node in self.nodes.values():
            node.release.set()
            node.world.released.set()

    def peer(self, name: str) -> str:
        return next(n for n in NODES if n != name)

    def run(self, node_name: str, action: str, timeout_ms: int, interval_ms: int = 0,
            **meta: str) -> Outcome:
        from unittest import mock

        from livemig.agents.virtualdomain import VirtualDomain

        node = self.nodes[node_name]
        # An earlier test of the suite may have left the agent's log handler on a stream since closed.
        import logging

        from livemig.ocf.logs import LOGGER_NAME

        logger = logging.getLogger(LOGGER_NAME)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        env = {"HA_RSCTMP": str(node.rsctmp), "OCF_RESOURCE_INSTANCE": "vm1",
               "OCF_RESKEY_config": str(node.config), "OCF_RESKEY_hypervisor": "qemu:///system",
               "OCF_RESKEY_migration_transport": "tcp", "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms),
               "OCF_RESKEY_CRM_meta_interval": str(interval_ms), "LIVEMIG_PROC_DRBD": self.proc_drbd,
               "OCF_RESKEY_drbd_peer_names": f"{self.peer(node_name)}=salt-node3",
               "HA_LOGFACILITY": "none"}
        for key, value in meta.items():
            env[f"OCF_RESKEY_CRM_meta_{key}"] = value
        out, err = io.StringIO(), io.StringIO()
        with mock.patch("livemig.virt.connection.quiet_libvirt", lambda: node.world), \
                mock.patch("livemig.agents.virtualdomain.agent.CommandRunner",
                           lambda: mock.Mock(run=self.run_command)), \
                mock.patch("livemig.virt.qemu_proc.find_qemu_pids", node.qemu_pids), \
                mock.patch("livemig.virt.qemu_proc.find_qemu_pids", node.qemu_pids), \
                mock.patch("os.kill", node.kill_qemu), \
                mock.patch.dict("os.environ", self.drbd_environment(node)):
            started = time.monotonic()
            code = VirtualDomain.main(["VirtualDomain", action], env, stdout=out, stderr=err)
            elapsed = time.monotonic() - started
        return Outcome(node_name, action, int(code), elapsed, timeout_ms / 1000.0, err.getvalue(), node.drbd)

    def drbd_environment(self, node: Node) -> Dict[str, str]:
        hang = node.drbd == "hang"
        return {"LIVEMIG_PROC_DRBD": self.proc_drbd, "HA_RSCTMP": str(node.rsctmp),
                "PATH": f"{DRBD_FAKES}{os.pathsep}{DRBD_FAKES / 'pacemaker'}{os.pathsep}{os.environ['PATH']}",
                "FAKE_DRBD_FIXTURES": str(DRBD_FIXTURES), "CIB_file": str(DRBD_FIXTURES / "cib-synthetic-empty.xml"),
                "FAKE_DRBDSETUP_SHOW": "drbd9-show-json-derived-beijing-two-primaries.txt",
                "FAKE_DRBDSETUP_STATUS": f"drbd9-status-json-{'derived-dual-primary' if hang else node.drbd}.txt",
                "FAKE_DRBD_HANG": "all" if hang else ""}

    def all_running(self) -> Dict[str, List[str]]:
        return {name: node.running() for name, node in self.nodes.items()}


def describe(outcomes: List[Outcome], last: Optional[int] = 12) -> str:
    shown = outcomes[-last:] if last else outcomes
    return "\n".join(f"  {o.node} {o.action} -> {o.code} in {o.elapsed:.2f}/{o.timeout:.1f} s" for o in shown)
