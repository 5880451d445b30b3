"""`python3 -m livemig guard` as a real process, with fake DRBD tools first on PATH.

The fakes (tests/fakes/drbd) print a fixture, exit with a chosen code, or hang.
cibadmin is Pacemaker's own when installed (it reads CIB_file, set by --cib);
otherwise a fake that prints $CIB_file stands in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes" / "drbd"
FIXTURES = ROOT / "tests" / "fixtures" / "drbd"
CIB_EMPTY = str(FIXTURES / "cib-synthetic-empty.xml")
CIB_FENCED = str(FIXTURES / "cib-synthetic-fence-beijing.xml")


def environment(**extra: str) -> Dict[str, str]:
    path = [str(FAKES)]
    if shutil.which("cibadmin") is None:
        path.append(str(FAKES / "pacemaker"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_DRBD", "CIB_"))}
    env.update({
        "PATH": os.pathsep.join(path + [os.environ.get("PATH", os.defpath)]),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "lib"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "LIVEMIG_PROC_DRBD": str(FIXTURES / "drbd9-proc-synthetic-version-only.txt"),
        "FAKE_DRBD_FIXTURES": str(FIXTURES),
    })
    env.update(extra)
    return env


def livemig(args: List[str], timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livemig", *args], env=environment(**extra), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout, check=False)


GUARD = ["guard", "--peer", "salt-node3", "--resource", "beijing", "--cib", CIB_EMPTY]


def test_dual_primary_healthy_is_allowed() -> None:
    done = livemig(GUARD, FAKE_DRBDSETUP_STATUS="drbd9-status-json-derived-dual-primary.txt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("allowed:")


def test_short_and_full_node_names_both_find_the_peer() -> None:
    done = livemig(["guard", "--peer", "salt-node3.example.com", "--resource", "beijing", "--cib", CIB_EMPTY,
                    "--json"], FAKE_DRBDSETUP_STATUS="drbd9-status-json-derived-dual-primary.txt")
    assert done.returncode == 0 and json.loads(done.stdout)["allowed"] is True


@pytest.mark.parametrize("status, why", [
    ("drbd9-status-json-salt-beijing-primary.txt", "beijing: salt-node3 role is Secondary; needs Primary"),
    ("drbd9-status-json-derived-peer-inconsistent.txt",
     "beijing: volume 0: salt-node3 disk is Inconsistent; needs UpToDate"),
    ("drbd9-status-json-derived-disconnected.txt",
     "beijing: connection to salt-node3 is Connecting; needs Connected"),
])
def test_unsafe_peer_is_refused_with_the_reason(status: str, why: str) -> None:
    done = livemig(GUARD, FAKE_DRBDSETUP_STATUS=status)
    assert done.returncode == 1, done.stdout + done.stderr
    assert why in done.stdout.splitlines()


def test_fence_constraint_in_the_cib_is_refused() -> None:
    done = livemig(["guard", "--peer", "salt-node3", "--resource", "beijing", "--cib", CIB_FENCED],
                   FAKE_DRBDSETUP_STATUS="drbd9-status-json-derived-dual-primary.txt")
    assert done.returncode == 1
    assert "drbd-fence-by-handler-beijing-ms_drbd_beijing" in done.stdout


def test_tool_failure_is_undecided() -> None:
    done = livemig(GUARD + ["--json"], FAKE_DRBDSETUP_STATUS="drbd9-status-json-derived-dual-primary.txt",
                   FAKE_DRBDSETUP_EXIT="10")
    assert done.returncode == 2
    assert json.loads(done.stdout)["allowed"] is False


def test_hanging_tool_is_refused_within_the_bound() -> None:
    started = time.monotonic()
    done = livemig(GUARD + ["--timeout", "3"], timeout=30, FAKE_DRBD_HANG="drbdsetup")
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert "did not finish within" in done.stdout
    assert elapsed < 3 + 5  # the bound plus interpreter start-up, nowhere near the hung tool's 600 s


PROC84 = str(FIXTURES / "drbd84-proc-pacemaker-connected-primary-8.4.11.txt")


def test_drbd_8x_through_proc_and_drbdadm() -> None:
    done = livemig(["guard", "--peer", "node2", "--resource", "r1", "--cib", CIB_EMPTY],
                   LIVEMIG_PROC_DRBD=PROC84, FAKE_DRBDADM_MINORS="1=r1", FAKE_DRBDADM_PEER="node2")
    assert done.returncode == 1
    assert "r1: node2 role is Secondary (minor 1); needs Primary" in done.stdout.splitlines()


def test_drbd_8x_peer_is_another_node_refused() -> None:
    done = livemig(["guard", "--peer", "node2", "--resource", "r1", "--cib", CIB_EMPTY],
                   LIVEMIG_PROC_DRBD=PROC84, FAKE_DRBDADM_MINORS="1=r1", FAKE_DRBDADM_PEER="node3")
    assert done.returncode == 1
    assert "r1: no connection is named node2 among node3" in done.stdout


def test_drbd_8x_configured_minor_missing_from_proc_refused() -> None:
    done = livemig(["guard", "--peer", "node2", "--resource", "r1", "--cib", CIB_EMPTY, "--json"],
                   LIVEMIG_PROC_DRBD=PROC84, FAKE_DRBDADM_MINORS="1=r1 2=r1", FAKE_DRBDADM_PEER="node2")
    assert done.returncode == 1
    failed = [c for c in json.loads(done.stdout)["checks"] if not c["ok"]]
    assert {"resource": "r1", "check": "present", "ok": False,
            "detail": "minor 2 is not in /proc/drbd; needs every volume of the resource up (drbdadm up r1)"} in failed


def test_drbd_8x_unknown_resource_is_undecided() -> None:
    done = livemig(["guard", "--peer", "node2", "--resource", "r7", "--cib", CIB_EMPTY],
                   LIVEMIG_PROC_DRBD=PROC84, FAKE_DRBDADM_MINORS="1=r1", FAKE_DRBDADM_PEER="node2")
    assert done.returncode == 2
    assert "'r7' not defined in your config (for this host)" in done.stdout


def test_drbd_status_json() -> None:
    done = livemig(["drbd", "status", "--json"], FAKE_DRBDSETUP_STATUS="drbd9-status-json-derived-dual-primary.txt")
    assert done.returncode == 0
    assert json.loads(done.stdout)["resources"][0]["peers"][0]["role"] == "Primary"


def test_bad_usage_is_exit_2_without_traceback() -> None:
    done = livemig(["guard", "--resource", "beijing"])
    assert done.returncode == 2
    assert "--peer" in done.stderr and "Traceback" not in done.stderr
