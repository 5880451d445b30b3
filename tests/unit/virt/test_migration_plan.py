from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from livemig.agents.virtualdomain.migrate_to import describe_progress, migration_deadline
from livemig.ocf.deadline import Deadline
from livemig.virt import migrate_options as mo
from livemig.virt.errors import InvalidSetting
from livemig.virt.incoming import describe_completed
from livemig.virt.migrate_options import parse_migrate_options
from livemig.virt.migration_plan import plan_migration
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
    with pytest.raises(InvalidSetting, match=match):
        remote_uri("qemu:///system", "node2", **kw)


def test_remote_uri_refuses_bad_target_and_local_uri() -> None:
    with pytest.raises(InvalidSetting, match="not a valid host name"):
        remote_uri("qemu:///system", "node2; reboot")
    with pytest.raises(InvalidSetting, match="cannot derive"):
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
    ("--p2p=yes", "takes no value"),
    ("--postcopy --tunnelled", "cannot be combined"),
    ("--parallel-connections 4", "needs --parallel"),
    ("--migrateuri 'unterminated", "No closing quotation"),
])
def test_parse_migrate_options_refuses(text: str, match: str) -> None:
    with pytest.raises(InvalidSetting, match=match):
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
    with pytest.raises(InvalidSetting, match="tunnelled"):
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


# -- livemig check tests exactly the URI the agent migrates to ------------------------------------
#
# One generated resource (hypervisor, migration_transport, migration_user, migration_network_suffix,
# remoteuri, migrateuri, migrateport, the target's name) goes through both, each against a fake
# libvirt of its own: the agent's migrate_to, which records the URI of virDomainMigrateToURI3 and its
# migrate_uri parameter, and `livemig check`, which records every URI it opens. check must open the
# agent's URI and no other target URI, and name the stream the agent sends to; where the agent
# refuses the parameters (code 6), check must fail the row and open no target.

CHECK_CIB = """<cib><configuration><crm_config/><nodes>
  <node id="1" uname="node1"/><node id="2" uname="{target}"/></nodes><resources>
  <primitive id="vm1" class="ocf" provider="livemig" type="VirtualDomain">
    <instance_attributes id="vm1-ia">{pairs}</instance_attributes></primitive>
</resources><constraints/></configuration></cib>"""

#: None: the parameter is not set at all (Pacemaker passes no OCF_RESKEY_ variable)
URI_PARAMETERS = {
    "hypervisor": [None, "", "qemu:///system", "qemu:///session", "qemu+ssh://node1/system",
                   "qemu+tcp://root@node1:16509/system", "qemu:///system?socket=/run/libvirt/virtqemud-sock",
                   "qemu+unix:///system", "xen:///", "lxc:///system"],
    "migration_transport": [None, "", "ssh", "tcp", "tls", "unix", "libssh2"],
    "migration_user": [None, "", "root", "mig_user"],
    "migration_network_suffix": [None, "", "-mig", ".mig"],
    "remoteuri": [None, "", "qemu+ssh://%n/system", "qemu+tls://%n.example.com/system?no_verify=1",
                  "qemu+tcp://%n-x:16509/session"],
    "migrateuri": [None, "", "tcp://%n-mig:49152", "tcp://10.0.0.2"],
    "migrateport": [None, "", "49152", "16514"],
}


def _agent_migrates_to(workdir: Path, target: str, params: Dict[str, Optional[str]]) -> Tuple[int, Any, str]:
    """(exit code, the migrate call or None, stderr) of migrate_to on a fake libvirt of its own."""
    from livemig.agents.virtualdomain import VirtualDomain
    from tests.unit.fake_libvirt import FakeLibvirt

    world = FakeLibvirt()
    world.add("vm1")
    world.hosts["node1"] = world.domains  # a hypervisor URI naming this node reaches the same libvirtd
    env = {"HA_RSCTMP": str(workdir / "rsctmp"), "OCF_RESOURCE_INSTANCE": "vm1",
           "OCF_RESKEY_config": str(workdir / "vm1.xml"), "OCF_RESKEY_CRM_meta_timeout": "20000",
           "OCF_RESKEY_CRM_meta_migrate_target": target}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items() if v is not None})
    out, err = io.StringIO(), io.StringIO()
    with mock.patch("livemig.virt.connection.quiet_libvirt", lambda: world):
        code = VirtualDomain.main(["VirtualDomain", "migrate_to"], env, stdout=out, stderr=err)
    return code, next((c for c in world.calls if c[0] == "migrate"), None), err.getvalue()


