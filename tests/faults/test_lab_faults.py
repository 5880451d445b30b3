"""Faults in the two-node lab (tests/lab): libvirtd, the network, DRBD and whole nodes failing
while the agent migrates or runs a VM. Each case asserts the OCF code, the exit reason, the time
taken and where the VM runs afterwards; ``pytest -s`` prints one FAULT line per case for
docs/reliability.md.

Direct cases use their own domain outside Pacemaker (``direct_vm``) and a DRBD resource of their
own in the simulator (``sim_drbd``), so that the cluster does not react; node losses run under
Pacemaker with the lab's VM, since what matters there is what the cluster does next.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.lab import cluster as lab_cluster
from tests.lab import core, drbdsim, queries
from tests.lab.labfixtures import LabSession
from tests.lab.labvm import (
    DIRECT,
    Background,
    QemuCounter,
    domain_nodes,
    restart_libvirtd,
    signal_libvirtd,
    wait_migration_job,
)
from tests.support import guest
from tests.support.agent import AgentResult

SLOW = {"migration_speed": "2"}  # MiB/s: with a guest dirtying 20 MiB/s the job never converges


def fault(case: str, res: AgentResult, seconds: float, after: str) -> None:
    print(f"\nFAULT | {case} | {res.code} | {seconds:.2f} s | {res.exit_reason} | {after}")


def running_nodes(lab: LabSession, name: str = DIRECT) -> List[str]:
    """Nodes where libvirt reports ``name`` running (not paused)."""
    return [n for n in lab.names
            if lab.run(n, "virsh", "-q", "domstate", name, check=False).stdout.strip() == "running"]


# -- libvirtd on the source during migrate_to, on the target during migrate_from ------------------


def test_source_libvirtd_frozen_during_migrate_to(lab: LabSession, direct_vm) -> None:
    n1, n2 = lab.names[:2]
    vm = direct_vm(dirty_mib_s=20)
    vm.start(n1)
    job = Background(lambda: vm.migrate(n1, n2, timeout_s=24, **SLOW))
    try:
        wait_migration_job(lab, n1)
        signal_libvirtd(lab, n1, "STOP")
        res = job.join(60)
    finally:
        signal_libvirtd(lab, n1, "CONT")
    fault("source libvirtd frozen (SIGSTOP) during migrate_to", res, job.elapsed, "still on the source")
    assert res.code == 1, res.stderr
    assert job.elapsed < 24
    assert res.exit_reason.startswith(f"migration to {n2} aborted at its"), res.exit_reason
    assert f"libvirtd on {n1} does not answer; {DIRECT}'s QEMU (pid " in res.exit_reason, res.exit_reason
    # Thawed, the job goes on (nobody is left to abort it) until Pacemaker's recovery stops the
    # VM; here the test aborts it: the VM never left the source and never rebooted.
    lab.run(n1, "virsh", "domjobabort", DIRECT, check=False)
    core.wait_for("the VM running on the source only", lambda: running_nodes(lab) == [n1]
                  and domain_nodes(lab, DIRECT) == [n1], timeout=60, interval=0.5)
    assert vm.boots() == 1


def test_source_libvirtd_killed_during_migrate_to(lab: LabSession, direct_vm) -> None:
    n1, n2 = lab.names[:2]
    vm = direct_vm(dirty_mib_s=20)
    vm.start(n1)
    job = Background(lambda: vm.migrate(n1, n2, timeout_s=40, **SLOW))
    try:
        wait_migration_job(lab, n1)
        signal_libvirtd(lab, n1, "KILL")
        res = job.join(60)
    finally:
        restart_libvirtd(lab, n1)
    fault("source libvirtd killed during migrate_to", res, job.elapsed, "still on the source")
    assert res.code == 1, res.stderr
    assert job.elapsed < 40
    assert res.exit_reason.startswith(f"migration to {n2} failed, libvirtd on {n1} does not answer; {DIRECT}'s QEMU "
                                  "(pid "), res.exit_reason
    # The restarted libvirtd finds the interrupted outgoing job and cancels it; the target's
    # libvirtd dropped the incoming domain when its peer connection broke.
    core.wait_for("the VM running on the source only", lambda: running_nodes(lab) == [n1]
                  and domain_nodes(lab, DIRECT) == [n1], timeout=60, interval=0.5)
    assert vm.boots() == 1


@pytest.mark.parametrize("sig", ["STOP", "KILL"])
def test_target_libvirtd_down_at_migrate_from(lab: LabSession, direct_vm, sig: str) -> None:
    n1, n2 = lab.names[:2]
    vm = direct_vm()
    vm.start(n1)
    moved = vm.migrate(n1, n2)
    assert moved.code == 0, moved.stderr
    signal_libvirtd(lab, n2, sig)
    try:
        started = time.monotonic()
        res = vm.arrive(n1, n2, timeout_s=20)
        elapsed = time.monotonic() - started
    finally:
        if sig == "STOP":
            signal_libvirtd(lab, n2, "CONT")
        else:
            restart_libvirtd(lab, n2)
    what = "frozen (SIGSTOP)" if sig == "STOP" else "killed"
    fault(f"target libvirtd {what} at migrate_from", res, elapsed, "runs on the target")
    assert res.code == 0, res.stderr  # the QEMU that arrived, seen in /proc
    assert res.exit_reason.startswith(f"{DIRECT} arrived: its QEMU (pid "), res.exit_reason
    assert "runs here (from /proc)" in res.exit_reason, res.exit_reason
    assert elapsed < 20
    core.wait_for("the VM running on the target only", lambda: running_nodes(lab) == [n2]
                  and domain_nodes(lab, DIRECT) == [n2], timeout=60, interval=0.5)
    assert vm.boots() == 1


# -- the network -----------------------------------------------------------------------------------


@pytest.fixture
def migration_link(lab: LabSession) -> Iterator[str]:
    """A dedicated migration network: a link between the two nodes, 10.78.0.1 - 10.78.0.2."""
    n1, n2 = lab.names[:2]
    ns1, ns2 = core.NS_PREFIX + n1, core.NS_PREFIX + n2
    core.run(["ip", "-n", ns1, "link", "add", "mig0", "type", "veth", "peer", "name", "mig0", "netns", ns2])
    try:
        for ns, ip in ((ns1, "10.78.0.1/24"), (ns2, "10.78.0.2/24")):
            core.run(["ip", "-n", ns, "addr", "add", ip, "dev", "mig0"])
            core.run(["ip", "-n", ns, "link", "set", "mig0", "up"])
        yield "10.78.0.2"
    finally:
        core.run(["ip", "-n", ns1, "link", "del", "mig0"], check=False)  # both ends go


def test_migration_network_lost_mid_migration(lab: LabSession, direct_vm, migration_link: str) -> None:
    """QEMU's stream runs over a dedicated migration link (migrateuri and --listen-address on
    the target's address there); mid-stream the target's end of the link goes down. Packets
    vanish without an error, as when a cable or switch port dies: the stream stalls. libvirt's
    own connection and the cluster's ring use the other network and stay up."""
    n1, n2 = lab.names[:2]
    vm = direct_vm(dirty_mib_s=20)
    vm.start(n1)
    job = Background(lambda: vm.migrate(n1, n2, timeout_s=30, migrateuri=f"tcp://{migration_link}:49152",
                                        migrate_options=f"--listen-address {migration_link}",
                                        migration_progress_interval="2", **SLOW))
    core.wait_for("the migration stream on the migration link", lambda: lab.run(
        n1, "ss", "-Htn", "state", "established", "( dport = :49152 )").stdout.strip(), timeout=20, interval=0.1)
    core.run(["ip", "-n", core.NS_PREFIX + n2, "link", "set", "mig0", "down"])
    res = job.join(60)
    fault("migration link down mid-migration", res, job.elapsed, "still on the source")
    assert res.code == 1, res.stderr
    assert job.elapsed < 30
    assert res.exit_reason.startswith(f"migration to {n2} aborted at its"), res.exit_reason
    assert f"{DIRECT} still runs on {n1} (no data moved in the last " in res.exit_reason, res.exit_reason
    core.wait_for("the VM running on the source only", lambda: running_nodes(lab) == [n1]
                  and domain_nodes(lab, DIRECT) == [n1], timeout=60, interval=0.5)
    assert vm.boots() == 1


