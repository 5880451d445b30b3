"""Hostile and malformed input: every parameter, the domain XML, and a config naming another domain.

Every case gets a clear code (6: the configuration is wrong everywhere; 5: this
node lacks something; never 1 with "internal error") and an exit reason; nothing
runs through a shell (a command substitution that would create a marker file
never does). Which files the agent opens is proven with strace in
tests/integration/test_hostile_input_strace.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from livemig.agents.virtualdomain.metadata import PARAMETERS
from tests.unit.conftest import DOMAIN_XML, AgentRun
from tests.unit.fake_libvirt import FakeLibvirt

AgentFn = Callable[..., AgentRun]

#: values that must never crash the agent, run a command, or be silently taken for something else
HOSTILE: Dict[str, str] = {
    "long-100k": "A" * 100_000,
    "empty": "",
    "blank": "   ",
    "command-subst": "$(touch {marker})",
    "backticks": "`touch {marker}`",
    "semicolon": "x; touch {marker}",
    "pipe": "x | touch {marker}",
    "newline": "x\ntouch {marker}",
    "percent": "%n%s%x%p%%",
    "traversal": "../../../../etc/shadow",
    "abs-traversal": "/tmp/../etc/shadow",
    "superscript-digit": "\u00b2",
    "double-minus": "--5",
    "negative": "-1",
    "huge-number": "99999999999999999999",
    "float": "1.5",
    "hex": "0x10",
    "escape-char": "a\x1bb",
    "rtl-override": "qemu:///system\u202e",
    "quotes": "'\"",
    "option-like": "--config-file=/etc/shadow",
}

CASES = [pytest.param(p.name, key, id=f"{p.name}-{key}") for p in PARAMETERS for key in HOSTILE]


def _value(key: str, marker: Path) -> str:
    return HOSTILE[key].replace("{marker}", str(marker))


@pytest.mark.parametrize(("param", "key"), CASES)
def test_every_parameter_survives_hostile_values(agent: AgentFn, fake_libvirt: FakeLibvirt, tmp_path: Path,
                                                  param: str, key: str) -> None:
    marker = tmp_path / "pwned"
    res = agent("validate-all", **{param: _value(key, marker)})
    assert res.code in (0, 5, 6), (res.code, res.stderr[-500:])
    if res.code:
        assert res.reason and "internal error" not in res.reason, res.stderr[-500:]
        assert len(res.reason) <= 128
    assert "Traceback" not in res.stderr + res.stdout
    assert not marker.exists(), "a parameter value was run through a shell"


def _running(fake: FakeLibvirt, name: str) -> bool:
    return name in fake.domains and fake.domains[name].state()[0] == 1


@pytest.mark.parametrize("param", [p.name for p in PARAMETERS if p.name != "config"])
def test_stop_never_fails_on_a_bad_value(agent: AgentFn, fake_libvirt: FakeLibvirt, param: str) -> None:
    """stop is lenient: a bad value falls back to its default (a failed stop gets the node fenced)."""
    for value in ("--5", "\u00b2", "A" * 100_000):
        fake_libvirt.add("vm1")
        res = agent("stop", **{param: value})
        assert res.code == 0, (param, value, res.stderr[-400:])
        assert not _running(fake_libvirt, "vm1")


@pytest.mark.parametrize(("params", "reason"), [
    # wrong types and out-of-range integers (int() would raise ValueError for the first two)
    ({"migrateport": "\u00b2"}, "not an integer"),
    ({"migration_downtime": "--5"}, "not an integer"),
    ({"drbd_wait": "1.5"}, "not an integer"),
    ({"migration_speed": "0x10"}, "not an integer"),
    ({"migration_progress_interval": "99999999999999999999"}, "not an integer"),
    ({"migrateport": "0"}, "below the minimum 1"),
    ({"migrateport": "65536"}, "above the maximum 65535"),
    ({"drbd_wait": "-1"}, "below the minimum"),
    ({"drbd_wait": "3601"}, "above the maximum"),
    ({"migration_progress_interval": "0"}, "below the minimum"),
    ({"migration_downtime": "-100"}, "below the minimum"),
    ({"force_stop": "2"}, "not a boolean"),
    ({"migration_tls": ""}, "not a boolean"),
    ({"drbd_guard": "AUTO"}, "not one of"),
    ({"migration_convergence": ""}, "not one of"),
    # very long values
    ({"hypervisor": "qemu:///system?" + "a" * 100_000}, "longer than 4096"),
    ({"migrate_options": "--p2p " * 20_000}, "longer than 4096"),
    ({"config": "/" + "a" * 100_000}, "longer than 4096"),
    # %n abuse and URIs that are not URIs
    ({"remoteuri": "qemu+tcp://%n/system%s"}, "only %n"),
    ({"remoteuri": "qemu+tcp://%n%x/system"}, "only %n"),
    ({"migrateuri": "tcp://%n:%d"}, "only %n"),
    ({"migrateuri": "tcp://%n:49152\nrm -rf /"}, "white space"),
    ({"remoteuri": "../../../../etc/shadow"}, "not a URI"),
    ({"remoteuri": "qemu+ssh://%n/system\u202e"}, "not a URI"),
    ({"remoteuri": "qemu+ssh://%n/system'\""}, "not a URI"),
    ({"migrateuri": "unix:///var/lib/libvirt/../../../etc/shadow"}, "'..'"),
    ({"migrateuri": "%n"}, "not a URI"),
    ({"migrate_options": "--migrateuri tcp://%n/`reboot`"}, "not a URI"),
    ({"hypervisor": "qemu:///system\u202e"}, "not a libvirt URI"),
    ({"hypervisor": "qemu:///system\nreboot"}, "not a libvirt URI"),
    # option injection into drbdadm / drbdsetup argv, shell metacharacters
    ({"drbd_resources": "-c"}, "not a DRBD resource name"),
    ({"drbd_resources": "r0 --config-file=/etc/shadow"}, "not a DRBD resource name"),
    ({"drbd_resources": "r\u00b2"}, "not a DRBD resource name"),
    ({"drbd_resources": "r0;reboot"}, "not a DRBD resource name"),
    ({"drbd_peer_names": "node1=--force"}, "not NODE=DRBD_HOST"),
    ({"drbd_peer_names": "node1=$(reboot)"}, "not NODE=DRBD_HOST"),
    ({"migrate_options": "--bandwidth \u00b2"}, "non-negative integer"),
    ({"migrate_options": "--p2p 'unclosed"}, "migrate_options"),
    ({"migrate_options": "--p2p; reboot"}, "unknown option"),
    ({"migrate_options": "--p2p $(reboot)"}, "unknown option"),
    ({"migration_user": "root@evil"}, "not a user name"),
    ({"migration_network_suffix": "-mig/../x"}, "not a host name suffix"),
    ({"shutdown_mode": "acpi;reboot"}, "shutdown_mode"),
    # paths: relative, traversal
    ({"config": "../../etc/passwd"}, "absolute path"),
    ({"snapshot": "../snapshots"}, "absolute path"),
    ({"monitor_scripts": "check.sh"}, "absolute path"),
    # heartbeat's copy-on-write parameters (agents/virtualdomain/images.py): the combinations refused
    ({"stateless": "true"}, "stateless=true needs backingfile"),
    ({"stateless": "true", "backingfile": " "}, "stateless=true needs backingfile"),
    ({"backingfile": "/var/lib/libvirt/images/base.qcow2", "copyindirs": "etc/livemig"}, "must be an absolute path"),
])
def test_bad_values_are_not_configured(agent: AgentFn, params: Dict[str, str], reason: str) -> None:
    for action in ("validate-all", "start"):
        res = agent(action, **params)
        assert res.code == 6, (action, res.code, res.stderr[-500:])
        assert res.reason and reason in res.reason, (action, res.reason)


@pytest.mark.parametrize(("params", "reason"), [
    ({"monitor_scripts": "/bin/true;touch /tmp/x"}, "missing or not executable"),
    ({"monitor_scripts": "/nonexistent/../bin/sh"}, "missing or not executable"),
    ({"snapshot": "/nonexistent/snapshots"}, "does not exist"),
])
def test_node_local_missing_things_are_not_installed(agent: AgentFn, params: Dict[str, str], reason: str) -> None:
    res = agent("validate-all", **params)
    assert res.code == 5 and res.reason and reason in res.reason, res.stderr[-400:]


def test_image_parameters_at_their_default_are_accepted(agent: AgentFn) -> None:
    res = agent("validate-all", stateless="no", sync_config_on_stop="0", backingfile=" ", copyindirs="")
    assert res.code == 0, res.stderr


def test_image_parameters_do_not_block_stop(agent: AgentFn, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    res = agent("stop", stateless="true", backingfile="/base.qcow2")
    assert res.code == 0, res.stderr


def test_integer_values_with_blanks_and_sign_still_parse(agent: AgentFn) -> None:
    res = agent("validate-all", migrateport=" 49152 ", migration_downtime="+300")
    assert res.code == 0, res.stderr


# -- the domain XML ---------------------------------------------------------------------------

_BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE domain [
 <!ENTITY lol "lol">
""" + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
              for i in range(1, 10)) + """]>
<domain type='qemu'><name>&lol9;</name></domain>
"""

