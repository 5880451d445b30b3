"""libvirt checks: can this node reach the target's libvirtd, is the config file there?

The URI tested is the one migrate_to migrates to: the resource's parameters
read by the agent's own rules and planned by the agent's own function
(:func:`livemig.virt.migration_plan.plan_migration`), never derived here.
The connection test opens it with one bounded libvirt call (the same call a
migration starts with) and closes it. Whether the domain's config
file exists on the target cannot be seen through libvirt, and livemig does not
log in to other nodes by itself: that row is always a warning saying how to
check it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Tuple, cast

from livemig.check.model import LAYER_LIBVIRT, CheckResult, Fix, fail, ok, unknown, warn
from livemig.ocf.deadline import Deadline

#: The most one connection attempt may take.
CONNECT_TIMEOUT = 10.0

#: (uri, deadline) -> None, raising on failure.
Connector = Callable[[str, Deadline], None]
#: (deadline) -> the local libvirtd's URI (libvirt's default, resolved), raising on failure.
LocalUri = Callable[[Deadline], str]
#: What libvirt's default URI is for root on a QEMU/KVM host, assumed when it may not be asked.
ASSUMED_DEFAULT_URI = "qemu:///system"


class LibvirtUnavailable(Exception):
    """libvirt-python cannot be imported here."""


@dataclass(frozen=True)
class TargetUri:
    """The target's libvirt URI as migrate_to plans it; ``problem``: the row saying why none can be told."""

    uri: Optional[str]
    stream: Optional[str] = None
    problem: Optional[CheckResult] = None
    #: how the URI was found, when not simply from the resource's parameters
    note: str = ""
    #: planned from the resource's parameters, as migrate_to plans it (False: given with --peer-uri)
    planned: bool = True


def agent_values(params: Mapping[str, str]) -> Mapping[str, Any]:
    """The resource's instance attributes as the agent reads them (its meta-data's rules).

    ConfigurationError when the agent would refuse them.
    """
    from livemig.agents.virtualdomain.metadata import METADATA

    return METADATA.parse_params(dict(params))


def migration_uris(node: str, values: Mapping[str, Any], local_uri: str) -> Tuple[str, Optional[str]]:
    """(the URI of ``node``'s libvirtd, the migration stream's URI or None) exactly as migrate_to plans them.

    ``values``: :func:`agent_values`; ``local_uri`` is the local libvirtd's URI
    (the ``hypervisor`` parameter, or what libvirt's default resolves to).
    InvalidSetting (virt/'s) when the agent would refuse them.
    """
    from livemig.virt.migration_plan import plan_migration
    from livemig.virt.options import check_uri

    plan = plan_migration("check", node, values, local_uri, persistent=False)
    check_uri(cast(Optional[str], values["hypervisor"]))  # after the plan, as the agent checks them
    stream = plan.params.get("migrate_uri")
    return plan.dest_uri, str(stream) if stream is not None else None


def local_default_uri(deadline: Deadline) -> str:
    """What libvirt's default URI resolves to on this node (a bounded connection to the local libvirtd)."""
    try:
        from livemig.virt.connection import Hypervisor
    except ImportError as exc:  # libvirt-python not installed
        raise LibvirtUnavailable(str(exc)) from None
    try:
        hypervisor = Hypervisor(None, deadline, call_cap=CONNECT_TIMEOUT)
    except ImportError as exc:
        raise LibvirtUnavailable(str(exc)) from None
    try:
        return hypervisor.open().actual_uri()
    finally:
        hypervisor.close()


