"""The tiny test guest: its image (built once by tests/guest/build-guest) and its domain XML.

    image = ensure_guest_image()
    xml = domain_xml("lmt-1", image, acpi_behaviour="ignore", console_log=path)

The guest prints markers on its serial console, which libvirt writes to
``console_log``: :data:`READY` once userspace (and acpid) is up,
:data:`ACPI_BUTTON` when it sees the power button, :data:`POWEROFF` right before
powering off. :func:`wait_for_console` waits for one (bounded, polling the file).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from xml.sax.saxutils import escape, quoteattr

BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "guest" / "build-guest"
BUILD_TIMEOUT = 900.0

READY = "LIVEMIG-GUEST-READY"
ACPI_BUTTON = "LIVEMIG-GUEST-ACPI-BUTTON"
POWEROFF = "LIVEMIG-GUEST-POWEROFF"
KERNEL_POWER_DOWN = "reboot: Power down"

ACPI_BEHAVIOURS = ("poweroff", "ignore", "hang")


class GuestError(RuntimeError):
    pass


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    key: str
    kernel_release: str


_cached: Optional[GuestImage] = None


def ensure_guest_image() -> GuestImage:
    """Build the guest if its inputs changed since the cached build; return its files.

    ``LIVEMIG_GUEST_MANIFEST`` names the manifest.json of a guest built elsewhere (the host's,
    for the tests that run inside a Debian 13 root): that image is used as it is."""
    global _cached
    if _cached is not None and _cached.kernel.exists() and _cached.initrd.exists():
        return _cached
    given = os.environ.get("LIVEMIG_GUEST_MANIFEST")
    if given:
        try:
            manifest = json.loads(Path(given).read_text())
        except (OSError, ValueError) as exc:
            raise GuestError(f"LIVEMIG_GUEST_MANIFEST={given}: {exc}") from None
        _cached = _image(manifest)
        return _cached
    try:
        proc = subprocess.run(
            ["/usr/bin/python3", str(BUILD_SCRIPT)], stdin=subprocess.DEVNULL,
            capture_output=True, timeout=BUILD_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        raise GuestError(f"{BUILD_SCRIPT} did not finish within {BUILD_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        raise GuestError(f"{BUILD_SCRIPT} failed: {proc.stderr.decode(errors='replace').strip()}")
    _cached = _image(json.loads(proc.stdout))
    return _cached


def _image(manifest: dict) -> GuestImage:
    return GuestImage(
        kernel=Path(manifest["kernel"]),
        initrd=Path(manifest["initrd"]),
        key=manifest["key"],
        kernel_release=manifest["kernel_release"],
    )


def kernel_cmdline(acpi_behaviour: str = "poweroff", dirty_mib_s: float = 0, extra: str = "") -> str:
    """The guest kernel command line for a behaviour.

    ``acpi_behaviour``: ``poweroff`` (answers the power button), ``ignore`` (no
    acpid: the button does nothing), ``hang`` (acpid sees the button, the guest
    never powers off), or ``delay:N`` (powers off N seconds after the button).
    """
    args = ["console=ttyS0", "quiet", "panic=-1"]
    if acpi_behaviour == "ignore":
        args.append("livemig.acpi=ignore")
    elif acpi_behaviour == "hang":
        args.append("livemig.shutdown=hang")
    elif acpi_behaviour.startswith("delay:"):
        args.append(f"livemig.shutdown_delay={int(acpi_behaviour.split(':', 1)[1])}")
    elif acpi_behaviour != "poweroff":
        raise ValueError(f"unknown acpi_behaviour {acpi_behaviour!r}")
    if dirty_mib_s:
        args.append(f"livemig.dirty_mib_s={dirty_mib_s:g}")
    if extra:
        args.append(extra)
    return " ".join(args)


def domain_xml(
    name: str,
    image: GuestImage,
    *,
    acpi_behaviour: str = "poweroff",
    memory_mib: int = 128,
    extra_cmdline: str = "",
    console_log: Optional[Path] = None,
    dirty_mib_s: float = 0,
    uuid: Optional[str] = None,
) -> str:
    """Domain XML for the test guest under TCG (``type='qemu'``: KVM hangs nested Linux here).

    Without ``console_log`` the serial console goes nowhere (a ``null`` device).
    No disk, network, graphics, USB or balloon: only what the tests need, so it boots fast.
    """
    cmdline = kernel_cmdline(acpi_behaviour, dirty_mib_s, extra_cmdline)
    if console_log is not None:
        serial = (
            "<serial type='file'>"
            f"<source path={quoteattr(str(console_log))} append='on'/><target port='0'/></serial>"
        )
    else:
        serial = "<serial type='null'><target port='0'/></serial>"
    uuid_xml = f"<uuid>{escape(uuid)}</uuid>" if uuid else ""
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  {uuid_xml}
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel>
    <initrd>{escape(str(image.initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {serial}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def wait_for_console(log: Path, marker: str, timeout: float, since: int = 0) -> float:
    """Wait until ``marker`` appears in ``log`` (after byte offset ``since``); return the wait.

    Raises :class:`GuestError` with the log's tail if it does not appear in time.
    """
    log = Path(log)
    started = time.monotonic()
    deadline = started + timeout
    needle = marker.encode()
    while True:
        try:
            with open(log, "rb") as f:
                f.seek(since)
                if needle in f.read():
                    return time.monotonic() - started
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            raise GuestError(f"{marker!r} not on the console {log} within {timeout:.0f}s: ...{console_tail(log)}")
        time.sleep(0.05)


def console_tail(log: Path, chars: int = 600) -> str:
    try:
        return Path(log).read_bytes()[-chars:].decode(errors="replace")
    except OSError:
        return "(no console log)"
