"""An oracle for `livemig check`'s drbd-config rows under drbd_two_primaries=migration, written apart from livemig.

`dump_xml` writes what `drbdadm -v dump-xml` prints for one resource r0 (DRBD 9: hosts, a full
mesh of connections, option sections; 8.4: no connection elements); `expected_rows` says, from
the same case and without livemig's code, which rows (name, status) the check must give:

- drbd-9: ok on DRBD 9, fail otherwise;
- allow-two-primaries: one row per scope (each connection on 9, the resource on 8.4): fail where
  the scope says yes (the connection's own value, else the resource's), ok otherwise;
- protocol: per scope, ok for C, warn otherwise (the agent runs C for the window only);
- DRBD 9 only: auto-promote warn when "no"; quorum ok with 3 nodes and quorum on, else warn;
  on-no-quorum (only when quorum is on) ok for io-error, else warn; fence-peer-handler warn
  when a crm-fence-peer handler is configured (nothing otherwise);
- after-sb: per scope, ok (the dumps use safe policies).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple


@dataclass(frozen=True)
class Case:
    generation: str  # "8.4" or "9"
    a2p: str  # "unset", "no", "yes-resource", "yes-connection" (the last connection only: beta-tb of three)
    protocol: str  # "C" or "A"
    auto_promote: Optional[str]
    quorum: Optional[str]
    on_no_quorum: Optional[str]
    nodes: int  # 2, or 3 with "tb" diskless
    crm_handler: bool

    def hosts(self) -> List[str]:
        return ["alpha", "beta", "tb"][:self.nodes]


def cases() -> Iterator[Case]:
    for values in itertools.product(("8.4", "9"), ("unset", "no", "yes-resource", "yes-connection"), ("C", "A"),
                                    (None, "yes", "no"), (None, "off", "majority"), (None, "io-error", "suspend-io"),
                                    (2, 3), (False, True)):
        case = Case(*values)
        if case.generation == "8.4" and (case.a2p == "yes-connection" or case.nodes == 3):
            continue  # 8.4 has no connection sections and two nodes
        yield case


def _options(name: str, options: Dict[str, Optional[str]]) -> str:
    body = "".join(f'<option name="{k}" value="{v}"/>' for k, v in options.items() if v is not None)
    return f'<section name="{name}">{body}</section>'


def _host(name: str, diskless: bool) -> str:
    disk = "" if diskless else "/dev/vg/vm1"  # drbdadm 9 dumps `disk none;` as <disk></disk>
    return (f'<host name="{name}"><volume vnr="0"><device minor="0">/dev/drbd0</device><disk>{disk}</disk>'
            f'<meta-disk>internal</meta-disk></volume><address family="ipv4" port="7788">10.0.0.{len(name)}'
            '</address></host>')


def _last_pair(case: Case) -> Tuple[str, str]:
    return list(itertools.combinations(case.hosts(), 2))[-1]


def dump_xml(case: Case) -> str:
    hosts = case.hosts()
    parts = ['<resource name="r0" conf-file-line="/etc/drbd.d/r0.res:1">']
    parts += [_host(h, h == "tb") for h in hosts]
    if case.generation == "9":
        for a, b in itertools.combinations(hosts, 2):
            net: Dict[str, Optional[str]] = {"_name": b}
            if case.a2p == "yes-connection" and (a, b) == _last_pair(case):
                net["allow-two-primaries"] = "yes"
            parts.append(f'<connection><path><host name="{a}"/><host name="{b}"/></path>'
                         f'{_options("net", net)}</connection>')
    a2p = {"unset": None, "no": "no", "yes-resource": "yes", "yes-connection": None}[case.a2p]
    parts.append(_options("net", {"protocol": case.protocol, "allow-two-primaries": a2p,
                                  "after-sb-0pri": "discard-zero-changes", "after-sb-1pri": "disconnect",
                                  "after-sb-2pri": "disconnect"}))
    if case.generation == "9":
        parts.append(_options("options", {"auto-promote": case.auto_promote, "quorum": case.quorum,
                                          "on-no-quorum": case.on_no_quorum}))
    if case.crm_handler:
        handler = "crm-fence-peer.9.sh" if case.generation == "9" else "crm-fence-peer.sh"
        parts.append(_options("handlers", {"fence-peer": f"/usr/lib/drbd/{handler}"}))
    parts.append("</resource>")
    return "".join(parts)


def expected_rows(case: Case) -> List[Tuple[str, str]]:
    nine = case.generation == "9"
    scopes: List[Tuple[str, str]] = []
    if nine:
        scopes = list(itertools.combinations(case.hosts(), 2))
    else:
        scopes = [("", "")]
    rows = [("drbd-9", "ok" if nine else "fail")]
    for scope in scopes:
        yes = case.a2p == "yes-resource" or (case.a2p == "yes-connection" and scope == _last_pair(case))
        rows.append(("allow-two-primaries", "fail" if yes else "ok"))
    rows += [("protocol", "ok" if case.protocol == "C" else "warn") for _ in scopes]
    if nine:
        rows.append(("auto-promote", "warn" if case.auto_promote == "no" else "ok"))
        quorum_on = case.quorum == "majority"
        rows.append(("quorum", "ok" if quorum_on and case.nodes >= 3 else "warn"))
        if quorum_on:
            rows.append(("on-no-quorum", "ok" if case.on_no_quorum == "io-error" else "warn"))
        if case.crm_handler:
            rows.append(("fence-peer-handler", "warn"))
    rows += [("after-sb", "ok") for _ in scopes]
    return sorted(rows)
