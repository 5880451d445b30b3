#!/usr/bin/python3
"""Demo: build the two-node lab, start the VM under Pacemaker, move it with `crm resource move`,
show crm_mon, print a summary, tear the lab down (KEEP=1 leaves it running)."""

from __future__ import annotations

import os
import sys
import time

from tests.lab import cluster as lab_cluster
from tests.lab import core, lifecycle, queries
from tests.lab import lock as lab_lock
from tests.lab import nodes as lab_nodes


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def migration_lines(vm: str) -> list:
    """The agent's "live migration ... completed: ... downtime N ms" lines, oldest first."""
    lines = []
    for nd in sorted((core.LAB_DIR / "nodes").iterdir()):
        logf = nd / "ovl/var/upper/log/pacemaker/pacemaker.log"
        if logf.exists():
            for line in logf.read_text(errors="replace").splitlines():
                if f"VirtualDomain({vm})" in line and "live migration of" in line and "completed" in line:
                    lines.append(line)
    lines = [line.split("INFO: ", 1)[-1] for line in sorted(lines)]  # syslog-style stamps sort in a day
    seen = set()
    unique = [x for x in lines if not (x in seen or seen.add(x))]  # type: ignore[func-returns-value]
    return unique


def main() -> int:
    keep = os.environ.get("KEEP") == "1"
    timings = []
    t = time.monotonic()
    banner("building the lab (2 nodes: corosync, pacemaker, libvirtd; simulated DRBD)")
    try:
        lab_lock.acquire_lab_lock()  # held until this process exits
        state = lifecycle.up(int(os.environ.get("LAB_NODES", "2")))
    except core.LabError as exc:
        print(f"lab up failed: {exc}", file=sys.stderr)
        return 1
    timings.append(("lab up", time.monotonic() - t))
    first = state.names[0]
    vm = core.VM_NAME
    ok = False
    try:
        banner("cluster configuration (as typed by an administrator)")
        for cmd in state.crm_commands:
            print(f"  {first}$ {cmd}")
        banner(f"starting {vm} under Pacemaker")
        t = time.monotonic()
        lab_nodes.on_node(first, ["crm", "-w", "resource", "start", vm], timeout=180)
        src = lab_cluster.wait_resource_on(first, vm, None)
        timings.append(("start VM", time.monotonic() - t))
        dst = next(n for n in state.names if n != src)
        for there in (dst, src):
            seen = len(migration_lines(vm))
            banner(f"crm resource move {vm} {there}")
            t = time.monotonic()
            lab_nodes.on_node(first, ["crm", "-w", "resource", "move", vm, there], timeout=240)
            lab_cluster.wait_resource_on(first, vm, there)
            timings.append((f"move to {there}", time.monotonic() - t))
            lab_nodes.on_node(first, ["crm", "resource", "clear", vm], check=False)
            for line in migration_lines(vm)[seen:]:
                print(f"  {line}")
        banner("crm_mon -1")
        print(lab_nodes.on_node(first, ["crm_mon", "-1", "-r"], check=False).stdout.rstrip())
        banner("summary")
        print(f"  VM agent: {state.vm_agent}")
        print(f"  {vm} ran on {src}, then on {dst}, then on {src} again (QEMU pid on host: {queries.qemu_pids()})")
        print(f"  agent actions Pacemaker called for {vm}:")
        for op in queries.agent_ops(vm):
            print(f"    {op['time']:<20} {op['node']:<6} {op['action']:<13} rc={op['rc']} {op['ms']:8.0f} ms")
        ops = queries.agent_ops(vm)
        migrations = sum(1 for op in ops if op["action"] == "migrate_from" and op["rc"] == 0)
        restarts = sum(1 for op in ops if op["action"] == "start") - 1
        print(f"  moves: {migrations} live migrations (migrate_to + migrate_from), {max(restarts, 0)} restarts")
        downtimes = [line for line in migration_lines(vm) if "from" in line]
        for line in downtimes:
            print(f"  libvirt: {line}")
        for what, secs in timings:
            print(f"  {what:<10} {secs:6.1f} s")
        ok = True
    except (core.LabError, StopIteration) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
    finally:
        if keep:
            banner("KEEP=1: the lab stays up. Look around with:")
            print("  tests/lab/lab status\n  tests/lab/lab run node1 crm_mon -1\n"
                  "  tests/lab/lab run node2 virsh list\n  tests/lab/lab run node1   (a shell on node1)\n"
                  "  logs: /run/livemig-lab/nodes/*/ovl/var/upper/log/\n  tests/lab/lab down   (when done)")
        else:
            banner("tearing the lab down")
            lifecycle.down()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
