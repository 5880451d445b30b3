"""A test VM: one guest as a Pacemaker resource, with the agent bound to it.

Used by the integration tests through the ``make_vm``/``vm`` fixtures
(tests/integration/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from tests.support import guest
from tests.support.agent import AgentResult, ocf_env, run_agent
from tests.support.libvirtd import LibvirtDaemon

#: Default operation timeout given to the agent (Pacemaker passes milliseconds).
DEFAULT_TIMEOUT_MS = 30000


def safe_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[-40:]


class TestVM:
    """One guest as a resource: its config file, console log, and the agent bound to it."""

    __test__ = False  # not a test class

    def __init__(self, name: str, directory: Path, daemon: LibvirtDaemon, image: guest.GuestImage,
                 rsctmp: Path, **xml_options: Any) -> None:
        self.name = name
        self.daemon = daemon
        self.image = image
        self.rsctmp = rsctmp
        self.config = directory / f"{name}.xml"
        self.console = directory / f"{name}.console.log"
        self.xml = guest.domain_xml(name, image, console_log=self.console, **xml_options)
        self.config.write_text(self.xml)
        self.boot_offset = 0
        self.results: List[AgentResult] = []

    # -- the agent ------------------------------------------------------------------------
    def params(self, **overrides: str) -> Dict[str, str]:
        params = {"config": str(self.config), "hypervisor": self.daemon.uri}
        params.update(overrides)
        return params

    def env(self, *, timeout_ms: int = DEFAULT_TIMEOUT_MS, interval_ms: Optional[int] = None,
            params: Optional[Mapping[str, str]] = None, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        merged = self.params(**(params or {}))
        more = {"HA_RSCTMP": str(self.rsctmp)}
        more.update(extra or {})
        return ocf_env(merged, instance=self.name, timeout_ms=timeout_ms, interval_ms=interval_ms, extra=more)

    def run(self, action: str, *, timeout_ms: int = DEFAULT_TIMEOUT_MS, probe: bool = False,
            interval_ms: Optional[int] = None, params: Optional[Mapping[str, str]] = None,
            extra: Optional[Mapping[str, str]] = None) -> AgentResult:
        """Run ``action``; a monitor is recurring (10 s) unless ``probe``."""
        if action == "monitor" and interval_ms is None:
            interval_ms = 0 if probe else 10000
        if action == "start":
            self.boot_offset = self.console_size()
        result = run_agent(action, self.env(timeout_ms=timeout_ms, interval_ms=interval_ms,
                                            params=params, extra=extra))
        self.results.append(result)
        return result

    # -- what the guest does ----------------------------------------------------------------
    def console_size(self) -> int:
        try:
            return self.console.stat().st_size
        except FileNotFoundError:
            return 0

    def console_text(self, since: int = 0) -> str:
        try:
            with open(self.console, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for the guest's userspace (acpid included) of the latest boot."""
        return guest.wait_for_console(self.console, guest.READY, timeout, since=self.boot_offset)

    def qemu_pid(self) -> Optional[int]:
        """From /proc: usable while libvirtd is frozen or stopped."""
        return self.daemon.qemu_pid(self.name)

    def qemu_log(self) -> str:
        try:
            return self.daemon.qemu_log(self.name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def last_stop_reason(self) -> Optional[str]:
        """From libvirt's QEMU log: 'shutdown' (the guest powered off), 'destroyed', 'crashed', ..."""
        found = re.findall(r"shutting down, reason=(\w+)", self.qemu_log())
        return found[-1] if found else None

    def domain(self) -> Any:
        """The libvirt domain via the test's own connection, or None (not while frozen)."""
        import libvirt

        try:
            return self.daemon.connect().lookupByName(self.name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def state(self) -> Optional[List[int]]:
        dom = self.domain()
        return None if dom is None else list(dom.state())

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{self.name}: not {what} within {timeout:.0f}s")
            time.sleep(0.05)
        return time.monotonic() - started

    def cleanup(self) -> None:
        """Destroy and undefine whatever is left of the domain (libvirtd must be up)."""
        import libvirt

        with contextlib.suppress(libvirt.libvirtError):
            dom = self.domain()
            if dom is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
        pid = self.qemu_pid()
        if pid is not None:  # libvirtd lost track of it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


MakeVM = Callable[..., TestVM]
