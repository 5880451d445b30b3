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

This module is the command line (``tests/lab/lab``, or ``python3 -m tests.lab.labctl`` from the
working tree); the parts live in the modules the package's docstring lists.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import List, Optional

from tests.lab.core import LabError, is_alive, log, node_ip
from tests.lab.lifecycle import down, up
from tests.lab.nodes import node_env, nsenter_argv, on_node
from tests.lab.queries import snapshot
from tests.lab.state import load_state


def status() -> int:
    state = load_state()
    if state is None:
        print("lab: down")
        return 3
    print("lab: {} (nodes: {}, up since {})".format("ready" if state.ready else "NOT READY",
                                               ", ".join(state.names),
                                               time.strftime("%H:%M:%S", time.localtime(state.started))))
    rc = 0
    for n in state.names:
        pid = state.holders.get(n)
        if not pid or not is_alive(int(pid)):
            print(f"  {n}: DOWN")
            rc = 1
            continue
        ps = on_node(n, ["ps", "-eo", "comm="], check=False, state=state).stdout.split()
        daemons = [d for d in ("virtlogd", "libvirtd", "corosync", "pacemakerd", "pacemaker-contr",
                               "qemu-system-x86") if d in ps]
        print("  {}: {}  pid1={}  daemons: {}{}".format(n, node_ip(n), pid, " ".join(daemons),
                                                  "  (DRBD diskless)" if n in state.diskless else ""))
    first = state.names[0]
    if state.holders.get(first):
        out = on_node(first, ["crm_mon", "-1", "-r"], check=False, state=state)
        print(out.stdout.rstrip() or out.stderr.rstrip())
    return rc


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="lab", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="build the lab")
    p_up.add_argument("--nodes", type=int, default=int(os.environ.get("LAB_NODES", "2")), choices=(2, 3))
    p_up.add_argument("--diskless", action="append", default=[], metavar="NODE",
                      help="this node's DRBD has no backing disk (a tiebreaker: never promoted, never runs the VM)")
    p_up.add_argument("--drbd-quorum", default="", metavar="POLICY",
                      help="DRBD resource option quorum (e.g. majority; default off)")
    p_up.add_argument("--two-primaries", default="always", choices=("always", "migration"),
                      help="the VM's drbd_two_primaries (migration: no DRBD clone, allow-two-primaries off)")
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
            up(args.nodes, configure=not args.bare, vm=not args.no_vm, diskless=args.diskless,
               drbd_quorum=args.drbd_quorum, two_primaries=args.two_primaries)
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


if __name__ == "__main__":
    sys.exit(main())
