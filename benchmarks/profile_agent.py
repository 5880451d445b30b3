#!/usr/bin/python3
"""Fixed cost of one agent process on the migration path, without the lab (issue 8).

Starts a private libvirtd (tests/support/libvirtd.py) with one idle transient domain (TCG, no
disk, no kernel: SeaBIOS waiting for a boot device), then, as root:

1. baseline processes: ``python3 -c pass``, ``-S``, ``import libvirt``, ``import lxml.etree``,
   ``virsh --version``, ``virsh -c URI uri``, and a Python floor (import libvirt, open, lookup,
   state); the agent's ``monitor`` and ``migrate_from`` (the domain runs here, as after a
   migration) as Pacemaker runs them. Wall fork -> reap and CPU (wait4 rusage), median of N,
   interleaved.
2. phases of ``migrate_to`` and ``migrate_from`` inside the process (a wrapper timestamps
   interpreter start, the agent's imports, every Hypervisor call; for migrate_to the libvirt
   job itself is replaced by nothing, then ``_finish`` reads the completed statistics from the
   "target", which is the same private libvirtd).
3. ``-X importtime`` of both actions, grouped by top-level import.

Bytecode caching is on (PYTHONDONTWRITEBYTECODE unset) with PYTHONPYCACHEPREFIX in a temporary
directory, so nothing is written under lib/ and every run after the first reads cached bytecode,
as an installed package does. Usage, from the working tree: ``sudo python3 -m benchmarks.profile_agent [--reps 21]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

from benchmarks.common import LIVEMIG, REPO, SYSTEM_PYTHON, measure_blocking, ocf_env

DOMAIN = "lmprof"
DOMAIN_XML = f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='null'><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""

# Runs the agent's main() with timestamps (CLOCK_MONOTONIC is system-wide: comparable with the
# parent's fork time). Events go to $PROFILE_OUT at os._exit / exit.
WRAPPER = r'''
import time
T0 = time.monotonic()
import os, sys, json
EV = [("main", T0, T0)]
t = time.monotonic()
import livemig  # noqa
from livemig.agents.virtualdomain import main
EV.append(("import agent", t, time.monotonic()))
from livemig.virt import connection as C
def timed(cls, name):
    orig = getattr(cls, name)
    def wrapped(*a, **k):
        s = time.monotonic()
        try:
            return orig(*a, **k)
        finally:
            EV.append((name, s, time.monotonic()))
    setattr(cls, name, wrapped)
for n in ("open", "lookup", "status", "actual_uri", "is_persistent", "job_stats", "close"):
    timed(C.Hypervisor, n)
orig_quiet = C.quiet_libvirt
def quiet():
    s = time.monotonic(); r = orig_quiet(); EV.append(("import libvirt", s, time.monotonic())); return r
C.quiet_libvirt = quiet
if sys.argv[1] == "migrate_to":
    t = time.monotonic()
    from livemig.virt import migration as M
    EV.append(("import migration", t, time.monotonic()))
    def migrate(self, hv, dom, plan):
        s = time.monotonic()
        EV.append(("JOB (not run)", s, s))
        plan.dest_uri = os.environ["PROFILE_TARGET_URI"]
        self._finish(plan)
        EV.append(("finish: target stats", s, time.monotonic()))
    M.LiveMigration.migrate = migrate
def dump():
    with open(os.environ["PROFILE_OUT"], "w") as f:
        json.dump(EV, f)
orig_exit = os._exit
def _exit(code):
    EV.append(("exit", time.monotonic(), time.monotonic())); dump(); orig_exit(code)
os._exit = _exit
sys.argv = [os.environ["PROFILE_AGENT"], sys.argv[1]]
try:
    main()
finally:
    EV.append(("exit", time.monotonic(), time.monotonic())); dump()
'''


def med(xs: List[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args()
    os.environ.setdefault("LIVEMIG_TEST_RUNDIR", "/run/livemig-profile")
    from tests.support.libvirtd import LibvirtDaemon

    work = Path(tempfile.mkdtemp(prefix="lmprof-"))
    pycache = work / "pycache"
    cfg = work / f"{DOMAIN}.xml"
    cfg.write_text(DOMAIN_XML)
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base_env["PYTHONPYCACHEPREFIX"] = str(pycache)
    daemon = LibvirtDaemon(base=Path(os.environ["LIVEMIG_TEST_RUNDIR"]))
    started = time.monotonic()
    daemon.setup()
    print(f"private libvirtd ready in {time.monotonic() - started:.1f}s: {daemon.uri}", flush=True)
    try:
        conn = daemon.connect()
        conn.createXML(DOMAIN_XML, 0)
        uri = daemon.uri

        def env_for(action_meta: Dict[str, str], rsctmp: str) -> Dict[str, str]:
            params = {"config": str(cfg)}  # hypervisor at its default: LIBVIRT_DEFAULT_URI says where
            e = ocf_env(params, instance="lmprof", rsctmp=rsctmp, timeout_ms=60000,
                        extra={"HA_logfacility": "none", "LIBVIRT_DEFAULT_URI": uri, **action_meta})
            e = {k: v for k, v in e.items() if k != "PYTHONDONTWRITEBYTECODE"}
            e["PYTHONPYCACHEPREFIX"] = str(pycache)
            e["OCF_ROOT"] = "/usr/lib/ocf"
            return e

        rsctmp = work / "rsctmp"
        rsctmp.mkdir()
        meta_from = {"OCF_RESKEY_CRM_meta_migrate_source": "node1", "OCF_RESKEY_CRM_meta_migrate_target": "node2"}
        env_from = env_for(meta_from, str(rsctmp))
        floor = ("import libvirt; libvirt.registerErrorHandler(lambda c, e: None, None); "
                 f"c = libvirt.open({uri!r}); d = c.lookupByName({DOMAIN!r}); d.state(); c.close()")
        cases = {
            "python3 -S -c pass": [SYSTEM_PYTHON, "-S", "-c", "pass"],
            "python3 -c pass": [SYSTEM_PYTHON, "-c", "pass"],
            "python3 -c 'import libvirt'": [SYSTEM_PYTHON, "-c", "import libvirt"],
            "python3 -c 'import lxml.etree'": [SYSTEM_PYTHON, "-c", "import lxml.etree"],
            "python3 -c 'import dataclasses'": [SYSTEM_PYTHON, "-c", "import dataclasses"],
            "python3 floor (libvirt open+lookup+state)": [SYSTEM_PYTHON, "-c", floor],
            "virsh --version": ["virsh", "--version"],
            "virsh -c URI uri": ["virsh", "-c", uri, "uri"],
            "virsh -c URI domstate": ["virsh", "-c", uri, "domstate", DOMAIN],
            "agent monitor": LIVEMIG + ["monitor"],
            "agent migrate_from": LIVEMIG + ["migrate_from"],
        }
        envs = {name: (env_from if name.startswith("agent") else base_env) for name in cases}
        for name, argv in cases.items():  # warm-up: bytecode written, page cache warm, state file
            s = measure_blocking(argv, envs[name])
            if s.code != 0:
                print(f"warning: {name} exited {s.code}", flush=True)
        walls: Dict[str, List[float]] = defaultdict(list)
        cpus: Dict[str, List[float]] = defaultdict(list)
        for _ in range(args.reps):
            for name, argv in cases.items():
                s = measure_blocking(argv, envs[name])
                walls[name].append(s.wall)
                cpus[name].append(s.cpu)
        print(f"\n### Processes, median of {args.reps} (interleaved; bytecode cached)\n")
        print("| process | wall ms | CPU ms |\n|---|---|---|")
        for name in cases:
            print(f"| {name} | {ms(med(walls[name]))} | {ms(med(cpus[name]))} |")

        # -- phases inside the process --------------------------------------------------------
        wrapper = work / "wrapper.py"
        wrapper.write_text(WRAPPER)
        out = work / "events.json"
        for action in ("migrate_to", "migrate_from"):
            e = dict(env_from)
            e.update(PROFILE_OUT=str(out), PYTHONPATH=str(REPO / "lib"), PROFILE_AGENT=LIVEMIG[1],
                     PROFILE_TARGET_URI=uri)
            phases: Dict[str, List[float]] = defaultdict(list)
            order: List[str] = []
            for i in range(args.reps + 1):
                t_fork = time.monotonic()
                proc = subprocess.Popen([SYSTEM_PYTHON, str(wrapper), action], env=e, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _, status, _ = os.wait4(proc.pid, 0)
                t_reap = time.monotonic()
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    print(f"warning: {action} exited {code}")
                ev = json.loads(out.read_text())
                if i == 0:
                    continue
                exit_t = next(s for name, s, _ in ev if name == "exit")
                spans = [(n, s, en) for n, s, en in ev[1:] if n not in ("exit", "JOB (not run)")]
                spans.sort(key=lambda x: (x[1], -x[2]))
                rows = [("fork -> interpreter ready (python3 + site)", ev[0][1] - t_fork)]
                covered, top_end = 0.0, -1.0
                for n, s, en in spans:
                    nested = en <= top_end
                    label = n if n.startswith(("import", "finish")) else f"hv.{n}"
                    rows.append((("  (inside) " if nested else "") + label, en - s))
                    if not nested:
                        covered += en - s
                        top_end = en
                rows.append(("agent code between the timed spans (params, config parse, state file, logs, "
                             "DRBD plan, plan, ...)", (exit_t - ev[0][1]) - covered))
                rows.append(("exit -> reaped", t_reap - exit_t))
                rows.append(("TOTAL fork -> reap", t_reap - t_fork))
                agg: Dict[str, float] = defaultdict(float)
                for n, d in rows:
                    agg[n] += d
                for n, d in agg.items():
                    if n not in order:
                        order.append(n)
                    phases[n].append(d)
            print(f"\n### {action}: phases, median of {args.reps} (hv.* calls of the target connection are "
                  "inside 'finish')\n")
            print("| phase | ms |\n|---|---|")
            for n in order:
                print(f"| {n} | {ms(med(phases[n]))} |")

        # -- -X importtime ----------------------------------------------------------------------
        for action in ("migrate_to", "migrate_from"):
            per: Dict[str, List[float]] = defaultdict(list)
            e = dict(env_from)
            if action == "migrate_to":
                # no target: migrate_to fails after prepare; every import of the path has happened by then
                e["OCF_RESKEY_CRM_meta_migrate_target"] = "lmprof-no-such-node.invalid"
            for i in range(args.reps + 1):
                r = subprocess.run([SYSTEM_PYTHON, "-X", "importtime", LIVEMIG[1], action], env=e,
                                   capture_output=True, text=True)
                if i == 0:
                    continue
                tops: Dict[str, float] = defaultdict(float)
                for line in r.stderr.splitlines():
                    m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
                    if not m or m.group(3) != " ":
                        continue  # only imports not nested in another (lazy ones in functions included)
                    mod = m.group(4)
                    key = mod if mod.startswith("livemig") else mod.split(".")[0]
                    tops[key] += int(m.group(2)) / 1e6
                tops["ALL"] = sum(v for k, v in tops.items() if k != "ALL")
                for k, v in tops.items():
                    per[k].append(v)
            print(f"\n### {action}: python3 -X importtime, cumulative per top-level import, median of {args.reps} "
                  "(>= 0.3 ms; importtime itself adds overhead)\n")
            print("| import | ms |\n|---|---|")
            for k, v in sorted(per.items(), key=lambda kv: -med(kv[1])):
                if med(v) >= 0.0003:
                    print(f"| {k} | {ms(med(v))} |")
    finally:
        daemon.teardown()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