XML_CASES: List[Tuple[str, str, str]] = [
    ("malformed", "<domain type='qemu'><name>vm1</name>", "not well-formed"),
    ("not-utf8", "\udcff", "UTF-8"),
    ("xxe-file", "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/shadow'>]>"
                 "<domain type='qemu'><name>&x;</name></domain>", "DOCTYPE"),
    ("xxe-network", "<!DOCTYPE domain [<!ENTITY x SYSTEM 'http://10.255.255.1/x'>]><domain><name>&x;</name></domain>",
     "DOCTYPE"),
    ("external-dtd", "<!DOCTYPE domain SYSTEM '/etc/shadow'><domain><name>vm1</name></domain>", "DOCTYPE"),
    ("billion-laughs", _BILLION_LAUGHS, "DOCTYPE"),
    ("parameter-entity", "<!DOCTYPE d [<!ENTITY % p SYSTEM 'file:///etc/shadow'> %p;]><domain/>", "DOCTYPE"),
    ("deep-nesting", "<domain><name>vm1</name>" + "<a>" * 100_000 + "</a>" * 100_000 + "</domain>",
     "not well-formed"),
    ("huge", "<domain><name>vm1</name><description>" + "x" * (5 * 1024 * 1024) + "</description></domain>",
     "larger than"),
    ("name-with-slash", "<domain><name>../../etc/vm1</name></domain>", "invalid domain name"),
    ("name-with-newline", "<domain><name>vm1&#10;vm2</name></domain>", "invalid domain name"),
    ("name-too-long", "<domain><name>" + "v" * 300 + "</name></domain>", "invalid domain name"),
    ("two-roots", "<domain><name>vm1</name></domain><domain><name>vm2</name></domain>", "not well-formed"),
    ("wrong-root", "<network><name>vm1</name></network>", "not a libvirt domain definition"),
]


