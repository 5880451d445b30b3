"""Run a daemon as the child of a child-subreaper that reaps its orphans at once.

usage: subreaper.py PIDFILE -- PROGRAM [ARGS...]

QEMU daemonizes: once libvirt's intermediate process exits it is re-parented to
the nearest subreaper, by default PID 1. libvirt waits for a dead QEMU's PID to
vanish before it reports the domain stopped, so a PID 1 that reaps lazily (as
in some containers and VMs) adds seconds to every stop and destroy. This
process marks itself a subreaper (prctl PR_SET_CHILD_SUBREAPER), runs PROGRAM,
writes PROGRAM's PID to PIDFILE, reaps every process that ends below it, and
exits with PROGRAM's status when PROGRAM ends (QEMUs still running then go to
PID 1, as before). SIGTERM, SIGINT and SIGHUP are passed on to PROGRAM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from types import FrameType
from typing import List, Optional

PR_SET_CHILD_SUBREAPER = 36


def main(argv: List[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    pidfile, program = argv[1], argv[3:]
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"subreaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(program[0], program)
        finally:
            os._exit(127)

    def forward(signum: int, _frame: Optional[FrameType]) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    tmp = f"{pidfile}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{child}\n")
    os.replace(tmp, pidfile)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
