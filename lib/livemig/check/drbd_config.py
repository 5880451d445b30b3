"""DRBD configuration checks over ``drbdadm -v dump-xml`` output.

What dual-primary live migration needs from each DRBD resource:

- ``allow-two-primaries``: 8.3 writes it as a bare flag (``allow-two-primaries;``,
  dumped as an option without a value), 8.4 as ``allow-two-primaries yes;``, DRBD 9 as a
  net option of the resource or of each ``connection`` (which -v folds the resource's in);
- protocol C (8.3 dumps it as the resource's ``protocol`` attribute);
- fencing ``resource-and-stonith`` (a ``disk`` option in 8.x, ``net`` in 9) with the
  Pacemaker handlers: ``fence-peer`` crm-fence-peer.sh / crm-fence-peer.9.sh and the
  unfence handler (``after-resync-target`` crm-unfence-peer.sh on 8.x; on 9
  ``unfence-peer`` crm-unfence-peer.9.sh, or ``after-resync-target`` as older guides do);
- ``become-primary-on both`` only with two primaries allowed;
- split-brain policies that do not discard a primary's writes on their own: with both
  nodes primary, an automatic discard throws away writes the VM believed were on disk.

The generation is told from the dump's shape: DRBD 9 always has ``<connection>``; 8.3
has ``<device>`` directly under ``<host>``; otherwise 8.4.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from livemig.check.model import LAYER_DRBD_CONFIG, CheckResult, Fix, fail, ok, warn
from livemig.drbd.config import ConnectionConfig, DrbdResourceConfig, parse_dump_xml
from livemig.drbd.state import DrbdStateError

#: Split-brain policies that resolve on their own by throwing one side's changes away.
#: ``discard-zero-changes`` only drops a side that wrote nothing, so it stays allowed.
SAFE_AFTER_SB = {
    "after-sb-0pri": ("disconnect", "discard-zero-changes"),
    "after-sb-1pri": ("disconnect",),
    "after-sb-2pri": ("disconnect",),
}


@dataclass(frozen=True)
class DrbdResourceView:
    """A resource's dumped configuration and what the shared parser leaves out."""

    config: DrbdResourceConfig
    generation: str  # "8.3", "8.4" or "9"
    protocol_attribute: Optional[str]
    conf_file: Optional[str]

    @property
    def name(self) -> str:
        return self.config.name

    def scopes(self) -> List[Tuple[str, Optional[ConnectionConfig]]]:
        """(label, connection) pairs where net options apply: each connection (9), or the resource (None).

        A connection is labelled by its peer when the resource has one connection ("connection to
        beta"), by both hosts when it has more (a mesh of three: "connection beta-tb").
        """
        if self.generation == "9" and self.config.connections:
            scopes: List[Tuple[str, Optional[ConnectionConfig]]] = []
            mesh = len(self.config.connections) > 1
            for conn in self.config.connections:
                if mesh and len(conn.hosts) == 2:
                    label = f"connection {conn.hosts[0]}-{conn.hosts[1]}"
                else:
                    peer = conn.name or (conn.hosts[-1] if conn.hosts else None)
                    label = f"connection to {peer or '?'}"
                scopes.append((label, conn))
            return scopes
        return [("", None)]

    def option(self, section: str, name: str, conn: Optional[ConnectionConfig] = None) -> Optional[str]:
        """An option's value in ``conn``'s own section, else the resource's (-v folds common in)."""
        if conn is not None and name in conn.sections.get(section, {}):
            return conn.sections[section][name]
        return self.config.sections.get(section, {}).get(name)

    def fencing(self, conn: Optional[ConnectionConfig] = None) -> Optional[str]:
        """The fencing policy: a net option in DRBD 9, a disk option in 8.x."""
        return self.option("net", "fencing", conn) or self.option("disk", "fencing", conn)

    def where(self) -> str:
        return f"in {self.conf_file}" if self.conf_file else "in the DRBD configuration"


def parse_views(text: str) -> Dict[str, DrbdResourceView]:
    """Resource name -> view. Raises :class:`DrbdStateError` if ``text`` is not a dump."""
    return {config.name: DrbdResourceView(config, config.dump_generation, config.protocol_attribute,
                                          config.conf_file)
            for config in parse_dump_xml(text)}


