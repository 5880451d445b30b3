"""Running ocf:livemig:VirtualDomain the way Pacemaker does: a subprocess, OCF env vars, argv[1].

The agent runs under Debian's /usr/bin/python3 (its runtime), from the working
tree, with a clean environment: only what pacemaker-execd would pass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "agents" / "VirtualDomain"
SYSTEM_PYTHON = "/usr/bin/python3"
EXIT_REASON_PREFIX = "ocf-exit-reason:"

OCF_CODES = {
    0: "success",
    1: "generic error",
    2: "invalid argument",
    3: "unimplemented",
    4: "insufficient privileges",
    5: "not installed",
    6: "not configured",
    7: "not running",
    8: "running promoted",
    9: "failed promoted",
    190: "degraded",
    191: "degraded promoted",
}


@dataclass
class AgentResult:
    action: str
    code: int
    stdout: str
    stderr: str
    elapsed: float
    env: Dict[Any, Any] = field(repr=False)  # as passed: str, or bytes for what is no UTF-8
    timed_out: bool = False

    @property
    def exit_reasons(self) -> List[str]:
        return [
            line[len(EXIT_REASON_PREFIX):].strip()
            for line in self.stderr.splitlines()
            if line.startswith(EXIT_REASON_PREFIX)
        ]

    @property
    def exit_reason(self) -> str:
        """The last exit reason printed (Pacemaker keeps the last one), or ''."""
        reasons = self.exit_reasons
        return reasons[-1] if reasons else ""

    @property
    def meaning(self) -> str:
        return OCF_CODES.get(self.code, "?")

    def describe(self) -> str:
        """A one-line account for assertion messages and the demo."""
        reason = f", reason: {self.exit_reason}" if self.exit_reason else ""
        timed = " (KILLED: did not return in time)" if self.timed_out else ""
        return f"{self.action} -> {self.code} ({self.meaning}) in {self.elapsed:.2f}s{reason}{timed}"

    def details(self) -> str:
        return f"{self.describe()}\n--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"


def ocf_env(
    params: Mapping[str, str],
    *,
    instance: str,
    timeout_ms: int = 20000,
    interval_ms: Optional[int] = None,
    extra: Optional[Mapping[str, str]] = None,
) -> Dict[str, str]:
    """The environment pacemaker-execd gives an OCF agent.

    ``interval_ms`` is the monitor interval: 0 makes a monitor a probe; None
    leaves OCF_RESKEY_CRM_meta_interval unset (as for start and stop).
    """
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "1",
        "OCF_RESOURCE_INSTANCE": instance,
        "OCF_RESOURCE_TYPE": "VirtualDomain",
        "OCF_RESOURCE_PROVIDER": "livemig",
        "OCF_EXIT_REASON_PREFIX": EXIT_REASON_PREFIX,
        "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms),
        "HA_logfacility": "none",
        "PCMK_logfacility": "none",
    }
    if interval_ms is not None:
        env["OCF_RESKEY_CRM_meta_interval"] = str(interval_ms)
    for name, value in params.items():
        env[f"OCF_RESKEY_{name}"] = value
    if extra:
        env.update(extra)
    return env


def run_agent(
    action: str,
    env: Union[Mapping[str, str], Mapping[bytes, bytes]],
    *,
    agent: Sequence[str] = (SYSTEM_PYTHON, str(AGENT)),
    grace: float = 15.0,
    timeout: Optional[float] = None,
    pythonpath: Optional[str] = str(REPO / "lib"),
) -> AgentResult:
    """Run one action: ``agent`` (the command before the action) with exactly ``env``.

    The agent is killed (its whole process group) ``grace`` seconds after its own timeout,
    ``OCF_RESKEY_CRM_meta_timeout``, or after ``timeout`` seconds if given (for an environment
    whose timeout is no number). A killed agent is reported (``timed_out``) rather than raised,
    so that the caller's assertion says what happened.

    ``env`` may hold bytes (keys and values) to pass what is no UTF-8. ``pythonpath`` goes into
    the environment unless it has a PYTHONPATH already: the working tree's package, even where a
    livemig package is installed system-wide; None passes none (the lab's nodes, where the agent
    finds its package itself). The lab runs the agent in a node with ``agent`` starting with
    nsenter (tests/lab/labvm.py).
    """
    full_env: Dict[Any, Any] = dict(env)
    if pythonpath is not None and "PYTHONPATH" not in full_env and b"PYTHONPATH" not in full_env:
        if any(isinstance(key, bytes) for key in full_env):
            full_env[b"PYTHONPATH"] = os.fsencode(pythonpath)
        else:
            full_env["PYTHONPATH"] = pythonpath
    if timeout is None:
        timeout = int(full_env.get("OCF_RESKEY_CRM_meta_timeout", "20000")) / 1000.0 + grace
    started = time.monotonic()
    proc = subprocess.Popen(
        [*agent, action], env=full_env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    return AgentResult(
        action=action,
        code=proc.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        elapsed=time.monotonic() - started,
        env=dict(env),
        timed_out=timed_out,
    )


@contextlib.contextmanager
def agent_for_any_user() -> Iterator[Path]:
    """The working tree's agent and ``lib/livemig``, copied now into a fresh world-readable directory.

    ocf-tester runs the agent's meta-data as ``nobody``: a checkout under a 0700 directory (Debian's
    /root) cannot be read there. The copy has the checkout's layout (``agents/``, ``lib/``), so the
    agent's fallback finds its package; it is removed afterwards. Yields the copied agent.
    """
    top = Path(tempfile.mkdtemp(prefix="livemig-agent-"))
    try:
        os.chmod(top, 0o755)
        shutil.copytree(REPO / "lib" / "livemig", top / "lib" / "livemig",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (top / "agents").mkdir()
        shutil.copy(AGENT, top / "agents" / AGENT.name)
        for path in [top, *top.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() or path.parent.name == "agents" else 0o644)
        yield top / "agents" / AGENT.name
    finally:
        shutil.rmtree(top, ignore_errors=True)
