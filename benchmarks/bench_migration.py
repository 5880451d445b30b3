"""Live migration on the lab's node pair: migrate_to + migrate_from through the agent vs virsh.

    python3 -m benchmarks.bench_migration [--reps 10] [--warmup 1] [--seed 1] [--dirty-mib-s 20]

Brings the two-node lab up (``--bare --no-vm``: no cluster configuration, the lock of
tests/lab/lock.py serializes it machine-wide), runs a tiny guest outside Pacemaker and moves it
back and forth, comparing ocf:livemig:VirtualDomain's ``migrate_to`` (source) then
``migrate_from`` (target), as Pacemaker calls them, with ``virsh migrate --live --p2p DOM
qemu+tcp://TARGET/system`` (the same flags the agent uses for a transient domain:
VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER, no typed parameters, the same target URI: libvirt sends
QEMU the same capabilities and parameters for both). Downtime and libvirt's own total time are
read from the completed job statistics on the target (``virsh domjobinfo --completed
--keep-completed``). Always tears the lab down.

Fairness. The first migration after the guest boots is slow whoever makes it (the target node
starts its first QEMU, ~0.9 s of libvirt's prepare phase, and the copy often falls into QEMU's
slow mode), so each guest first makes ``--warmup`` round trips, one migration per method, that
are not counted. On this lab (2 CPUs, a TCG guest) about a third of all migrations, by either
method, fall into a slow mode (~250 MiB/s instead of ~1.5 GiB/s, 3 iterations, ~250 ms downtime
instead of ~10 ms), and in a fixed livemig-virsh / virsh-livemig alternation the method in the
first and last places of each group of four drew it far more often (swapping which method starts
moved the slow migrations to the other method). So each rep is one migration per method, the
guest returning to node 1 after each rep, and which method goes first (and therefore which one
goes node1 -> node2) is balanced over the reps (half each way for an even --reps) and shuffled
with a fixed seed. Medians over >= 9 reps per method.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from benchmarks.common import fmt_ratio, fmt_s, machine, median, say, table
from tests.lab import core, lifecycle
from tests.lab import lock as lab_lock
from tests.lab import nodes as lab_nodes
from tests.support import guest

AGENT = "/usr/lib/ocf/resource.d/livemig/VirtualDomain"  # in the nodes: the working tree's agent
NAME = "lmbench"


def agent(node: str, action: str, config: str, **env: str) -> Tuple[int, float]:
    argv = ["env", "OCF_ROOT=/usr/lib/ocf", f"OCF_RESOURCE_INSTANCE={NAME}", f"OCF_RESKEY_config={config}",
            "OCF_RESKEY_hypervisor=qemu:///system", "OCF_RESKEY_CRM_meta_timeout=120000",
            "OCF_RESKEY_migration_transport=tcp", "HA_RSCTMP=/run/resource-agents", "HA_logfacility=none",
            *[f"{k}={v}" for k, v in env.items()], AGENT, action]
    t0 = time.monotonic()
    res = lab_nodes.on_node(node, argv, check=False, timeout=180)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        say(f"  WARNING: {action} on {node} returned {res.returncode}: {res.stderr.strip()[-300:]}")
    return res.returncode, wall


def virsh_migrate(source: str, target: str) -> Tuple[int, float]:
    t0 = time.monotonic()
    res = lab_nodes.on_node(source, ["virsh", "migrate", "--live", "--p2p", NAME, f"qemu+tcp://{target}/system"],
                            check=False, timeout=180)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        say(f"  WARNING: virsh migrate {source}->{target}: {res.stderr.strip()[-300:]}")
    return res.returncode, wall


def job_stats(node: str, name: str = NAME) -> Dict[str, str]:
    res = lab_nodes.on_node(node, ["virsh", "domjobinfo", "--completed", "--keep-completed", name], check=False)
    stats = {}
    for line in res.stdout.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            stats[key.strip()] = value.strip()
    return stats


def ms(stats: Dict[str, str], key: str) -> float:
    try:
        return float(stats.get(key, "nan").split()[0]) / 1000.0
    except ValueError:
        return float("nan")


def migrate(method: str, src: str, dst: str, config: str) -> Tuple[float, float, float]:
    """One migration by ``method``: (wall, downtime, libvirt's total time) in seconds."""
    if method == "livemig":
        c1, w1 = agent(src, "migrate_to", config, OCF_RESKEY_CRM_meta_migrate_target=dst)
        c2, w2 = agent(dst, "migrate_from", config, OCF_RESKEY_CRM_meta_migrate_source=src)
        ok, wall = c1 == 0 and c2 == 0, w1 + w2
    else:
        c, wall = virsh_migrate(src, dst)
        ok = c == 0
    if not ok:
        raise RuntimeError(f"{method} migration {src}->{dst} failed")
    stats = job_stats(dst)
    return wall, ms(stats, "Total downtime"), ms(stats, "Time elapsed")


def balanced_order(reps: int, seed: int) -> List[Tuple[str, str]]:
    """``reps`` pairs, each method first in half of them (one more for livemig if odd), shuffled."""
    first_livemig = (reps + 1) // 2
    order = [("livemig", "virsh")] * first_livemig + [("virsh", "livemig")] * (reps - first_livemig)
    random.Random(seed).shuffle(order)
    return order


def run(reps: int, dirty: float, warmup: int, seed: int) -> List[List[str]]:
    shared = Path(core.vm_config_path()).parent
    shared.mkdir(parents=True, exist_ok=True)
    image = guest.ensure_guest_image()
    rows = []
    for g, (label, rate) in enumerate((("idle guest", 0.0), (f"guest dirtying {dirty:g} MiB/s", dirty))):
        config = str(shared / f"{NAME}.xml")
        console = shared / f"{NAME}.console"
        Path(config).write_text(guest.domain_xml(NAME, image, console_log=console, dirty_mib_s=rate))
        console.write_bytes(b"")
        nodes = core.node_names(2)  # what lifecycle.up(2) built
        code, _ = agent(nodes[0], "start", config)
        if code != 0:
            raise RuntimeError("cannot start the benchmark guest")
        guest.wait_for_console(console, guest.READY, 120)
        time.sleep(2.0 if rate else 0.5)  # let the dirtying reach its rate
        where = 0
        for i in range(warmup):  # not counted: the first migrations after boot are slow for either method
            for method in (("livemig", "virsh") if i % 2 == 0 else ("virsh", "livemig")):
                migrate(method, nodes[where], nodes[1 - where], config)
                where = 1 - where
        results: Dict[str, List[Tuple[float, float, float]]] = {"livemig": [], "virsh": []}
        for pair in balanced_order(reps, seed + g):
            for method in pair:
                results[method].append(migrate(method, nodes[where], nodes[1 - where], config))
                where = 1 - where
        agent(nodes[where], "stop", config)
        lm, vs = results["livemig"], results["virsh"]
        lm_wall, vs_wall = median([r[0] for r in lm]), median([r[0] for r in vs])
        lm_down, vs_down = median([r[1] for r in lm]), median([r[1] for r in vs])
        rows.append([label, fmt_s(lm_wall), fmt_s(vs_wall), fmt_ratio(lm_wall / vs_wall),
                     fmt_s(median([r[2] for r in lm])), fmt_s(median([r[2] for r in vs])),
                     fmt_s(lm_down), fmt_s(vs_down),
                     " ".join(f"{r[1] * 1000:.0f}" for r in lm) + " / " + " ".join(f"{r[1] * 1000:.0f}" for r in vs)])
    return rows


def in_bare_lab(fn: Callable[[], List[List[str]]]) -> Optional[List[List[str]]]:
    """``fn()``'s rows, run in the two-node lab brought up bare (under the lab lock), always taken down."""
    if os.geteuid() != 0:
        say("the benchmarks need root (the lab runs in namespaces)")
        return None
    say(f"machine: {machine()}")
    fd = lab_lock.acquire_lab_lock()
    try:
        lifecycle.up(2, configure=False, vm=False)
        try:
            return fn()
        finally:
            lifecycle.down()
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="counted migrations per method and guest")
    parser.add_argument("--warmup", type=int, default=1,
                        help="round trips (one migration per method) per guest after boot, not counted")
    parser.add_argument("--seed", type=int, default=1, help="seed of the balanced order of the methods")
    parser.add_argument("--dirty-mib-s", type=float, default=20.0)
    args = parser.parse_args()
    rows = in_bare_lab(lambda: run(args.reps, args.dirty_mib_s, args.warmup, args.seed))
    if rows is None:
        return 1
    say(table(f"Live migration node1 <-> node2, median of {args.reps} per method after {args.warmup} uncounted "
              f"round trip(s), balanced shuffled order (seed {args.seed}) "
              "(agent: migrate_to wall + migrate_from wall; virsh: virsh migrate wall)",
              ["guest", "livemig wall", "virsh wall", "livemig/virsh", "libvirt time, livemig",
               "libvirt time, virsh", "downtime livemig", "downtime virsh", "downtimes ms (livemig / virsh)"],
              rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