def _adjust(res: str) -> str:
    return f"then run `drbdadm adjust {res}` on both nodes"


def check_drbd_config(text: str, resources: Sequence[str],
                      rows: Optional[Callable[[DrbdResourceView], List[CheckResult]]] = None) -> List[CheckResult]:
    """The configuration checks for each of ``resources`` in the dump ``text``.

    ``rows``: the checks of one resource (default :func:`check_resource`, for both nodes
    Primary; ``drbd_two_primaries=migration`` has its own, :mod:`livemig.check.window`).
    """
    try:
        views = parse_views(text)
    except DrbdStateError as exc:
        return [fail(LAYER_DRBD_CONFIG, "drbd-config", f"drbdadm dump-xml output not understood: {exc}",
                     Fix("check `drbdadm -v dump-xml all` on this node"))]
    results: List[CheckResult] = []
    for res in resources:
        view = views.get(res)
        if view is None:
            results.append(fail(LAYER_DRBD_CONFIG, "drbd-config", f"{res} is not in the DRBD configuration",
                                Fix(f"define resource {res} in /etc/drbd.d/{res}.res on both nodes"), res))
            continue
        results += (rows or check_resource)(view)
    return results


def check_resource(view: DrbdResourceView) -> List[CheckResult]:
    results: List[CheckResult] = []
    results += _check_two_primaries(view)
    results += check_protocol_rows(view)
    results += _check_fencing(view)
    results += _check_handlers(view)
    results += check_after_sb(view)
    return results


def _scoped(label: str) -> str:
    return f" ({label})" if label else ""


def _two_primaries(view: DrbdResourceView, conn: Optional[ConnectionConfig]) -> Optional[str]:
    value = view.option("net", "allow-two-primaries", conn)
    if value == "":  # 8.3's bare flag
        return "yes"
    return value


