"""Benchmarks on one private libvirtd: monitor, probe, fleet, stop, start.

ocf:livemig:VirtualDomain and ocf:heartbeat:VirtualDomain run against the same libvirtd, the same
domains and the same parameters, interleaved in the same run; figures are medians.

    python3 -m benchmarks.bench_local [--reps 21] [--fleet 20] [--fleet-seconds 60] [--stop-reps 3]
                                      [--only monitor,fleet,stop,start] [--baseline TREE]

Root is required (libvirtd and QEMU). Uses tests/support/libvirtd.py (a private libvirtd in its own
mount namespace, nothing on the host changes) and the tiny TCG guest of tests/support/guest.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.common import (
    AGENTS,
    SYSTEM_PYTHON,
    Sample,
    fmt_ratio,
    fmt_s,
    machine,
    make_cib,
    measure,
    measure_blocking,
    median,
    ocf_env,
    say,
    table,
)
from tests.support import guest
from tests.support.libvirtd import LibvirtDaemon

FLOOR_CODE = """
import sys, libvirt
libvirt.registerErrorHandler(lambda c, e: None, None)
conn = libvirt.open(sys.argv[1])
try:
    state = conn.lookupByName(sys.argv[2]).state()
except libvirt.libvirtError:
    state = None
sys.exit(0 if state and state[0] == 1 else 7)
"""

START_FLOOR_CODE = """
import sys, libvirt
libvirt.open(sys.argv[1]).createXML(open(sys.argv[2]).read(), 0)
"""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="livemig-bench-"))
        self.daemon = LibvirtDaemon()
        self.image: Any = None
        self.conn: Any = None
        self.stopped_at: Dict[str, float] = {}
        self.events_lock = threading.Lock()
        self.report: List[str] = []

    # -- set-up ----------------------------------------------------------------------------

    def setup(self) -> None:
        import libvirt

        self.image = guest.ensure_guest_image()
        self.daemon.setup()
        # The harness's own connection gets lifecycle events: "domain off" is timed by libvirt's
        # STOPPED event, not by polling.
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=self._event_loop, daemon=True).start()
        libvirt.registerErrorHandler(lambda _c, _e: None, None)
        self.conn = libvirt.open(self.daemon.uri)
        self.conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None)
        self.cib = {name: self.work / f"cib-{name}.xml" for name in AGENTS}

    @staticmethod
    def _event_loop() -> None:
        import libvirt

        while True:
            libvirt.virEventRunDefaultImpl()

    def _on_event(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        import libvirt

        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            with self.events_lock:
                self.stopped_at[dom.name()] = time.monotonic()

    def teardown(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.daemon.teardown()
        shutil.rmtree(self.work, ignore_errors=True)

    def config(self, name: str, **kw: Any) -> Path:
        path = self.work / f"{name}.xml"
        path.write_text(guest.domain_xml(name, self.image, console_log=self.work / f"{name}.console", **kw))
        return path

    def boot(self, name: str, wait_ready: bool = True) -> None:
        console = self.work / f"{name}.console"
        offset = console.stat().st_size if console.exists() else 0
        self.conn.createXML((self.work / f"{name}.xml").read_text(), 0)
        if wait_ready:
            guest.wait_for_console(console, guest.READY, 120, since=offset)

    def destroy(self, name: str) -> None:
        import libvirt

        try:
            self.conn.lookupByName(name).destroy()
        except libvirt.libvirtError:
            pass

    def env(self, agent: str, name: str, interval_ms: Optional[int] = None, timeout_ms: int = 30000,
            **params: str) -> Dict[str, str]:
        rsctmp = self.work / f"rsctmp-{agent}"
        rsctmp.mkdir(exist_ok=True)
        return ocf_env({"config": str(self.work / f"{name}.xml"), "hypervisor": self.daemon.uri, **params},
                       instance=name, rsctmp=str(rsctmp), interval_ms=interval_ms, timeout_ms=timeout_ms,
                       extra={"CIB_file": str(self.cib[agent])})

    # -- monitor, probe, stopped ---------------------------------------------------------

    def bench_monitor(self) -> None:
        run_name, off_name = "bench-mon", "bench-off"
        self.config(run_name)
        self.config(off_name)
        for path in self.cib.values():
            make_cib(path, [run_name, off_name] + [f"bench-f{i:02d}" for i in range(self.args.fleet)])
        self.boot(run_name)
        floor = [SYSTEM_PYTHON, "-c", FLOOR_CODE, self.daemon.uri]
        cases: List[Tuple[str, str, Optional[int], int]] = [
            ("monitor, running domain", run_name, 10000, 0),
            ("probe, running domain", run_name, 0, 0),
            ("monitor, stopped domain", off_name, 10000, 7),
        ]
        rows = []
        for label, name, interval, expect in cases:
            variants = {agent: (argv + ["monitor"], self.env(agent, name, interval)) for agent, argv in AGENTS.items()}
            plain = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
            variants["floor"] = (floor + [name], plain)
            variants["virsh domstate"] = (["virsh", "-q", "-c", self.daemon.uri, "domstate", name], plain)
            for agent in AGENTS:  # warm-up: name remembered, utilization written once
                for _ in range(2):
                    measure_blocking(*variants[agent])
            samples: Dict[str, List[Sample]] = {k: [] for k in variants}
            for _ in range(self.args.reps):
                for key, (argv, env) in variants.items():
                    samples[key].append(measure_blocking(argv, env))
            codes = {k: sorted({s.code for s in v}) for k, v in samples.items()}
            for agent in AGENTS:
                if codes[agent] != [expect]:
                    say(f"  WARNING: {label}: {agent} returned {codes[agent]}, expected {expect}")
            cpu = {k: median([s.cpu for s in v]) for k, v in samples.items()}
            wall = {k: median([s.wall for s in v]) for k, v in samples.items()}
            baseline = ([fmt_s(cpu["baseline"]), fmt_s(wall["baseline"]), fmt_ratio(cpu["livemig"] / cpu["baseline"])]
                        if "baseline" in AGENTS else [])
            rows.append([label, fmt_s(cpu["livemig"]), fmt_s(cpu["heartbeat"]), fmt_s(cpu["floor"]),
                         fmt_s(cpu["virsh domstate"]),
                         fmt_s(wall["livemig"]), fmt_s(wall["heartbeat"]), fmt_s(wall["floor"]),
                         fmt_ratio(cpu["heartbeat"] / cpu["livemig"]), fmt_ratio(cpu["livemig"] / cpu["floor"]),
                         *baseline])
        self.destroy(run_name)
        baseline_columns = ["baseline CPU", "baseline wall", "livemig/baseline CPU"] if "baseline" in AGENTS else []
        self.emit(table(
            f"Monitor: one action, median of {self.args.reps} (CPU = user+sys of the process and its children)",
            ["case", "livemig CPU", "heartbeat CPU", "floor CPU", "virsh domstate CPU", "livemig wall",
             "heartbeat wall", "floor wall", "heartbeat/livemig CPU", "livemig/floor CPU", *baseline_columns], rows))

    # -- fleet ---------------------------------------------------------------------------

    def bench_fleet(self) -> None:
        n, seconds, interval = self.args.fleet, self.args.fleet_seconds, 10.0
        if n <= 0:
            return
        names = [f"bench-f{i:02d}" for i in range(n)]
        for name in names:
            self.config(name)
        if not all(p.exists() for p in self.cib.values()):
            for path in self.cib.values():
                make_cib(path, names)
        for name in names:
            self.boot(name, wait_ready=False)
        for name in names:
            guest.wait_for_console(self.work / f"{name}.console", guest.READY, 300)
        for name in names:  # warm-up, as after the resources' first monitor in a cluster
            for agent, argv in AGENTS.items():
                measure_blocking(argv + ["monitor"], self.env(agent, name, 10000))
        totals: Dict[str, List[Sample]] = {agent: [] for agent in AGENTS}
        lock = threading.Lock()
        threads: List[threading.Thread] = []

        def one(agent: str, name: str) -> None:
            s = measure(AGENTS[agent] + ["monitor"], self.env(agent, name, 10000), timeout=30)
            with lock:
                totals[agent].append(s)

        # Each resource's monitor every 10 s, staggered over the interval; the heartbeat one
        # half a slot after livemig's: both agents watch the same fleet in the same minute.
        schedule = []
        slot = interval / n
        for k in range(int(seconds / interval)):
            for i, name in enumerate(names):
                schedule.append((k * interval + i * slot, "livemig", name))
                schedule.append((k * interval + i * slot + slot / 2, "heartbeat", name))
        schedule.sort()
        start = time.monotonic()
        for at, agent, name in schedule:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = threading.Thread(target=one, args=(agent, name), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(60)
        for name in names:
            self.destroy(name)
        rows = []
        for agent, samples in totals.items():
            cpu = sum(s.cpu for s in samples)
            bad = sum(1 for s in samples if s.code != 0)
            rows.append([agent, str(len(samples)), f"{cpu:.2f} s", f"{100 * cpu / seconds:.1f} %",
                         fmt_s(median([s.cpu for s in samples])), fmt_s(median([s.wall for s in samples])),
                         str(bad)])
        lm = sum(s.cpu for s in totals["livemig"])
        hb = sum(s.cpu for s in totals["heartbeat"])
        rows.append(["heartbeat/livemig", "", fmt_ratio(hb / lm if lm else float("nan")), "", "", "", ""])
        self.emit(table(f"Fleet: {n} running guests, monitor every 10 s each, for {seconds:.0f} s",
                        ["agent", "monitors", "total CPU", "of one core", "CPU/monitor (median)",
                         "wall/monitor (median)", "not 0"], rows))

    # -- stop ----------------------------------------------------------------------------

    def _stop_once(self, variant: str, name: str) -> Tuple[float, float, float, str]:
        """(seconds to domain off, seconds to the stop call's return, CPU, how) for one stop."""
        self.boot(name)
        with self.events_lock:
            self.stopped_at.pop(name, None)
        t0 = time.monotonic()
        if variant == "guest (libvirt shutdown + STOPPED event)":
            self.conn.lookupByName(name).shutdown()
            end = t0 + 60
            while name not in self.stopped_at and time.monotonic() < end:
                time.sleep(0.001)
            returned, cpu = time.monotonic() - t0, 0.0
        else:
            s = measure(AGENTS[variant] + ["stop"], self.env(variant, name, timeout_ms=90000))
            returned, cpu = s.wall, s.cpu
            if s.code != 0:
                say(f"  WARNING: {variant} stop returned {s.code}")
        off = self.stopped_at.get(name, float("nan")) - t0
        log = self.daemon.qemu_log(name)
        text = log.read_text(errors="replace") if log.exists() else ""
        how = text.rsplit("shutting down, reason=", 1)[-1].split()[0] if "reason=" in text else "?"
        self.destroy(name)
        return off, returned, cpu, how

    def bench_stop(self) -> None:
        name = "bench-stop"
        self.config(name)
        variants = ["guest (libvirt shutdown + STOPPED event)", "livemig", "heartbeat"]
        results: Dict[str, List[Tuple[float, float, float, str]]] = {v: [] for v in variants}
        for _ in range(self.args.stop_reps):
            for v in variants:
                results[v].append(self._stop_once(v, name))
        base = median([r[0] for r in results[variants[0]]])
        rows = []
        for v in variants:
            rs = results[v]
            ret = median([r[1] for r in rs])
            rows.append([v, fmt_s(median([r[0] for r in rs])), fmt_s(ret),
                         f"+{fmt_s(ret - base)}", fmt_s(median([r[2] for r in rs])) if v in AGENTS else "-",
                         ",".join(sorted({r[3] for r in rs}))])
        self.emit(table(f"Stop of an ACPI-responsive guest (booted, acpid up), median of {self.args.stop_reps}",
                        ["who", "call -> domain off", "call -> return", "return - guest's own shutdown",
                         "CPU", "libvirt: shut down by"], rows))

    # -- start ---------------------------------------------------------------------------

    def bench_start(self) -> None:
        name = "bench-start"
        cfg = self.config(name)
        floor = [SYSTEM_PYTHON, "-c", START_FLOOR_CODE, self.daemon.uri, str(cfg)]
        variants = {"livemig": None, "heartbeat": None, "floor (python createXML)": floor,
                    "virsh create": ["virsh", "-q", "-c", self.daemon.uri, "create", str(cfg)]}
        samples: Dict[str, List[Sample]] = {v: [] for v in variants}
        for _ in range(self.args.start_reps):
            for v, argv in variants.items():
                if argv is None:
                    s = measure(AGENTS[v] + ["start"], self.env(v, name, timeout_ms=90000))
                else:
                    s = measure(argv)
                samples[v].append(s)
                if s.code != 0:
                    say(f"  WARNING: start by {v} returned {s.code}")
                self.destroy(name)
                time.sleep(0.3)
        rows = [[v, fmt_s(median([s.wall for s in ss])), fmt_s(median([s.cpu for s in ss]))]
                for v, ss in samples.items()]
        self.emit(table(f"Start (domain created and running), median of {self.args.start_reps}",
                        ["who", "wall", "CPU"], rows))

    def emit(self, text: str) -> None:
        self.report.append(text)
        say(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=21, help="repetitions per monitor figure")
    parser.add_argument("--fleet", type=int, default=20, help="guests in the fleet (0: no fleet)")
    parser.add_argument("--fleet-seconds", type=float, default=60.0)
    parser.add_argument("--stop-reps", type=int, default=3)
    parser.add_argument("--start-reps", type=int, default=5)
    parser.add_argument("--only", default="monitor,fleet,stop,start")
    parser.add_argument("--baseline", metavar="TREE",
                        help="another livemig source tree (e.g. a git worktree of an earlier commit) whose agent "
                             "runs beside this one, interleaved, as 'baseline' (monitor table)")
    args = parser.parse_args()
    if args.baseline:
        agent = Path(args.baseline).resolve() / "agents" / "VirtualDomain"
        if not agent.is_file():
            say(f"--baseline {args.baseline}: no agents/VirtualDomain there")
            return 2
        AGENTS["baseline"] = [SYSTEM_PYTHON, str(agent)]
    if os.geteuid() != 0:
        say("the benchmarks need root (they run libvirtd and QEMU)")
        return 1
    only = set(args.only.split(","))
    say(f"machine: {machine()}")
    bench = Bench(args)
    try:
        bench.setup()
        say(f"libvirtd: {bench.daemon.uri}; guest: {bench.image.kernel.parent}")
        for part in ("monitor", "fleet", "stop", "start"):
            if part in only:
                getattr(bench, f"bench_{part}")()
    finally:
        bench.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