# -- DRBD changing between the guard and the end of the migration ---------------------------------

SIM_RES = "t9"


class SimDrbd:
    """A dual-primary resource of the tests' own in the lab's DRBD simulator (not Pacemaker's)."""

    def __init__(self, lab: LabSession) -> None:

        self.lab = lab
        self.store = core.SHARED / "drbd" / "faults.json"
        drbdsim.init_store(str(self.store), SIM_RES, 9, "", [(n, core.node_ip(n)) for n in lab.names],
                           devices=False)
        for node in lab.names:
            self.adm(node, "up", SIM_RES)
        for node in lab.names:
            self.adm(node, "net-options", "--allow-two-primaries=yes", SIM_RES)
            self.adm(node, "primary", SIM_RES)

    @property
    def env(self) -> Dict[str, str]:
        return {"LIVEMIG_DRBDSIM_STORE": str(self.store)}

    def adm(self, node: str, *args: str, tool: str = "drbdadm") -> str:
        res = self.lab.run(node, "env", f"LIVEMIG_DRBDSIM_STORE={self.store}", tool, *args, check=False)
        assert res.returncode == 0, f"{tool} {' '.join(args)} on {node}: {res.stderr}"
        return res.stdout

    def remove(self) -> None:
        for suffix in ("", ".lock"):
            Path(str(self.store) + suffix).unlink(missing_ok=True)


