"""What the two-primaries window costs a live migration: drbd_two_primaries=migration vs always.

    python3 -m benchmarks.bench_window [--reps 10] [--warmup 1] [--seed 1]

Brings the two-node lab up bare (no cluster configuration, the lab's lock serializes it), runs
the tiny guest on the lab's simulated DRBD device outside Pacemaker and moves it back and forth
with the agent as Pacemaker calls it (``migrate_to`` on the source, ``migrate_from`` on the
target, ``stop`` on the source), alternating the two modes in a balanced shuffled order:

- ``always``: DRBD's configuration allows two primaries and both nodes are Primary before each
  migration (what the promotable clone with promoted-max=2 keeps); the guard in dual-primary mode.
- ``migration``: allow-two-primaries off, only the node running the VM Primary; migrate_to opens
  the window on the connection to the target, the target's libvirt hook promotes it, and the
  window closes after the job (the source demoted first); stop on the source demotes.

Only the three actions are timed, not the switch of DRBD's settings between the modes. Every
DRBD tool call in the lab is the simulator (a Python process, ``tests/lab/drbdsim.py``), far
slower than drbd-utils' C tools: the table also gives one ``drbdsetup status --json`` call's
median wall time measured in the same run, so that the difference between the modes can be read
in tool calls. libvirt's own time (domjobinfo on the target) shows that the guest's migration
itself is the same in both.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

from benchmarks.bench_migration import in_bare_lab, job_stats, ms
from benchmarks.common import fmt_s, median, say, table
from tests.lab import core
from tests.lab import nodes as lab_nodes
from tests.lab.storage import with_drbd_disk
from tests.support import guest

AGENT = "/usr/lib/ocf/resource.d/livemig/VirtualDomain"
NAME = "lmwindow"
MODES = ("always", "migration")


def agent(node: str, action: str, config: str, mode: str, **env: str) -> float:
    argv = ["env", "OCF_ROOT=/usr/lib/ocf", f"OCF_RESOURCE_INSTANCE={NAME}", f"OCF_RESKEY_config={config}",
            "OCF_RESKEY_hypervisor=qemu:///system", "OCF_RESKEY_CRM_meta_timeout=120000",
            "OCF_RESKEY_migration_transport=tcp", "HA_RSCTMP=/run/resource-agents", "HA_logfacility=none",
            f"OCF_RESKEY_drbd_two_primaries={mode}", "OCF_RESKEY_drbd_allow_two_node_quorum=true",
            *[f"{k}={v}" for k, v in env.items()], AGENT, action]
    t0 = time.monotonic()
    res = lab_nodes.on_node(node, argv, check=False, timeout=180)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{action} on {node} ({mode}) returned {res.returncode}: {res.stderr.strip()[-400:]}")
    return wall


def drbd(node: str, *argv: str) -> None:
    res = lab_nodes.on_node(node, list(argv), check=False, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} on {node}: {res.stderr.strip()[-300:]}")


def set_mode(mode: str, source: str, target: str) -> None:
    """DRBD as the mode keeps it before a migration from ``source`` to ``target`` (not timed)."""
    if mode == "migration":
        drbd(target, "drbdsetup", "secondary", "r0")  # before the allowance goes (DRBD: 164 otherwise)
    drbd(source, "drbdsim", "config", "r0", f"--allow-two-primaries={'yes' if mode == 'always' else 'no'}")
    for node in (source, target):
        drbd(node, "drbdadm", "adjust", "r0")
    if mode == "always":
        drbd(target, "drbdsetup", "primary", "r0")


def migrate(mode: str, source: str, target: str, config: str) -> Tuple[float, float, float, float]:
    """(migrate_to, migrate_from, stop on the source, libvirt's own time) in seconds."""
    set_mode(mode, source, target)
    to = agent(source, "migrate_to", config, mode, OCF_RESKEY_CRM_meta_migrate_target=target)
    arrive = agent(target, "migrate_from", config, mode, OCF_RESKEY_CRM_meta_migrate_source=source)
    stop = agent(source, "stop", config, mode)
    return to, arrive, stop, ms(job_stats(target, NAME), "Time elapsed")


def tool_call_cost(node: str, reps: int = 15) -> float:
    walls = []
    for _ in range(reps):
        t0 = time.monotonic()
        drbd(node, "drbdsetup", "status", "r0", "--json")
        walls.append(time.monotonic() - t0)
    return median(walls)


def run(reps: int, warmup: int, seed: int) -> List[List[str]]:
    shared = Path(core.vm_config_path()).parent
    shared.mkdir(parents=True, exist_ok=True)
    image = guest.ensure_guest_image()
    config = str(shared / f"{NAME}.xml")
    console = shared / f"{NAME}.console"
    Path(config).write_text(with_drbd_disk(guest.domain_xml(NAME, image, console_log=console)))
    console.write_bytes(b"")
    nodes = core.node_names(2)
    drbd(nodes[0], "drbdsim", "config", "r0", "--allow-two-primaries=no")
    for node in nodes:
        drbd(node, "drbdadm", "adjust", "r0")
    agent(nodes[0], "start", config, "migration")  # makes nodes[0] Primary
    guest.wait_for_console(console, guest.READY, 120)
    where = 0
    results: Dict[str, List[Tuple[float, float, float, float]]] = {m: [] for m in MODES}
    order = [MODES if i % 2 == 0 else MODES[::-1] for i in range(reps)]
    random.Random(seed).shuffle(order)
    for _ in range(warmup):
        for mode in MODES:
            migrate(mode, nodes[where], nodes[1 - where], config)
            where = 1 - where
    for pair in order:
        for mode in pair:
            results[mode].append(migrate(mode, nodes[where], nodes[1 - where], config))
            where = 1 - where
    agent(nodes[where], "stop", config, "migration")
    per_call = tool_call_cost(nodes[0])
    rows = []
    base = median([r[0] for r in results["always"]])
    for mode in MODES:
        rs = results[mode]
        to = median([r[0] for r in rs])
        rows.append([mode, fmt_s(to), f"{(to - base) * 1000:+.0f} ms ({(to - base) / per_call:+.1f} calls)",
                     fmt_s(median([r[1] for r in rs])), fmt_s(median([r[2] for r in rs])),
                     fmt_s(median([r[3] for r in rs]))])
    rows.append(["one simulated drbdsetup status --json", fmt_s(per_call), "", "", "", ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="counted migrations per mode")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted round trips (one per mode) after boot")
    parser.add_argument("--seed", type=int, default=1, help="seed of the balanced order of the modes")
    args = parser.parse_args()
    rows = in_bare_lab(lambda: run(args.reps, args.warmup, args.seed))
    if rows is None:
        return 1
    say(table(f"The two-primaries window, node1 <-> node2, idle guest on the lab's DRBD device, median of "
              f"{args.reps} per mode after {args.warmup} uncounted round trip(s), balanced shuffled order "
              f"(seed {args.seed})",
              ["mode", "migrate_to", "vs always", "migrate_from", "stop (source)", "libvirt time"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
