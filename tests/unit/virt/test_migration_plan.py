from __future__ import annotations

from typing import Any, Dict

import pytest

from livemig.ocf.deadline import Deadline
from livemig.ocf.errors import ConfigurationError
from livemig.virt import migrate_options as mo
from livemig.virt.incoming import describe_completed
from livemig.virt.migrate_options import parse_migrate_options
from livemig.virt.migration import describe_progress, migration_deadline, plan_migration
from livemig.virt.migration_uri import migration_stream_uri, network_name, remote_uri


@pytest.mark.parametrize("local,kw,expected", [
    ("qemu:///system", {}, "qemu://node2/system"),
    ("qemu:///system", {"transport": "tcp"}, "qemu+tcp://node2/system"),
    ("qemu:///system", {"transport": "ssh", "user": "admin"}, "qemu+ssh://admin@node2/system"),
    ("qemu:///system", {"transport": "tcp", "suffix": "-mig"}, "qemu+tcp://node2-mig/system"),
    ("qemu+ssh://node1:2222/system", {}, "qemu+ssh://node2:2222/system"),
    ("qemu+ssh://root@node1/system", {"transport": "tls"}, "qemu+tls://node2/system"),
    ("qemu:///system?socket=/run/x/sock", {"transport": "tcp"}, "qemu+tcp://node2/system"),
    ("qemu+ssh://node1/system?keyfile=/k", {}, "qemu+ssh://node2/system?keyfile=%2Fk"),
    ("xen:///", {"transport": "tcp"}, "xen+tcp://node2/"),
    ("qemu:///system", {"remoteuri": "qemu+ssh://%n.example.com/system", "transport": "tcp"},
     "qemu+ssh://node2.example.com/system"),
])
def test_remote_uri(local: str, kw: Dict[str, str], expected: str) -> None:
    assert remote_uri(local, "node2", **kw) == expected


def test_suffix_goes_after_the_first_label() -> None:
    assert network_name("node2.example.com", "-mig") == "node2-mig.example.com"
    assert network_name("node2", "") == "node2"
    assert remote_uri("qemu:///system", "node2.example.com", suffix="-mig", transport="tcp") == \
        "qemu+tcp://node2-mig.example.com/system"


