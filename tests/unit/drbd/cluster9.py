"""A DRBD 9 resource on 2-4 nodes as this node sees it, rendered as drbdsetup prints it.

:class:`Local` is this node's view of one resource: its own role and disk,
and one :class:`Peer` per connection (the target first). ``status_json`` and
``show_json`` render it as ``drbdsetup status all --json --verbose
--statistics`` and ``drbdsetup show all --json --show-defaults`` (key sets as
in tests/fixtures/drbd: drbd9-status-json-*.txt, drbd9-show-json-*.txt), so
the guard reads it through its real parsers. Imports nothing from livemig.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

from tests.unit.drbd.builders import PROC9, TextProcReader
from tests.unit.drbd.scripted import ScriptedRunner, fixture

CIB_EMPTY = fixture("cib-synthetic-empty.xml")


@dataclass(frozen=True)
class Peer:
    name: str
    node_id: int
    client: bool = False            # an intentionally diskless node (a tiebreaker, or a diskless target)
    connected: bool = True
    role: str = "Secondary"
    disk: Optional[str] = None      # None: Diskless (client) / UpToDate (diskful) when connected, else DUnknown
    replication: Optional[str] = None  # None: Established when connected, else Off
    oos: int = 0
    allow_two_primaries: bool = False
    allow_remote_read: bool = True

    @property
    def disk_state(self) -> str:
        if self.disk is not None:
            return self.disk
        if not self.connected:
            return "DUnknown"
        return "Diskless" if self.client else "UpToDate"

    @property
    def replication_state(self) -> str:
        if self.replication is not None:
            return self.replication
        return "Established" if self.connected else "Off"

    @property
    def connection_state(self) -> str:
        return "Connected" if self.connected else "Connecting"

    @property
    def peer_role(self) -> str:
        return self.role if self.connected else "Unknown"


@dataclass(frozen=True)
class Local:
    peers: Tuple[Peer, ...]
    name: str = "r0"
    role: str = "Primary"
    disk: str = "UpToDate"
    quorum_flag: bool = True        # what drbdsetup status says of this node's quorum now
    suspended: bool = False
    quorum: Optional[str] = None    # options.quorum: None absent, "off", "majority", "all", "2"
    redundancy: Optional[str] = None  # options.quorum-minimum-redundancy
    auto_promote: bool = True
    volumes: Tuple[int, ...] = (0,)
    node_id: int = 0

    def with_target(self, **changes: Any) -> Local:
        return replace(self, peers=(replace(self.peers[0], **changes),) + self.peers[1:])


BETA = Peer("beta", 1)
GAMMA = Peer("gamma", 2)
TIEBREAKER = Peer("gamma", 2, client=True)


def status_doc(local: Local) -> List[Dict[str, Any]]:
    devices = [{"volume": v, "minor": 100 + v, "disk-state": local.disk, "client": local.disk == "Diskless",
                "quorum": local.quorum_flag, "size": 1024, "read": 0, "written": 0, "al-writes": 0,
                "bm-writes": 0, "upper-pending": 0, "lower-pending": 0} for v in local.volumes]
    connections = []
    for p in local.peers:
        pds = [{"volume": v, "replication-state": p.replication_state, "peer-disk-state": p.disk_state,
                "peer-client": p.client, "resync-suspended": "no", "received": 0, "sent": 0,
                "out-of-sync": p.oos, "pending": 0, "unacked": 0, "has-sync-details": False,
                "has-online-verify-details": False, "percent-in-sync": 100.0} for v in local.volumes]
        connections.append({"peer-node-id": p.node_id, "name": p.name, "connection-state": p.connection_state,
                            "congested": False, "peer-role": p.peer_role, "ap-in-flight": 0, "rs-in-flight": 0,
                            "peer_devices": pds})
    return [{"name": local.name, "node-id": local.node_id, "role": local.role, "suspended": local.suspended,
             "write-ordering": "flush", "devices": devices, "connections": connections}]


def show_doc(local: Local) -> List[Dict[str, Any]]:
    options: Dict[str, Any] = {"auto-promote": local.auto_promote, "on-no-quorum": "suspend-io"}
    if local.quorum is not None:
        options["quorum"] = local.quorum
    if local.redundancy is not None:
        options["quorum-minimum-redundancy"] = local.redundancy
    return [{
        "resource": local.name,
        "options": options,
        "_this_host": {"node-id": local.node_id, "volumes": [
            {"volume_nr": v, "device_minor": 100 + v, "backing-disk": f"/dev/vg/{local.name}-{v}",
             "meta-disk": "internal"} for v in local.volumes]},
        "connections": [
            {"paths": [], "_cstate": p.connection_state, "_peer_node_id": p.node_id,
             "net": {"ping-int": "10", "protocol": "C", "allow-two-primaries": p.allow_two_primaries,
                     "allow-remote-read": p.allow_remote_read}}
            for p in local.peers],
    }]


def status_json(local: Local) -> str:
    return json.dumps(status_doc(local), indent=4)


def show_json(local: Local) -> str:
    return json.dumps(show_doc(local), indent=4)


def runner_for(status: str, show: Optional[str]) -> ScriptedRunner:
    answers: Dict[str, Any] = {"drbdsetup status": (0, status), "cibadmin": (0, CIB_EMPTY)}
    if show is not None:
        answers["drbdsetup show"] = (0, show)
    return ScriptedRunner(answers)


def reader_for(runner: ScriptedRunner, deadline: Any) -> TextProcReader:
    return TextProcReader(runner, deadline, PROC9)