@pytest.mark.parametrize(("kind", "text", "reason"), XML_CASES, ids=[c[0] for c in XML_CASES])
def test_domain_xml_is_refused(agent: AgentFn, fake_libvirt: FakeLibvirt, config_file: Path,
                               kind: str, text: str, reason: str) -> None:
    if kind == "not-utf8":
        config_file.write_bytes(b"<domain><name>\xff</name></domain>")
    else:
        config_file.write_text(text)
    for action in ("validate-all", "start"):
        started = time.monotonic()
        res = agent(action)
        elapsed = time.monotonic() - started
        assert res.code == 6, (kind, action, res.stderr[-500:])
        assert res.reason and reason.lower() in res.reason.lower(), (kind, res.reason)
        assert elapsed < 5, f"{kind}: {elapsed:.1f}s"
    assert not [c for c in fake_libvirt.calls if c[0] == "create"]


def test_secret_file_named_as_config_is_not_echoed(agent: AgentFn, config_file: Path) -> None:
    """A config pointing at a non-XML file (path traversal, typo) does not leak its content."""
    config_file.write_text("root:SECRET-HASH-1234:19000:0:99999:7:::\n")
    res = agent("validate-all")
    assert res.code == 6
    assert "SECRET" not in res.stderr + res.stdout


def test_xinclude_is_not_processed(agent: AgentFn, fake_libvirt: FakeLibvirt, config_file: Path,
                                   tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("<name>stolen</name>")
    config_file.write_text("<domain xmlns:xi='http://www.w3.org/2001/XInclude'><name>vm1</name>"
                           f"<xi:include href='{secret}'/></domain>")
    assert agent("start").code == 0
    assert "stolen" not in str(fake_libvirt.calls)


# -- a config naming a different domain than the one this resource runs ------------------------

def _rename(config_file: Path, name: str) -> None:
    config_file.write_text(DOMAIN_XML.format(name=name))


def test_renamed_config_does_not_adopt_or_orphan(agent: AgentFn, fake_libvirt: FakeLibvirt,
                                                 config_file: Path) -> None:
    assert agent("start").code == 0
    assert _running(fake_libvirt, "vm1")
    _rename(config_file, "vm2")
    # monitor: vm2 is not running, but vm1 (this resource's domain) is: running, never "not running"
    res = agent("monitor", interval_ms=10000)
    assert res.code == 0 and res.reason and "vm1" in res.reason and "vm2" in res.reason, res.stderr
    # a probe must not say 7 either (Pacemaker would start vm2 beside vm1 on shared storage)
    res = agent("monitor")
    assert res.code == 0, res.stderr
    res = agent("start")
    assert res.code == 1 and res.reason and "still runs" in res.reason, res.stderr
    assert not [c for c in fake_libvirt.calls if c == ("create", "vm2")]
    # stop stops both names: the old one and the one the config names now
    assert agent("stop").code == 0
    assert not _running(fake_libvirt, "vm1")
    # then the renamed resource starts normally, and is monitored under its new name
    assert agent("start").code == 0
    assert agent("monitor", interval_ms=10000).code == 0
    assert agent("stop").code == 0


def test_config_naming_another_resources_running_domain(agent: AgentFn, fake_libvirt: FakeLibvirt,
                                                        config_file: Path) -> None:
    """Renamed to a domain that also runs: monitor still reports the conflict."""
    assert agent("start").code == 0
    fake_libvirt.add("other")
    _rename(config_file, "other")
    res = agent("monitor", interval_ms=10000)
    assert res.code == 1 and res.reason and "vm1" in res.reason
    assert agent("stop").code == 0