def target_uri(node: str, params: Mapping[str, str], *, deadline: Deadline, template: Optional[str] = None,
               local_uri: Optional[LocalUri] = None, skip_connect: bool = False,
               virtual_domain: bool = True) -> TargetUri:
    """The URI migrate_to would migrate ``node``'s way to (``template``, ``--peer-uri``, instead when given).

    ``virtual_domain``: the resource is a VirtualDomain (livemig's, or
    heartbeat's, whose parameters mean the same); of anything else the URI is not known.

    With ``hypervisor`` unset the agent uses what libvirt's default URI
    resolves to here: ``local_uri`` (default :func:`local_default_uri`) asks
    the local libvirtd, except with ``skip_connect``, where qemu:///system is assumed.
    """
    if template:
        return TargetUri(template.replace("%n", node), note="--peer-uri, not the resource's parameters",
                         planned=False)
    if not virtual_domain:
        return TargetUri(None, problem=warn(
            LAYER_LIBVIRT, "peer-uri", "the VM resource is not a VirtualDomain: the URI its migration would use "
            "is not known", Fix("name the target's URI with --peer-uri URI"), node))
    from livemig.ocf.errors import ConfigurationError
    from livemig.virt.errors import InvalidSetting

    try:
        values = agent_values(params)
    except ConfigurationError as exc:
        return _refused(node, exc)
    local = values["hypervisor"] or None
    note = ""
    if local is None and skip_connect:
        local = ASSUMED_DEFAULT_URI
        note = f"hypervisor unset: libvirt's default URI assumed to be {ASSUMED_DEFAULT_URI}"
    elif local is None:
        bounded = deadline.sub() if deadline.remaining() <= CONNECT_TIMEOUT else Deadline(CONNECT_TIMEOUT)
        try:
            local = (local_uri or local_default_uri)(bounded)
        except Exception as exc:  # noqa: BLE001 - any failure to ask is the finding
            return TargetUri(None, problem=unknown(
                LAYER_LIBVIRT, "peer-uri", f"the resource leaves hypervisor unset, and what libvirt's default URI "
                f"is on this node cannot be read: {exc}", Fix("set hypervisor=qemu:///system on the resource, or "
                                                             "run livemig check where libvirtd runs"), node))
        note = f"hypervisor unset: libvirt's default URI here is {local}"
    try:
        uri, stream = migration_uris(node, values, str(local))
    except (ConfigurationError, InvalidSetting) as exc:
        return _refused(node, exc)
    return TargetUri(uri, stream, note=note)


def _refused(node: str, exc: Exception) -> TargetUri:
    return TargetUri(None, problem=fail(
        LAYER_LIBVIRT, "peer-uri", f"migrate_to would refuse to migrate to {node}: {exc}",
        Fix("correct the resource's parameter named there (crm configure edit, or pcs resource update)"), node))


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
                  skip_connect: bool = False, target: Optional[TargetUri] = None) -> List[CheckResult]:
    """The peer-uri and config-on-target rows; ``target`` (from :func:`target_uri`) says how ``uri`` was found."""
    results: List[CheckResult] = []
    if target is not None and target.problem is not None:
        results.append(target.problem)
    elif skip_connect:
        results.append(warn(LAYER_LIBVIRT, "peer-uri", f"{uri or 'the target'}: not checked (--skip-libvirt)"
                            + _detail(target), Fix(f"virsh -c {uri or 'URI'} version"), peer or ""))
    elif peer is None or uri is None:
        results.append(unknown(LAYER_LIBVIRT, "peer-uri", "the target node is not known",
                               Fix("name it with --peer NODE")))
    else:
        results.append(_connect(peer, uri, deadline, connect or open_and_close, target))
    where = peer or "the target"
    path = config_path or "the domain's config file"
    results.append(warn(LAYER_LIBVIRT, "config-on-target",
                        f"{path} on {where}: not checked (livemig does not log in to other nodes)",
                        Fix(f"ssh {where} test -r {path} && echo present; keep it identical on both nodes "
                            "(e.g. on shared storage, or copied when changed)"), peer or ""))
    return results


def _detail(target: Optional[TargetUri]) -> str:
    if target is None:
        return ""
    parts = [target.note] if target.note else []
    if target.stream:
        parts.append(f"the migration stream goes to {target.stream}")
    return f" ({'; '.join(parts)})" if parts else ""


def _connect(peer: str, uri: str, deadline: Deadline, connect: Connector, target: Optional[TargetUri]) -> CheckResult:
    fix = Fix(f"make `virsh -c {uri} version` work from this node as root (libvirtd running on {peer}; "
              "for qemu+ssh, root's SSH key accepted without a prompt)")
    bounded = deadline.sub() if deadline.remaining() <= CONNECT_TIMEOUT else Deadline(CONNECT_TIMEOUT)
    try:
        connect(uri, bounded)
    except LibvirtUnavailable as exc:
        return unknown(LAYER_LIBVIRT, "peer-uri", f"cannot try {uri}: libvirt-python is missing ({exc})",
                       Fix("install python3-libvirt"), peer)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the finding
        return fail(LAYER_LIBVIRT, "peer-uri", f"cannot connect to {uri}: {exc}" + _detail(target), fix, peer)
    uses = ", the URI migrate_to uses" if target is not None and target.planned else ""
    return ok(LAYER_LIBVIRT, "peer-uri", f"connected to {uri}{uses}" + _detail(target), peer)
