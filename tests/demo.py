"""`make demo`: the agent's lifecycle against a real VM on a private, local libvirtd.

Starts a libvirtd for this run only (tests/support/libvirtd.py), builds or reuses
the tiny test guest, writes its domain XML to a file, and runs
agents/VirtualDomain as Pacemaker would (a subprocess, OCF environment):
validate-all, a probe, start, monitor, stop, and a last probe. Prints what
each action returned, how long it took, and what libvirt and the guest saw.
Leaves nothing behind. Exit status 0 when every action gave the expected code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

from tests.support import guest
from tests.support.agent import AGENT, AgentResult, ocf_env, run_agent
from tests.support.libvirtd import LibvirtDaemon, LibvirtdError

NAME = "livemig-demo"


def say(text: str = "") -> None:
    print(text, flush=True)


def domstate(daemon: LibvirtDaemon) -> str:
    proc = subprocess.run(["virsh", "-q", "-c", daemon.uri, "domstate", "--reason", NAME],
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "not defined"


def report(step: str, res: AgentResult, expected: int, note: str = "") -> bool:
    ok = res.code == expected
    mark = "ok " if ok else "UNEXPECTED"
    say(f"  {mark} {step:<28} -> {res.code} ({res.meaning}) in {res.elapsed:5.2f}s"
        + (f"   [expected {expected}]" if not ok else ""))
    for reason in res.exit_reasons:
        say(f"      exit reason: {reason}")
    if note:
        say(f"      {note}")
    if not ok:
        for line in res.stderr.strip().splitlines()[-8:]:
            say(f"      | {line}")
    return ok


def main() -> int:
    say("livemig demo: ocf:livemig:VirtualDomain against a real VM\n")
    started = time.monotonic()
    t = time.monotonic()
    try:
        image = guest.ensure_guest_image()
    except guest.GuestError as exc:
        say(f"cannot build the test guest: {exc}")
        return 1
    say(f"guest image   {image.kernel.parent}  (kernel {image.kernel_release}, {time.monotonic() - t:.1f}s)")

    daemon = LibvirtDaemon()
    workdir = Path(tempfile.mkdtemp(prefix="livemig-demo-"))
    results: List[bool] = []
    try:
        t = time.monotonic()
        try:
            daemon.setup()
        except LibvirtdError as exc:
            say(f"cannot start the demo libvirtd: {exc}")
            return 1
        say(f"libvirtd      {daemon.uri}  (private namespace, ready in {time.monotonic() - t:.1f}s)")
        config = workdir / f"{NAME}.xml"
        console = workdir / f"{NAME}.console.log"
        config.write_text(guest.domain_xml(NAME, image, console_log=console))
        say(f"config        {config}  (128 MiB, TCG, kernel + busybox initramfs)")
        say(f"agent         {AGENT}\n")

        params = {"config": str(config), "hypervisor": daemon.uri}
        extra = {"HA_RSCTMP": str(workdir / "rsctmp")}

        def act(action: str, interval: Optional[int] = None) -> AgentResult:
            env = ocf_env(params, instance=NAME, timeout_ms=30000, interval_ms=interval, extra=extra)
            return run_agent(action, env)

        steps: List[Tuple[str, str, Optional[int], int]] = [
            ("validate-all", "validate-all", None, 0),
            ("probe (monitor, interval 0)", "monitor", 0, 7),
            ("start", "start", None, 0),
            ("monitor (interval 10s)", "monitor", 10000, 0),
        ]
        for label, action, interval, expected in steps:
            res = act(action, interval)
            note = f"libvirt: {domstate(daemon)}" if action in ("start", "monitor") else ""
            results.append(report(label, res, expected, note))

        try:
            waited = guest.wait_for_console(console, guest.READY, 60)
            say(f"      guest userspace up {waited:.1f}s later (console marker {guest.READY})")
        except guest.GuestError as exc:
            say(f"      {exc}")

        res = act("stop")
        log = daemon.qemu_log(NAME).read_text(errors="replace") if daemon.qemu_log(NAME).exists() else ""
        how = "the guest powered itself off (ACPI)" if "reason=shutdown" in log else \
              "destroyed" if "reason=destroyed" in log else "?"
        results.append(report("stop", res, 0, f"libvirt: {domstate(daemon)}; how: {how}"))
        results.append(report("probe (monitor, interval 0)", act("monitor", 0), 7))
        say("\nguest console:")
        for line in guest.console_tail(console, 2000).strip().splitlines():
            say(f"  | {line}")
    finally:
        t = time.monotonic()
        daemon.teardown()
        shutil.rmtree(workdir, ignore_errors=True)
        say(f"\nteardown      libvirtd, virtlogd and QEMU stopped, namespace and files removed "
            f"({time.monotonic() - t:.1f}s)")
    verdict = "all actions returned the expected codes" if all(results) else "SOME ACTIONS RETURNED UNEXPECTED CODES"
    say(f"done in {time.monotonic() - started:.1f}s: {verdict}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("make demo needs root (it runs libvirtd and QEMU)", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