def _check_two_primaries(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    results: List[CheckResult] = []
    allowed_everywhere = True
    for label, conn in view.scopes():
        value = _two_primaries(view, conn)
        if (value or "").strip().lower() in ("yes", "true"):
            results.append(ok(LAYER_DRBD_CONFIG, "allow-two-primaries",
                              f"allow-two-primaries {value}{_scoped(label)}", res))
            continue
        allowed_everywhere = False
        if view.generation == "8.3":
            option = "net { allow-two-primaries; }"
        elif view.generation == "9":
            option = "net { allow-two-primaries yes; } (in the resource, or in each connection section)"
        else:
            option = "net { allow-two-primaries yes; }"
        seen = f"allow-two-primaries {value}" if value else "allow-two-primaries not set (no)"
        results.append(fail(LAYER_DRBD_CONFIG, "allow-two-primaries",
                            f"{seen}{_scoped(label)}: the target cannot be Primary while the source is",
                            Fix(f"{view.where()}, resource {res}: {option}; {_adjust(res)}"), res))
    become = view.config.option("startup", "become-primary-on")
    if become is not None and become.strip() == "both" and not allowed_everywhere:
        results.append(fail(LAYER_DRBD_CONFIG, "become-primary-on",
                            "become-primary-on both without allow-two-primaries: the second promotion fails",
                            Fix(f"{view.where()}, resource {res}: remove `startup {{ become-primary-on both; }}` "
                                f"(Pacemaker promotes) and allow two primaries; {_adjust(res)}"), res))
    return results


def check_protocol_rows(view: DrbdResourceView, window: bool = False) -> List[CheckResult]:
    """``protocol`` per scope: C, else FAIL (``window``: WARN, the agent runs C for the migration only)."""
    res = view.name
    results: List[CheckResult] = []
    for label, conn in view.scopes():
        value = view.option("net", "protocol", conn) or view.protocol_attribute or \
            view.config.protocol_element
        if value == "C":
            results.append(ok(LAYER_DRBD_CONFIG, "protocol", f"protocol C{_scoped(label)}", res))
            continue
        option = "protocol C; (at resource level)" if view.generation == "8.3" else "net { protocol C; }"
        if window:
            results.append(warn(LAYER_DRBD_CONFIG, "protocol",
                                f"protocol {value or 'not set'}{_scoped(label)}: the agent runs protocol C on the "
                                "connection to the target for the migration only; outside it the peers' data "
                                "may lag, and a failover can lose the last writes",
                                Fix(f"{view.where()}, resource {res}: {option}; {_adjust(res)}"), res))
            continue
        results.append(fail(LAYER_DRBD_CONFIG, "protocol",
                            f"protocol {value or 'not set'}{_scoped(label)}: writes are not synchronous on "
                            "both nodes, so the target can read stale blocks",
                            Fix(f"{view.where()}, resource {res}: {option}; {_adjust(res)}"), res))
    return results


def _check_fencing(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    results: List[CheckResult] = []
    section = "net" if view.generation == "9" else "disk"
    for label, conn in view.scopes():
        value = view.fencing(conn)
        if value == "resource-and-stonith":
            results.append(ok(LAYER_DRBD_CONFIG, "fencing", f"fencing resource-and-stonith{_scoped(label)}", res))
            continue
        results.append(fail(LAYER_DRBD_CONFIG, "fencing",
                            f"fencing {value or 'not set (dont-care)'}{_scoped(label)}: after a split, both "
                            "primaries keep writing",
                            Fix(f"{view.where()}, resource {res}: {section} {{ fencing resource-and-stonith; }}; "
                                f"{_adjust(res)}"), res))
    return results


def _script(value: Optional[str]) -> Optional[str]:
    if not value or not value.split():
        return None
    return os.path.basename(value.split()[0])


def _check_handlers(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    handlers = view.config.sections.get("handlers", {})
    nine = view.generation == "9"
    fence_script = "crm-fence-peer.9.sh" if nine else "crm-fence-peer.sh"
    unfence_script = "crm-unfence-peer.9.sh" if nine else "crm-unfence-peer.sh"
    results: List[CheckResult] = []
    fence = _script(handlers.get("fence-peer"))
    if fence == fence_script:
        results.append(ok(LAYER_DRBD_CONFIG, "fence-peer-handler", f"fence-peer {handlers['fence-peer']}", res))
    else:
        seen = f"fence-peer is {handlers['fence-peer']}" if fence else "no fence-peer handler"
        results.append(fail(LAYER_DRBD_CONFIG, "fence-peer-handler",
                            f"{seen}; DRBD {view.generation} with Pacemaker needs {fence_script}",
                            Fix(f'{view.where()}, resource {res}: handlers {{ fence-peer '
                                f'"/usr/lib/drbd/{fence_script}"; }}; {_adjust(res)}'), res))
    unfence_keys = ("unfence-peer", "after-resync-target") if nine else ("after-resync-target",)
    found = [(key, handlers[key]) for key in unfence_keys if _script(handlers.get(key)) == unfence_script]
    if found:
        results.append(ok(LAYER_DRBD_CONFIG, "unfence-peer-handler", f"{found[0][0]} {found[0][1]}", res))
    else:
        key = unfence_keys[0]
        results.append(fail(LAYER_DRBD_CONFIG, "unfence-peer-handler",
                            f"no {key} handler running {unfence_script}: the fence constraint stays after "
                            "the resync and blocks promotion",
                            Fix(f'{view.where()}, resource {res}: handlers {{ {key} '
                                f'"/usr/lib/drbd/{unfence_script}"; }}; {_adjust(res)}'), res))
    return results


def check_after_sb(view: DrbdResourceView) -> List[CheckResult]:
    res = view.name
    results: List[CheckResult] = []
    for label, conn in view.scopes():
        risky: List[str] = []
        for option, safe in SAFE_AFTER_SB.items():
            value = view.option("net", option, conn) or "disconnect"
            if value not in safe:
                risky.append(f"{option} {value}")
        if not risky:
            results.append(ok(LAYER_DRBD_CONFIG, "after-sb",
                              f"split-brain policies discard nothing a primary wrote{_scoped(label)}", res))
            continue
        settings = " ".join(f"{opt.split()[0]} disconnect;" for opt in risky)
        results.append(warn(LAYER_DRBD_CONFIG, "after-sb",
                            f"{', '.join(risky)}{_scoped(label)}: with two primaries this discards a node's "
                            "writes automatically",
                            Fix(f"{view.where()}, resource {res}: net {{ {settings} }} and resolve split brains "
                                f"by hand; {_adjust(res)}"), res))
    return results