@pytest.fixture
def sim_drbd(lab: LabSession) -> Iterator[SimDrbd]:
    sim = SimDrbd(lab)
    yield sim
    sim.remove()


CHANGES = {
    "disconnect": (("disconnect", SIM_RES), "needs Connected"),
    "demote": (("secondary", SIM_RES), "needs Primary"),
    "inconsistent": (("disk", SIM_RES, "{target}", "Inconsistent"), "Inconsistent; needs UpToDate"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_drbd_change_during_the_migration_aborts_it(lab: LabSession, direct_vm, sim_drbd: SimDrbd,
                                                     change: str) -> None:
    n1, n2 = lab.names[:2]
    vm = direct_vm(dirty_mib_s=20)
    vm.start(n1)
    guarded = dict(SLOW, drbd_resources=SIM_RES, **sim_drbd.env)
    job = Background(lambda: vm.migrate(n1, n2, timeout_s=40, **guarded))
    wait_migration_job(lab, n1)
    args, words = CHANGES[change]
    changed = time.monotonic()
    if args[0] == "disk":
        sim_drbd.adm(n2, *[a.format(target=n2) for a in args], tool="drbdsim")
    else:
        sim_drbd.adm(n2, *args)
    res = job.join(60)
    after_change = time.monotonic() - changed
    fault(f"DRBD peer {change} mid-migration", res, after_change, "still on the source")
    assert res.code == 1, res.stderr
    assert res.exit_reason.startswith(f"migration to {n2} aborted, {DIRECT} still runs on {n1}: DRBD changed: "
                                  f"{SIM_RES}: "), res.exit_reason
    assert words in res.stderr, res.stderr
    assert after_change < 8  # a watch interval plus the abort, far from the 40 s timeout
    assert running_nodes(lab) == [n1]
    core.wait_for("the incoming domain gone from the target", lambda: domain_nodes(lab, DIRECT) == [n1],
                  timeout=30, interval=0.5)
    # The disk the VM still uses is the source's, Primary and UpToDate: nothing was switched over.
    assert sim_drbd.adm(n1, "role", SIM_RES).strip() == "Primary"
    assert sim_drbd.adm(n1, "dstate", SIM_RES).split("/")[0].strip() == "UpToDate"
    assert vm.boots() == 1


def test_drbd_inconsistent_under_the_arrived_vm_fails_migrate_from(lab: LabSession, direct_vm,
                                                                   sim_drbd: SimDrbd) -> None:
    """The switch-over won the race: migrate_from must not report success on a stale disk."""
    n1, n2 = lab.names[:2]
    vm = direct_vm()
    vm.start(n1)
    guarded = dict(drbd_resources=SIM_RES, **sim_drbd.env)
    moved = vm.migrate(n1, n2, **guarded)
    assert moved.code == 0, moved.stderr
    sim_drbd.adm(n2, "disk", SIM_RES, n2, "Inconsistent", tool="drbdsim")
    started = time.monotonic()
    res = vm.arrive(n1, n2, **guarded)
    elapsed = time.monotonic() - started
    fault("DRBD Inconsistent on the target at migrate_from", res, elapsed,
          "runs on the target until Pacemaker's recovery stops it")
    assert res.code == 1, res.stderr
    assert res.exit_reason.startswith(f"arrived from {n1} but DRBD resource {SIM_RES} volume 0: local disk is "
                                  "Inconsistent, not UpToDate"), res.exit_reason
    assert domain_nodes(lab, DIRECT) == [n2]  # exactly one node: Pacemaker now stops it on both


# -- whole nodes, under Pacemaker ------------------------------------------------------------------


def _other(lab: LabSession, node: str) -> str:
    return next(n for n in lab.names if n != node)


def _power_cut(node: str) -> None:
    """The lab's fence device, called directly: every process of ``node`` killed at once."""
    res = core.run([sys.executable, str(core.HERE / "fence_livemiglab"), "-o", "off", "-n", node],
                   check=False, timeout=60)
    assert res.returncode == 0, res.stderr


def _wait_back(lab: LabSession, survivor: str, node: str) -> None:
    try:
        core.wait_for(f"{node} back Online and promoted",
                      lambda: lab_cluster.promoted_nodes(survivor) == set(lab.names), 240, 1.0)
    except core.LabError as exc:
        mon = lab.run(survivor, "crm_mon", "-1", "-r", "-f", check=False).stdout
        pytest.fail(f"{exc}\n{mon}\n{queries.node_diagnostics(node)}", pytrace=False)


def _probes_on(node: str, since: int) -> List[int]:
    return [p["rc"] for p in queries.probe_results(core.VM_NAME)[since:] if p["node"] == node]


def test_node_fenced_under_the_vm_then_probed_on_return(lab: LabSession, cluster_vm: str) -> None:
    victim = cluster_vm
    peer = _other(lab, victim)
    console = Path(core.console_log_path())
    probes_before = len(queries.probe_results(core.VM_NAME))
    started = time.monotonic()
    with QemuCounter() as counter:
        lab.run(peer, "stonith_admin", "--reboot", victim, "--timeout", "60", timeout=90)
        where = lab_cluster.wait_resource_on(peer, core.VM_NAME, peer, timeout=180)
        recovered = time.monotonic() - started
        _wait_back(lab, peer, victim)
        core.wait_for(f"the probe of {core.VM_NAME} on {victim}", lambda: _probes_on(victim, probes_before),
                      timeout=120, interval=1.0)
    probes = _probes_on(victim, probes_before)
    print(f"\nFAULT | node running the VM fenced | started on {where} | {recovered:.1f} s until running again "
          f"| probe on the returning node: {probes} | {counter.max} QEMU at most")
    assert where == peer
    assert counter.max == 1, "the VM ran on both nodes at once"
    assert probes == [7], probes  # the returning node: not running there (its stale state file ignored)
    assert lab_cluster.resource_nodes(peer, core.VM_NAME) == [peer]  # and it stays where it is
    guest.wait_for_console(console, "LIVEMIG-GUEST-READY", timeout=90)  # rebooted on the peer (new log)


@pytest.fixture
def slow_migrations(lab: LabSession) -> Iterator[None]:
    """migration_speed=1 on the lab's VM, set while it is stopped (a change while it runs would
    restart it): an idle guest then takes tens of seconds to migrate."""
    first = lab.names[0]
    lab.run(first, "crm_resource", "-r", core.VM_NAME, "-p", "migration_speed", "-v", "1")
    yield
    lab.run(first, "crm_resource", "-r", core.VM_NAME, "-d", "migration_speed", check=False)


def test_target_node_lost_mid_migration(lab: LabSession, slow_migrations: None, cluster_vm: str) -> None:
    source = cluster_vm
    target = _other(lab, source)
    ops_before = len(queries.agent_ops(core.VM_NAME))
    probes_before = len(queries.probe_results(core.VM_NAME))
    try:
        lab.run(source, "crm_resource", "--move", "-r", core.VM_NAME, "-N", target)
        wait_migration_job(lab, source, core.VM_NAME, timeout=60)
        _power_cut(target)  # returns once every process of the target is gone, its QEMU with them
        # A live migration runs two QEMUs by design; from the cut on, at most one may exist.
        with QemuCounter() as counter:
            lab.run(source, "crm_resource", "--clear", "-r", core.VM_NAME)
            core.wait_for("migrate_to to finish", lambda: [
                o for o in queries.agent_ops(core.VM_NAME)[ops_before:] if o["action"] == "migrate_to"],
                timeout=120, interval=0.5)
            _wait_back(lab, source, target)
            where = lab_cluster.wait_resource_on(source, core.VM_NAME, None, timeout=180)
            core.wait_for(f"the probe on {target}", lambda: _probes_on(target, probes_before), 120, 1.0)
        ops = queries.agent_ops(core.VM_NAME)[ops_before:]
        migrate = [o for o in ops if o["action"] == "migrate_to"][0]
        probes = _probes_on(target, probes_before)
        print(f"\nFAULT | target node lost mid-migration | migrate_to {migrate['rc']} in {migrate['ms']:.0f} ms "
              f"| VM then on {where} | probe on the returning node: {probes} | {counter.max} QEMU at most")
        assert migrate["node"] == source and migrate["rc"] == 1, ops
        assert counter.max == 1, "the VM ran on both nodes at once"
        assert probes == [7], probes  # before anything was started there
        # Pacemaker's recovery (stop on both, start where it may) can pick either node once the
        # target is back; what matters is one node.
        assert lab_cluster.resource_nodes(source, core.VM_NAME) == [where]
        assert len(queries.qemu_pids()) == 1
    finally:
        lab.run(source, "crm_resource", "--clear", "-r", core.VM_NAME, check=False)
