"""Shared pieces of the benchmarks: measuring a child, medians, tables, the agents' environment.

A measured command is one child process: its wall time from fork to reaping, and its CPU
(user + system, from ``os.wait4``'s rusage, which includes the child's own waited-for
children: heartbeat's virsh and crm_resource processes count for heartbeat).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]

SYSTEM_PYTHON = "/usr/bin/python3"
LIVEMIG = [SYSTEM_PYTHON, str(REPO / "agents" / "VirtualDomain")]
HEARTBEAT = ["/usr/lib/ocf/resource.d/heartbeat/VirtualDomain"]
AGENTS: Dict[str, List[str]] = {"livemig": LIVEMIG, "heartbeat": HEARTBEAT}


@dataclass
class Sample:
    code: int
    wall: float
    cpu: float


def measure(argv: Sequence[str], env: Optional[Mapping[str, str]] = None, timeout: float = 300.0) -> Sample:
    """Run ``argv`` to completion; its exit code, wall seconds and CPU seconds (user + sys)."""
    started = time.monotonic()
    proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, 9)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.002)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(proc.returncode, wall, usage.ru_utime + usage.ru_stime)


def measure_blocking(argv: Sequence[str], env: Optional[Mapping[str, str]] = None) -> Sample:
    """Like :func:`measure`, but blocks in wait4 (no polling: for short commands timed to the ms)."""
    started = time.monotonic()
    proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(proc.returncode, wall, usage.ru_utime + usage.ru_stime)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ocf_env(params: Mapping[str, str], *, instance: str, rsctmp: str, timeout_ms: int = 30000,
            interval_ms: Optional[int] = None, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """What pacemaker-execd passes an agent (tests/support/agent.py's), for both agents.

    Adds the state directory and the working tree's livemig (never an installed one).
    """
    from tests.support.agent import ocf_env as execd_env

    own = {"HA_RSCTMP": rsctmp, "PYTHONPATH": str(REPO / "lib"), **(extra or {})}
    return execd_env(params, instance=instance, timeout_ms=timeout_ms, interval_ms=interval_ms, extra=own)


def make_cib(path: Path, resources: Sequence[str]) -> None:
    """An offline CIB (``CIB_file``) holding ``resources``, so that crm_resource works as in a cluster.

    Both agents read and write utilization through crm_resource; without a CIB every call
    fails at once, which would flatter heartbeat (and make livemig retry its writes).
    """
    cib = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
    path.write_text(cib)
    for r in resources:
        subprocess.run(["cibadmin", "-C", "-o", "resources", "-X",
                        f'<primitive id="{r}" class="ocf" provider="heartbeat" type="VirtualDomain"/>'],
                       env={**os.environ, "CIB_file": str(path)}, capture_output=True, check=True)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


def fmt_ratio(x: float) -> str:
    return "-" if x != x else f"{x:.2f}x"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([f"\n### {title}\n", line, sep, *body])


def machine() -> str:
    model = "?"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    ver = subprocess.run(["libvirtd", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    py = subprocess.run([SYSTEM_PYTHON, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} CPU ({model}), {mem} MiB RAM, kernel {os.uname().release}, {ver}, {py}, "
            f"load average at start {load:.2f}")


def say(text: str = "") -> None:
    print(text, flush=True)
