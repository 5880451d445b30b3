"""The lab's fixed names and paths, its error, and bounded commands and waits (no lab state)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAB_DIR = Path(os.environ.get("LIVEMIG_LAB_DIR", "/run/livemig-lab"))
STATE_FILE = LAB_DIR / "state.json"
SHARED = LAB_DIR / "shared"
NS_PREFIX = "lmlab-"
SWITCH_NS = NS_PREFIX + "sw"
SUBNET = "10.77.0"
CLUSTER_NAME = "livemiglab"
DRBD_RES = "r0"
DRBD_MINOR = 1000
VM_NAME = "lmvm1"
PY = "/usr/bin/python3"
FENCING = os.environ.get("LIVEMIG_LAB_FENCING", "1") != "0"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The nodes' lower layer for /etc, /var, /root and /usr: the host's (default), or a root file
# system of another release (tests/tools/distroot.py path debian13: Pacemaker 3.0, libvirt 11.3).
LOWER_ROOT = os.environ.get("LIVEMIG_LAB_ROOT", "")
GUEST_CACHE = os.environ.get("LIVEMIG_GUEST_CACHE", "/var/cache/livemig-tests/guest")

_T0 = time.monotonic()


class LabError(RuntimeError):
    """A lab component could not be set up."""


def log(msg: str) -> None:
    sys.stderr.write(f"[lab {time.monotonic() - _T0:6.1f}s] {msg}\n")
    sys.stderr.flush()


def node_names(count: int) -> List[str]:
    return [f"node{i}" for i in range(1, count + 1)]


def node_ip(name: str) -> str:
    return f"{SUBNET}.{10 + int(name[4:])}"


def node_dir(name: str) -> Path:
    return LAB_DIR / "nodes" / name


def proc_drbd_path(name: str) -> str:
    return str(node_dir(name) / "proc-drbd")


def console_log_path() -> str:
    """The VM's serial console, appended to by whichever node runs it (shared directory)."""
    return str(SHARED / "vm" / (VM_NAME + "-console.log"))


def vm_config_path() -> str:
    return str(SHARED / "vm" / (VM_NAME + ".xml"))


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(str(path), mode)


def run(argv: Sequence[str], check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip()
        raise LabError(f"{' '.join(argv)} failed (exit {res.returncode}): {detail}")
    return res


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns a true value; LabError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (LabError, subprocess.SubprocessError, OSError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise LabError("timed out after {:.0f}s waiting for {}{}".format(
                timeout, what, f": {last_exc}" if last_exc else ""))
        time.sleep(interval)


def is_alive(pid: int) -> bool:
    """``pid`` exists and is no zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