@pytest.mark.parametrize("kw,match", [
    ({"transport": "tcp;reboot"}, "not a libvirt transport"),
    ({"user": "Root Admin"}, "not a user name"),
    ({"suffix": "-mig/x"}, "not a host name suffix"),
    ({"remoteuri": "qemu+ssh://%n/%s"}, "only %n"),
    ({"remoteuri": "qemu+ssh://%n/system\nx"}, "white space"),
    ({"transport": "unix"}, "cannot reach another node"),
])
def test_remote_uri_refuses_bad_values(kw: Dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        remote_uri("qemu:///system", "node2", **kw)


def test_remote_uri_refuses_bad_target_and_local_uri() -> None:
    with pytest.raises(ConfigurationError, match="not a valid host name"):
        remote_uri("qemu:///system", "node2; reboot")
    with pytest.raises(ConfigurationError, match="cannot derive"):
        remote_uri("not-a-uri", "node2")


@pytest.mark.parametrize("kw,expected", [
    ({}, None),
    ({"migrateuri": "tcp://%n-mig:49152"}, "tcp://node2-mig:49152"),
    ({"option_uri": "tcp://10.0.0.%n"}, "tcp://10.0.0.node2"),
    ({"migrateuri": "tcp://a", "option_uri": "tcp://b"}, "tcp://a"),
    ({"suffix": "-mig"}, "tcp://node2-mig"),
    ({"suffix": "-mig", "port": 49152}, "tcp://node2-mig:49152"),
    ({"port": 49152}, "tcp://node2:49152"),
])
def test_migration_stream_uri(kw: Dict[str, Any], expected: str) -> None:
    assert migration_stream_uri("node2", **kw) == expected


def test_parse_migrate_options() -> None:
    opts = parse_migrate_options("--p2p --compressed --auto-converge --bandwidth 100 --migrateuri=tcp://%n:4915 "
                                 "--parallel --parallel-connections 4 --listen-address 0.0.0.0 --verbose")
    assert opts.flags == mo.PEER2PEER | mo.COMPRESSED | mo.AUTO_CONVERGE | mo.PARALLEL
    assert opts.params == {"bandwidth": 100, "migrate_uri": "tcp://%n:4915", "parallel.connections": 4,
                           "listen_address": "0.0.0.0"}
    assert parse_migrate_options("").flags == 0


@pytest.mark.parametrize("text,match", [
    ("--offline", "does not move a running VM"),
    ("--copy-storage-all", "DRBD"),
    ("--dname other", "renaming"),
    ("--frob", "unknown option"),
    ("--bandwidth", "needs a value"),
    ("--bandwidth fast", "non-negative integer"),
    ("--p2p=yes", "unknown option"),
    ("--postcopy --tunnelled", "cannot be combined"),
    ("--parallel-connections 4", "needs --parallel"),
    ("--migrateuri 'unterminated", "No closing quotation"),
])
def test_parse_migrate_options_refuses(text: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_migrate_options(text)


def _values(**kw: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {"hypervisor": "qemu:///system", "migration_transport": "tcp"}
    base.update(kw)
    return base


def test_plan_flags_and_params() -> None:
    plan = plan_migration("vm1", "node2", _values(migration_speed=50, migration_downtime=200, migrateport=49152,
                                                  migration_tls=True), "qemu:///system", persistent=False)
    assert plan.dest_uri == "qemu+tcp://node2/system"
    assert plan.flags == mo.LIVE | mo.PEER2PEER | mo.TLS
    assert plan.params == {"bandwidth": 50, "migrate_uri": "tcp://node2:49152"}
    assert plan.downtime_ms == 200


def test_plan_keeps_persistence() -> None:
    plan = plan_migration("vm1", "node2", _values(), "qemu:///system", persistent=True)
    assert plan.flags & mo.PERSIST_DEST and plan.flags & mo.UNDEFINE_SOURCE
    plan = plan_migration("vm1", "node2", _values(migrate_options="--persistent"), "qemu:///system", True)
    assert plan.flags & mo.PERSIST_DEST and not plan.flags & mo.UNDEFINE_SOURCE


def test_plan_convergence_and_bandwidth_option_wins() -> None:
    plan = plan_migration("vm1", "node2", _values(migration_convergence="postcopy-after", migration_speed=10,
                                                  migrate_options="--bandwidth 20"), "qemu:///system", False)
    assert plan.flags & mo.POSTCOPY and plan.params["bandwidth"] == 20
    plan = plan_migration("vm1", "node2", _values(migration_convergence="auto-converge"), "qemu:///system", False)
    assert plan.flags & mo.AUTO_CONVERGE
    with pytest.raises(ConfigurationError, match="tunnelled"):
        plan_migration("vm1", "node2", _values(migrate_options="--tunnelled", migrateport=1), "qemu:///system", False)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seconds,expected", [(120.0, 102.0), (20.0, 15.0), (300.0, 280.0), (6.0, 3.0)])
def test_migration_deadline_keeps_a_reserve_for_the_abort(seconds: float, expected: float) -> None:
    assert migration_deadline(Deadline(seconds, clock=Clock())).total == pytest.approx(expected)


def test_progress_and_completion_text() -> None:
    text = describe_progress({"data_processed": 64 << 20, "data_remaining": 32 << 20, "memory_dirty_rate": 2560,
                              "memory_page_size": 4096, "memory_iteration": 3, "downtime": 300})
    assert text == ("processed 64 MiB, remaining 32 MiB, dirty rate 10.0 MiB/s, iteration 3, "
                    "expected downtime 300 ms")
    assert describe_progress({}) == "processed ? MiB, remaining ? MiB"
    assert describe_completed({"time_elapsed": 1000, "downtime": 40}) == "total time 1000 ms, downtime 40 ms"