def _check_opens(workdir: Path, target: str, params: Dict[str, Optional[str]]) -> Tuple[List[Optional[str]], Any]:
    """(the URIs `livemig check` opened, its peer-uri row) on a fake libvirt of its own."""
    from xml.sax.saxutils import quoteattr

    from livemig.check.readiness import CheckOptions, check_vm
    from tests.unit.drbd.scripted import ScriptedRunner
    from tests.unit.fake_libvirt import FakeLibvirt

    given = {"config": str(workdir / "vm1.xml"), **{k: v for k, v in params.items() if v is not None}}
    pairs = "".join(f"<nvpair id={quoteattr('p' + str(i))} name={quoteattr(k)} value={quoteattr(v)}/>"
                    for i, (k, v) in enumerate(given.items()))
    cib = CHECK_CIB.format(target=target, pairs=pairs)
    world = FakeLibvirt()
    options = CheckOptions(drbd_xml="<config/>", domain_xml=(workdir / "vm1.xml").read_text(), peer=target,
                           runtime=False, libvirt=True)
    with mock.patch("livemig.virt.connection.quiet_libvirt", lambda: world):
        report = check_vm("vm1", options, runner=ScriptedRunner({"cibadmin": (0, cib)}), deadline=Deadline(30))
    return [c[1] for c in world.calls if c[0] == "open"], report.by_name("peer-uri")[0]


# A directory of its own per example (no function-scoped fixture: Debian 11's hypothesis 5.43 and
# pytest 6.0 run this too).
@settings(max_examples=200, deadline=None)
@given(target=st.sampled_from(["node2", "node2.example.com"]),
       params=st.fixed_dictionaries({name: st.sampled_from(values) for name, values in URI_PARAMETERS.items()}))
def test_check_tests_exactly_the_uri_the_agent_migrates_to(target: str, params: Dict[str, Optional[str]]) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        _agent_and_check_agree(Path(workdir), target, params)


def _agent_and_check_agree(tmp_path: Path, target: str, params: Dict[str, Optional[str]]) -> None:
    from tests.unit.conftest import DOMAIN_XML

    (tmp_path / "vm1.xml").write_text(DOMAIN_XML.format(name="vm1"))
    code, migrated, stderr = _agent_migrates_to(tmp_path, target, params)
    opened, row = _check_opens(tmp_path, target, params)
    targets = [uri for uri in opened if uri is not None]  # None: check asking what the local default URI is
    if migrated is None:
        assert code == 6, stderr  # the agent refused the parameters: nothing else stops this migration
        event("the agent refuses")
        assert row.status == "fail" and targets == [], (row.found, opened)
        assert row.found.split(": ", 1)[1] in stderr, (row.found, stderr)
        return
    assert code == 0, stderr
    dest, stream = migrated[2], migrated[3].get("migrate_uri")
    event("with a stream URI" if stream else "libvirt's stream default")
    assert targets == [dest], (params, opened, dest)
    assert row.status == "ok" and f"connected to {dest}, the URI migrate_to uses" in row.found, row.found
    assert (f"the migration stream goes to {stream}" in row.found) == bool(stream), row.found
    assert (None in opened) == (not params["hypervisor"])  # the default URI asked only when the agent asks it


@pytest.mark.parametrize("options, convergence, after, after_pass", [
    ("", "none", None, False),
    ("--timeout 30", "suspend-after", 30.0, False),
    ("--timeout=30 --timeout-suspend", "suspend-after", 30.0, False),
    ("--postcopy --timeout 30 --timeout-postcopy", "postcopy-after", 30.0, False),
    ("--postcopy --postcopy-after-precopy", "none", None, True),
    ("--postcopy --postcopy-after-precopy --timeout 30", "suspend-after", 30.0, True),
    ("--postcopy --postcopy-after-precopy --timeout 30 --timeout-postcopy", "postcopy-after", 30.0, True),
])
def test_virsh_convergence_options_become_the_plan(options: str, convergence: str, after: Optional[float],
                                                   after_pass: bool) -> None:
    plan = plan_migration("vm1", "node2", {"migrate_options": options}, "qemu:///system", False)
    assert (plan.convergence, plan.escalate_after, plan.postcopy_after_pass) == (convergence, after, after_pass)
    assert ("post-copy after the first pass over memory" in plan.describe()) == after_pass
    assert bool(plan.flags & mo.POSTCOPY) == ("--postcopy" in options)
    assert "--timeout" not in plan.params and "timeout" not in plan.params  # virsh's policy, not libvirt's


@pytest.mark.parametrize("options, match", [
    ("--postcopy-after-precopy", "--postcopy-after-precopy needs --postcopy"),
    ("--postcopy --postcopy-after-precopy=1", "takes no value"),
])
def test_postcopy_after_precopy_needs_postcopy_as_virsh(options: str, match: str) -> None:
    with pytest.raises(InvalidSetting, match=match):
        mo.parse_migrate_options(options)


@pytest.mark.parametrize("convergence", ["auto-converge", "postcopy-after"])
def test_postcopy_after_precopy_and_migration_convergence_keep_one(convergence: str) -> None:
    with pytest.raises(InvalidSetting, match="keep one of them"):
        plan_migration("vm1", "node2", {"migrate_options": "--postcopy --postcopy-after-precopy",
                                        "migration_convergence": convergence}, "qemu:///system", False)


def test_postcopy_after_precopy_is_a_policy_not_a_libvirt_parameter() -> None:
    options = mo.parse_migrate_options("--postcopy --postcopy-after-precopy --p2p")
    assert options.postcopy_after_precopy and options.flags == mo.POSTCOPY | mo.PEER2PEER and not options.params
    assert "--postcopy-after-precopy" not in mo.REFUSED_OPTIONS
