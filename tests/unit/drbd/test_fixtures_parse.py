"""Every DRBD sample in tests/fixtures/drbd parses to the state it shows.

The expected values are written out here, read off the samples by eye.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import pytest

from livemig.drbd.config import parse_dump_xml
from livemig.drbd.proc import ProcMinor, parse_proc_drbd
from livemig.drbd.state import PeerVolumeState, VolumeState
from livemig.drbd.status9 import parse_show_json, parse_status_json
from tests.unit.drbd.scripted import FIXTURES, fixture

# minor -> (cs, local role, peer role, local disk, peer disk, protocol, flags, oos)
Row = Tuple[str, Optional[str], Optional[str], Optional[str], Optional[str], Optional[str], Optional[str],
            Optional[int]]
U: Row = ("Unconfigured", None, None, None, None, None, None, None)

PROC_EXPECTED: Dict[str, Tuple[Optional[str], Dict[int, Row]]] = {
    "drbd80-proc-ganeti-emptyline.txt": ("8.0.12", {
        0: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r---", None),
        1: U, 2: U, 5: U, 6: U}),
    "drbd80-proc-ganeti-emptyversion.txt": (None, {
        0: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r---", None),
        1: U, 2: U, 5: U, 6: U}),
    "drbd80-proc-ganeti-multi-minor.txt": ("8.0.12", {
        0: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r---", None),
        1: ("Connected", "Secondary", "Primary", "UpToDate", "UpToDate", "C", "r---", None),
        2: U,
        4: ("WFConnection", "Primary", "Unknown", "UpToDate", "DUnknown", "C", "r---", None),
        5: ("Connected", "Primary", "Secondary", "UpToDate", "Diskless", "C", "r---", None),
        6: ("Connected", "Secondary", "Primary", "Diskless", "UpToDate", "C", "r---", None),
        7: ("WFConnection", "Secondary", "Unknown", "UpToDate", "DUnknown", "C", "r---", None),
        8: ("StandAlone", "Secondary", "Unknown", "UpToDate", "DUnknown", None, "r---", None)}),
    "drbd83-proc-ganeti-multi-minor.txt": ("8.3.1", {
        0: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r----", 0),
        1: ("Connected", "Secondary", "Primary", "UpToDate", "UpToDate", "C", "r---", 0),  # "r---\0"
        2: U,
        4: ("WFConnection", "Primary", "Unknown", "UpToDate", "DUnknown", "C", "r----", 0),
        5: ("Connected", "Primary", "Secondary", "UpToDate", "Diskless", "C", "r----", 0),
        6: ("Connected", "Secondary", "Primary", "Diskless", "UpToDate", "C", "r---", 0),
        7: ("WFConnection", "Secondary", "Unknown", "UpToDate", "DUnknown", "C", "r---", 0),
        8: ("StandAlone", "Secondary", "Unknown", "UpToDate", "DUnknown", None, "r---", 0)}),
    "drbd83-proc-ganeti-synctarget.txt": ("8.3.1", {
        0: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r----", 0),
        1: ("Connected", "Secondary", "Primary", "UpToDate", "UpToDate", "C", "r---", 0),
        2: U,
        3: ("SyncTarget", "Primary", "Secondary", "Inconsistent", "UpToDate", "C", "r----", 346112),
        4: ("WFConnection", "Primary", "Unknown", "UpToDate", "DUnknown", "C", "r----", 0)}),
    "drbd83-proc-ganeti-synctarget-want.txt": ("8.3.11", {
        0: ("SyncTarget", "Secondary", "Primary", "Inconsistent", "UpToDate", "C", "r-----", 588416),
        1: U, 2: U, 3: U}),
    "drbd83-proc-ganeti-syncsource-krnl2.6.39.txt": ("8.3.1", {
        0: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r----", 0),
        1: ("Connected", "Secondary", "Primary", "UpToDate", "UpToDate", "C", "r---", 0),
        2: U,
        3: ("SyncSource", "Primary", "Secondary", "UpToDate", "Inconsistent", "A", "r-----", 15358208),
        4: ("WFConnection", "Primary", "Unknown", "UpToDate", "DUnknown", "C", "r----", 0)}),
    "drbd84-proc-ganeti-multi-minor.txt": ("8.4.2", {
        0: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r-----", 0),
        1: ("Connected", "Secondary", "Primary", "UpToDate", "UpToDate", "C", "r-----", 0),
        2: U,
        4: ("WFConnection", "Primary", "Unknown", "UpToDate", "DUnknown", "C", "r-----", 1048320),
        6: ("Connected", "Secondary", "Primary", "Diskless", "UpToDate", "C", "r-----", 0),
        8: ("StandAlone", "Secondary", "Unknown", "UpToDate", "DUnknown", None, "r-----", 1048320)}),
    "drbd84-proc-ganeti-emptyfirst.txt": ("8.4.2", {
        1: ("Connected", "Secondary", "Primary", "UpToDate", "UpToDate", "C", "r-----", 0),
        2: U,
        4: ("WFConnection", "Primary", "Unknown", "UpToDate", "DUnknown", "C", "r-----", 1048320),
        6: ("Connected", "Secondary", "Primary", "Diskless", "UpToDate", "C", "r-----", 0),
        8: ("StandAlone", "Secondary", "Unknown", "UpToDate", "DUnknown", None, "r-----", 1048320)}),
    "drbd84-proc-ganeti-syncsource.txt": ("8.4.2", {
        0: ("StandAlone", "Primary", "Unknown", "UpToDate", "DUnknown", None, "r-----", 1048320),
        3: U,
        5: ("SyncSource", "Secondary", "Secondary", "UpToDate", "Inconsistent", "C", "r---n-", 335744)}),
    "drbd84-proc-pacemaker-connected-primary-8.4.11.txt": ("8.4.11-1", {
        1: ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", "C", "r-----", 0)}),
    "drbd84-proc-ug84-inconsistent-8.4.1.txt": ("8.4.1", {
        0: ("Connected", "Secondary", "Secondary", "Inconsistent", "Inconsistent", "C", "r-----", 524236)}),
}


def _row(m: ProcMinor) -> Row:
    return (m.connection or "", m.local_role, m.peer_role, m.local_disk, m.peer_disk, m.protocol, m.io_flags,
            m.out_of_sync_kib)


@pytest.mark.parametrize("name", sorted(PROC_EXPECTED))
def test_proc_drbd_samples(name: str) -> None:
    version, rows = PROC_EXPECTED[name]
    proc = parse_proc_drbd((FIXTURES / name).read_bytes().decode("utf-8"))
    assert proc.version == version
    assert proc.generation == 8
    assert {m.minor: _row(m) for m in proc.minors} == rows
    assert all(m.suspended is False for m in proc.configured_minors())


def test_every_proc_sample_is_covered() -> None:
    on_disk = {p.name for p in FIXTURES.glob("drbd8*-proc-*.txt")}
    assert on_disk == set(PROC_EXPECTED)


def test_proc_sample_as_status_json_shape() -> None:
    status = parse_proc_drbd(fixture("drbd84-proc-pacemaker-connected-primary-8.4.11.txt")).to_status({1: "r0"})
    (res,) = status.resources
    assert (res.name, res.role, res.suspended) == ("r0", "Primary", False)
    assert res.volumes == (VolumeState(volume=None, minor=1, disk="UpToDate", quorum=None),)
    (peer,) = res.peers
    assert (peer.name, peer.node_id, peer.connection, peer.role) == (None, None, "Connected", "Secondary")
    assert peer.volumes == (PeerVolumeState(volume=None, replication=None, disk="UpToDate", out_of_sync_kib=0,
                                            minor=1),)


def test_drbd9_proc_has_only_a_version() -> None:
    proc = parse_proc_drbd(fixture("drbd9-proc-synthetic-version-only.txt"))
    assert (proc.version, proc.generation, proc.minors) == ("9.2.5", 9, ())


def test_status_json_beijing_primary() -> None:
    (res,) = parse_status_json(fixture("drbd9-status-json-salt-beijing-primary.txt"))
    assert (res.name, res.role, res.suspended) == ("beijing", "Primary", False)
    assert res.volumes == (VolumeState(volume=0, minor=5, disk="UpToDate", quorum=True, client=False),)
    (peer,) = res.peers
    assert (peer.name, peer.node_id, peer.connection, peer.role) == ("salt-node3", 2, "Connected", "Secondary")
    assert peer.volumes == (PeerVolumeState(volume=0, replication="Established", disk="UpToDate",
                                            out_of_sync_kib=0, peer_client=False),)


def test_status_json_shanghai_secondary() -> None:
    (res,) = parse_status_json(fixture("drbd9-status-json-salt-shanghai-secondary.txt"))
    assert (res.name, res.role, res.suspended) == ("shanghai", "Secondary", False)
    assert res.volumes == (VolumeState(volume=0, minor=2, disk="UpToDate", quorum=True, client=False),)
    (peer,) = res.peers
    assert (peer.name, peer.node_id, peer.connection, peer.role) == ("dummytest-drbd02", 2, "Connected", "Secondary")
    assert peer.volumes[0].replication == "Established" and peer.volumes[0].disk == "UpToDate"


@pytest.mark.parametrize("name, connection, role, replication, disk, oos", [
    ("drbd9-status-json-derived-dual-primary.txt", "Connected", "Primary", "Established", "UpToDate", 0),
    ("drbd9-status-json-derived-peer-inconsistent.txt", "Connected", "Secondary", "SyncSource", "Inconsistent",
     10840),
    ("drbd9-status-json-derived-disconnected.txt", "Connecting", "Unknown", "Off", "DUnknown", 0),
])
def test_status_json_derived(name: str, connection: str, role: str, replication: str, disk: str, oos: int) -> None:
    (res,) = parse_status_json(fixture(name))
    assert (res.name, res.role) == ("beijing", "Primary")
    (peer,) = res.peers
    assert (peer.connection, peer.role) == (connection, role)
    assert peer.volumes == (PeerVolumeState(volume=0, replication=replication, disk=disk, out_of_sync_kib=oos,
                                            peer_client=False),)


def test_show_json_one_volume() -> None:
    (res,) = parse_show_json(fixture("drbd9-show-json-drbdutils-one-volume.txt"))
    assert (res.name, res.auto_promote) == ("some-resource", True)
    (conn,) = res.connections
    assert (conn.peer_node_id, conn.name, conn.cstate, conn.allow_two_primaries) == (1, None, "Connected", False)
    (derived,) = parse_show_json(fixture("drbd9-show-json-derived-beijing-two-primaries.txt"))
    assert derived.name == "beijing" and derived.connection_to(2) is not None
    assert derived.connections[0].allow_two_primaries is True


def test_dump_xml_anvil_fragment() -> None:
    (res,) = parse_dump_xml(fixture("drbd9-dump-xml-anvil-srv00-sql1-resource.txt"))
    assert res.name == "srv00-sql1"
    assert [h.name for h in res.hosts] == ["mk-a02n01", "mk-a02n02"]
    assert res.hosts[0].volumes[0].minor == 0 and res.hosts[0].volumes[0].device == "/dev/drbd_srv00-sql1_0"
    assert res.hosts[0].address == "(null)"  # drbd-utils' own quirk, kept as written
    assert res.protocol("mk-a02n02") == "C"
    assert res.fencing("mk-a02n02") == "resource-and-stonith"
    assert res.allow_two_primaries("mk-a02n02") is None  # not in the dump: unknown
    assert res.auto_promote is None
    assert res.minors("mk-a02n01") == {0: 0}


def test_dump_xml_generated_two_volumes() -> None:
    (res,) = parse_dump_xml(fixture("drbd9-dump-xml-livemig-r0-two-volumes-verbose.txt"))
    assert res.name == "r0"
    assert res.protocol() == "C" and res.protocol("beta") == "C"
    assert res.allow_two_primaries() is False and res.allow_two_primaries("beta") is False
    assert res.fencing("beta") == "resource-and-stonith"
    assert res.auto_promote is False
    assert res.connection_to("beta") is not None and res.connections[0].name == "beta"
    assert res.minors("vm") == {0: 0, 1: 1}
    assert res.sections["handlers"]["fence-peer"] == "/usr/lib/drbd/crm-fence-peer.9.sh"


def test_every_sample_has_a_test() -> None:
    tested_here = set(PROC_EXPECTED) | {
        "drbd9-proc-synthetic-version-only.txt",
        "drbd9-status-json-salt-beijing-primary.txt", "drbd9-status-json-salt-shanghai-secondary.txt",
        "drbd9-status-json-derived-dual-primary.txt", "drbd9-status-json-derived-peer-inconsistent.txt",
        "drbd9-status-json-derived-disconnected.txt", "drbd9-show-json-drbdutils-one-volume.txt",
        "drbd9-show-json-derived-beijing-two-primaries.txt", "drbd9-dump-xml-anvil-srv00-sql1-resource.txt",
        "drbd9-dump-xml-livemig-r0-two-volumes-verbose.txt",
        # text status: tests/unit/drbd/test_status_text.py
        "drbd84-status-verbose-ug84-home.txt", "drbd84-status-text-ug84-home.txt",
        "drbd9-status-text-ug9-r0-inconsistent.txt", "drbd9-status-text-salt-single-syncsource.txt",
    }
    assert {p.name for p in FIXTURES.glob("*.txt")} == tested_here
