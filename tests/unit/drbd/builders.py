"""Builders for DRBD states in the tools' own formats (DRBD 9 JSON, 8.x /proc/drbd)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from livemig.drbd.proc import ProcDrbd, parse_proc_drbd
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.run import CommandRunner

MISSING = object()  # a key drbdsetup did not print

SAFE9: Dict[str, Any] = {
    "role": "Primary", "suspended": False, "disk": "UpToDate", "quorum": True,
    "connection": "Connected", "peer_role": "Primary", "replication": "Established",
    "peer_disk": "UpToDate", "out_of_sync": 0,
}


def _put(target: Dict[str, Any], key: str, value: Any) -> None:
    if value is not MISSING:
        target[key] = value


def status9_doc(name: str = "r0", peer: str = "beta", volumes: Sequence[int] = (0,),
                peers: Optional[List[Dict[str, Any]]] = None, **state: Any) -> List[Dict[str, Any]]:
    """A drbdsetup status --json document for one resource (fields as in drbd-utils 9.6+)."""
    s = dict(SAFE9, **state)
    res: Dict[str, Any] = {"name": name, "node-id": 0}
    _put(res, "role", s["role"])
    _put(res, "suspended", s["suspended"])
    res["write-ordering"] = "flush"
    devices = []
    for vol in volumes:
        dev: Dict[str, Any] = {"volume": vol, "minor": vol + 10}
        _put(dev, "disk-state", s["disk"])
        dev["client"] = False
        _put(dev, "quorum", s["quorum"])
        devices.append(dev)
    res["devices"] = devices
    if peers is None:
        conn: Dict[str, Any] = {"peer-node-id": 1, "name": peer}
        _put(conn, "connection-state", s["connection"])
        _put(conn, "peer-role", s["peer_role"])
        pds = []
        for vol in volumes:
            pd: Dict[str, Any] = {"volume": vol}
            _put(pd, "replication-state", s["replication"])
            _put(pd, "peer-disk-state", s["peer_disk"])
            _put(pd, "out-of-sync", s["out_of_sync"])
            pds.append(pd)
        conn["peer_devices"] = pds
        peers = [conn]
    res["connections"] = peers
    return [res]


def status9(**kwargs: Any) -> str:
    return json.dumps(status9_doc(**kwargs), indent=2)


def proc8_line(minor: int = 0, cs: str = "Connected", role: str = "Primary", peer_role: str = "Primary",
               disk: str = "UpToDate", peer_disk: str = "UpToDate", flags: str = "r-----",
               oos: Optional[int] = 0, protocol: str = "C") -> str:
    line = f" {minor}: cs:{cs} ro:{role}/{peer_role} ds:{disk}/{peer_disk} {protocol} {flags}\n"
    if oos is not None:
        line += f"    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:{oos}\n"
    return line


def proc8(*lines: str, version: str = "8.4.11-1") -> str:
    head = f"version: {version} (api:1/proto:86-101)\nGIT-hash: 0 build by tests, 2018-04-26 12:10:42\n"
    return head + "".join(lines)


def dump_xml84(res: str = "r0", minors: Sequence[int] = (0,), hosts: Sequence[str] = ("alpha", "beta")) -> str:
    """``drbdadm -v dump-xml RES`` as drbdadm-84 prints it (drbd-utils user/v84, dump_host_info_xml)."""
    def host(i: int, name: str) -> str:
        vols = "".join(
            f'        <volume vnr="{vnr}">\n'
            f'            <device minor="{minor}">/dev/drbd{minor}</device>\n'
            f"            <disk>/dev/vg/{res}-{vnr}</disk>\n"
            "            <meta-disk>internal</meta-disk>\n"
            "        </volume>\n"
            for vnr, minor in enumerate(minors))
        return (f'    <host name="{name}">\n{vols}'
                f'        <address family="ipv4" port="7788">10.0.0.{i + 1}</address>\n    </host>\n')
    return (f'<resource name="{res}" conf-file-line="/etc/drbd.d/{res}.res:1">\n'
            + "".join(host(i, h) for i, h in enumerate(hosts))
            + '    <section name="net">\n        <option name="protocol" value="C"/>\n'
              '        <option name="allow-two-primaries" value="yes"/>\n    </section>\n'
              '    <section name="disk">\n        <option name="fencing" value="resource-and-stonith"/>\n'
              "    </section>\n</resource>\n")


def drbd8_answers(res: str = "r0", minors: Sequence[int] = (0,),
                  hosts: Sequence[str] = ("alpha", "beta")) -> Dict[str, Any]:
    """ScriptedRunner answers for DRBD's 8.x configuration of ``res``: its minors here, its hosts."""
    return {f"drbdadm sh-minor {res}": (0, "".join(f"{m}\n" for m in minors)),
            f"drbdadm -v dump-xml {res}": (0, dump_xml84(res, minors, hosts))}


class TextProcReader(DrbdReader):
    """A DrbdReader whose /proc/drbd is the given text (None: the file is absent), on node ``alpha``.

    udev's by-res links are read from ``by_res_dir`` (default: none).
    """

    def __init__(self, runner: CommandRunner, deadline: Deadline, proc_text: Optional[str],
                 node_name: str = "alpha", by_res_dir: str = "/nonexistent/by-res") -> None:
        super().__init__(runner, deadline, by_res_dir=by_res_dir)
        self._node_name = node_name
        self._proc_text = proc_text

    def read_proc(self) -> Optional[ProcDrbd]:
        return None if self._proc_text is None else parse_proc_drbd(self._proc_text)


PROC9 = "version: 9.2.5 (api:2/proto:86-122)\nGIT-hash: 0 build by tests\nTransports (api:20): tcp (9.2.5)\n"
