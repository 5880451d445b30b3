"""libvirt checks: can this node reach the target's libvirtd, is the config file there?

The connection test opens the peer's URI with one bounded libvirt call (the
same call a migration starts with) and closes it. Whether the domain's config
file exists on the target cannot be seen through libvirt, and livemig does not
log in to other nodes by itself: that row is always a warning saying how to
check it by hand.
"""

from __future__ import annotations

from typing import Callable, List, Mapping, Optional

from livemig.check.model import LAYER_LIBVIRT, CheckResult, Fix, fail, ok, unknown, warn
from livemig.ocf.deadline import Deadline

#: The most one connection attempt may take.
CONNECT_TIMEOUT = 10.0

#: (uri, deadline) -> None, raising on failure.
Connector = Callable[[str, Deadline], None]


class LibvirtUnavailable(Exception):
    """libvirt-python cannot be imported here."""


def peer_uri(node: str, params: Mapping[str, str], template: Optional[str] = None) -> str:
    """The URI of ``node``'s libvirtd as the VM's resource would reach it.

    ``template`` (or the resource's ``remoteuri``) may hold ``%n`` for the node
    name; otherwise ``qemu+<migration_transport or ssh>://[<migration_user>@]<node>/system``.
    """
    chosen = template or params.get("remoteuri") or ""
    if chosen:
        return chosen.replace("%n", node)
    transport = params.get("migration_transport") or "ssh"
    user = params.get("migration_user")
    host = f"{user}@{node}" if user else node
    return f"qemu+{transport}://{host}/system"


def open_and_close(uri: str, deadline: Deadline) -> None:
    """Open ``uri`` with a bounded libvirt call and close it again."""
    try:
        from livemig.virt.connection import Hypervisor
    except ImportError as exc:  # libvirt-python not installed
        raise LibvirtUnavailable(str(exc)) from None
    try:
        hypervisor = Hypervisor(uri, deadline, call_cap=CONNECT_TIMEOUT)
    except ImportError as exc:
        raise LibvirtUnavailable(str(exc)) from None
    try:
        hypervisor.open()
    finally:
        hypervisor.close()


def check_libvirt(peer: Optional[str], uri: Optional[str], config_path: Optional[str], *,
                  deadline: Deadline, connect: Optional[Connector] = None,
                  skip_connect: bool = False) -> List[CheckResult]:
    results: List[CheckResult] = []
    if skip_connect:
        results.append(warn(LAYER_LIBVIRT, "peer-uri", f"{uri or 'the target'}: not checked (--skip-libvirt)",
                            Fix(f"virsh -c {uri or 'URI'} version"), peer or ""))
    elif peer is None or uri is None:
        results.append(unknown(LAYER_LIBVIRT, "peer-uri", "the target node is not known",
                               Fix("name it with --peer NODE")))
    else:
        results.append(_connect(peer, uri, deadline, connect or open_and_close))
    where = peer or "the target"
    path = config_path or "the domain's config file"
    results.append(warn(LAYER_LIBVIRT, "config-on-target",
                        f"{path} on {where}: not checked (livemig does not log in to other nodes)",
                        Fix(f"ssh {where} test -r {path} && echo present; keep it identical on both nodes "
                            "(e.g. on shared storage, or copied when changed)"), peer or ""))
    return results


def _connect(peer: str, uri: str, deadline: Deadline, connect: Connector) -> CheckResult:
    fix = Fix(f"make `virsh -c {uri} version` work from this node as root (libvirtd running on {peer}; "
              "for qemu+ssh, root's SSH key accepted without a prompt)")
    bounded = deadline.sub() if deadline.remaining() <= CONNECT_TIMEOUT else Deadline(CONNECT_TIMEOUT)
    try:
        connect(uri, bounded)
    except LibvirtUnavailable as exc:
        return unknown(LAYER_LIBVIRT, "peer-uri", f"cannot try {uri}: libvirt-python is missing ({exc})",
                       Fix("install python3-libvirt"), peer)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the finding
        return fail(LAYER_LIBVIRT, "peer-uri", f"cannot connect to {uri}: {exc}", fix, peer)
    return ok(LAYER_LIBVIRT, "peer-uri", f"connected to {uri}", peer)
