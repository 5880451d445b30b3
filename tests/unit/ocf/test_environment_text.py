"""Bytes that are not UTF-8 in the environment: a clear reason and the right code, never a traceback.

Python hands such bytes over as lone surrogates, which used to fail far away
(libvirt encoding the URI: "internal error in stop: UnicodeEncodeError", code 1,
which gets a node fenced). The framework reads every OCF_ variable that is not
text as a configuration error (code 6), except for stop, monitor and status,
which go on with U+FFFD in place of the bad bytes, exactly as with that wrong
value. The real executable is run with /usr/bin/python3 and such bytes.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from lxml import etree

from livemig.ocf.agent import ResourceAgent, exit_reason_line
from livemig.ocf.codes import OCFCode
from livemig.ocf.environment import OCFEnvironment, is_text, printable, repaired
from livemig.ocf.logs import setup_logging
from livemig.ocf.metadata import Action, AgentMetadata, Parameter
from tests.support.agent import run_agent as run_agent_process

ROOT = Path(__file__).resolve().parents[3]
AGENT = ROOT / "agents" / "VirtualDomain"
PYTHON = "/usr/bin/python3"
DOMAIN = ROOT / "tests" / "fixtures" / "cib" / "domain-vm1.xml"


# -- the environment --------------------------------------------------------------------------------

def test_text_helpers() -> None:
    assert is_text("qemu:///system é") and not is_text("/tmp/\udcff.xml")
    assert printable("/tmp/\udcff\udc80.xml") == "/tmp/\\xff\\x80.xml"
    assert printable("a\ud800b") == "a\\ud800b" and printable("plain") == "plain"
    assert repaired("/tmp/\udcff.xml") == "/tmp/\ufffd.xml" and repaired("ok") == "ok"


def test_values_that_are_not_text_are_recorded_and_repaired() -> None:
    env = OCFEnvironment.from_environ("start", {
        "OCF_RESKEY_config": "/tmp/\udcff.xml", "OCF_RESKEY_hypervisor": "qemu:///system",
        "OCF_RESKEY_CRM_meta_timeout": "20\udcff000", "OCF_RESOURCE_INSTANCE": "vm\udcff1",
        "OCF_RESKEY_\udcffname": "1", "HA_RSCTMP": "/run/\udcff"})
    assert env.params["config"] == "/tmp/\ufffd.xml" and env.params["hypervisor"] == "qemu:///system"
    assert env.meta["timeout"] == "20\ufffd000" and env.timeout_ms is None
    assert env.resource_instance == "vm\ufffd1"
    assert not any(not is_text(k) for k in env.params)  # a name that is not text names no parameter
    assert env.raw["HA_RSCTMP"] == "/run/\udcff"  # not an OCF variable: a path, used as the bytes it is
    assert env.invalid == {"OCF_RESKEY_config": "/tmp/\\xff.xml", "OCF_RESKEY_CRM_meta_timeout": "20\\xff000",
                           "OCF_RESOURCE_INSTANCE": "vm\\xff1", "OCF_RESKEY_\\xffname": "1"}
    reason = env.invalid_reason()
    assert "parameter config='/tmp/\\xff.xml' is not valid UTF-8 text" in reason
    assert "meta attribute timeout='20\\xff000' is not valid UTF-8 text" in reason
    assert "OCF_RESOURCE_INSTANCE='vm\\xff1' is not valid UTF-8 text" in reason
    assert is_text(reason)


def test_valid_text_is_left_alone() -> None:
    env = OCFEnvironment.from_environ("start", {"OCF_RESKEY_config": "/srv/é 漢.xml"})
    assert env.params["config"] == "/srv/é 漢.xml" and env.invalid == {} and env.invalid_reason() == ""


def test_exit_reason_line_is_always_text() -> None:
    line = exit_reason_line("cannot read /tmp/\udcff.xml", {"OCF_EXIT_REASON_PREFIX": "reason\udcfe:"})
    assert line == "reason\\xfe:cannot read /tmp/\\xff.xml" and is_text(line)


# -- the dispatcher ---------------------------------------------------------------------------------

class Probe(ResourceAgent):
    metadata = AgentMetadata("Probe", "1.0", "s", "l", parameters=[Parameter("config", "c", "c")],
                             actions=[Action(name, 10) for name in
                                      ("start", "stop", "monitor", "status", "validate-all", "migrate_to",
                                       "meta-data")])
    seen: List[Tuple[str, Optional[str]]] = []

    def _record(self) -> OCFCode:
        self.seen.append((self.env.action, self.env.params.get("config")))
        return OCFCode.SUCCESS

    action_start = action_stop = action_monitor = action_status = action_validate_all = _record
    action_migrate_to = _record


def dispatch(action: str, env: Dict[str, str]) -> Tuple[int, str]:
    err = io.StringIO()
    Probe.seen = []
    code = Probe.main(["Probe", action], env, stdout=io.StringIO(), stderr=err)
    return code, err.getvalue()


@pytest.mark.parametrize("action", ["start", "validate-all", "migrate_to"])
def test_other_actions_are_a_configuration_error(action: str) -> None:
    code, err = dispatch(action, {"OCF_RESKEY_config": "/tmp/\udcff.xml"})
    assert code == OCFCode.ERR_CONFIGURED and Probe.seen == []
    assert "ocf-exit-reason:parameter config='/tmp/\\xff.xml' is not valid UTF-8 text" in err


@pytest.mark.parametrize("action", ["stop", "monitor", "status"])
def test_stop_and_monitor_go_on_with_the_repaired_value(action: str) -> None:
    code, err = dispatch(action, {"OCF_RESKEY_config": "/tmp/\udcff.xml"})
    assert code == OCFCode.SUCCESS and Probe.seen == [(action, "/tmp/\ufffd.xml")]
    assert "WARNING: parameter config='/tmp/\\xff.xml' is not valid UTF-8 text" in err


def test_meta_data_reads_no_environment() -> None:
    code, _ = dispatch("meta-data", {"OCF_RESKEY_config": "/tmp/\udcff.xml"})
    assert code == OCFCode.SUCCESS


# -- logging ----------------------------------------------------------------------------------------

def test_a_log_line_with_undecodable_bytes_is_written_not_dropped(tmp_path: Path) -> None:
    logfile = tmp_path / "agent.log"
    log = setup_logging("Probe", "vm1", {"HA_LOGFILE": str(logfile)})
    log.warning("cannot read %s", "/tmp/\udcff.xml")
    logging.getLogger("livemig").handlers[0].flush()
    assert "WARNING: cannot read /tmp/\\xff.xml" in logfile.read_text(encoding="utf-8")


@pytest.mark.parametrize("instance", ["vm%d", "vm%(x)s", "vm%"])
def test_a_percent_in_the_instance_name_keeps_the_log(instance: str) -> None:
    stream = io.StringIO()
    log = setup_logging("Probe", instance, {}, stream=stream)
    log.warning("hello")
    assert f"Probe({instance})[" in stream.getvalue() and "WARNING: hello" in stream.getvalue()


# -- the real executable ----------------------------------------------------------------------------

def run_agent(action: str, tmp_path: Path, **override: bytes) -> Tuple[int, str, str]:
    env: Dict[bytes, bytes] = {
        b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin", b"PYTHONPATH": os.fsencode(ROOT / "lib"),
        b"HA_RSCTMP": os.fsencode(tmp_path / "rsctmp"), b"OCF_ROOT": b"/usr/lib/ocf",
        b"OCF_RESOURCE_INSTANCE": b"vm1", b"OCF_RESKEY_CRM_meta_timeout": b"20000",
        b"OCF_RESKEY_config": os.fsencode(DOMAIN), b"OCF_RESKEY_hypervisor": b"qemu:///system",
        b"OCF_RESKEY_CRM_meta_migrate_target": b"beta",
    }
    for key, value in override.items():
        env[key.encode()] = value
    done = run_agent_process(action, env, agent=(PYTHON, str(AGENT)), timeout=120, pythonpath=None)
    assert not done.timed_out, done.details()
    return done.code, done.stdout, done.stderr


BAD = {  # variable -> a value with a byte that is not UTF-8
    "OCF_RESKEY_config": b"/tmp/livemig-\xff.xml",
    "OCF_RESKEY_hypervisor": b"qemu:///sys\xfftem",
    "OCF_RESOURCE_INSTANCE": b"vm\xff1",
    "OCF_RESKEY_CRM_meta_timeout": b"20\xff000",
}


def assert_clean(stdout: str, stderr: str) -> None:
    assert "Traceback" not in stdout + stderr and "internal error in " not in stdout + stderr, stderr
    assert "UnicodeEncodeError" not in stderr and "UnicodeDecodeError" not in stderr


@pytest.mark.parametrize("variable", list(BAD))
@pytest.mark.parametrize("action", ["validate-all", "start", "migrate_to", "migrate_from"])
def test_the_executable_answers_6_with_a_reason(action: str, variable: str, tmp_path: Path) -> None:
    code, out, err = run_agent(action, tmp_path, **{variable: BAD[variable]})
    assert_clean(out, err)
    assert code == OCFCode.ERR_CONFIGURED, err
    reason = [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]
    assert len(reason) == 1 and "is not valid UTF-8 text" in reason[0] and "\\xff" in reason[0], err


@pytest.mark.parametrize("variable", list(BAD))
def test_the_executable_meta_data_ignores_the_environment(variable: str, tmp_path: Path) -> None:
    code, out, err = run_agent("meta-data", tmp_path, **{variable: BAD[variable]})
    assert code == 0 and err == ""
    assert etree.fromstring(out.encode()).get("name") == "VirtualDomain"


@pytest.mark.parametrize("variable", list(BAD))
@pytest.mark.parametrize("action,interval", [("stop", b"0"), ("monitor", b"0"), ("monitor", b"10000")])
def test_the_executable_stop_and_monitor_behave_as_with_that_wrong_value(
        action: str, interval: bytes, variable: str, tmp_path: Path) -> None:
    """stop, probe and monitor: the code the same wrong value in valid text (U+FFFD) gets, no traceback."""
    code, out, err = run_agent(action, tmp_path, OCF_RESKEY_CRM_meta_interval=interval,
                               **{variable: BAD[variable]})
    assert_clean(out, err)
    assert "is not valid UTF-8 text" in err
    as_text = BAD[variable].replace(b"\xff", "\ufffd".encode())
    same_code, same_out, same_err = run_agent(action, tmp_path, OCF_RESKEY_CRM_meta_interval=interval,
                                              **{variable: as_text})
    assert_clean(same_out, same_err)
    assert code == same_code, (err, same_err)
    if action == "stop":
        assert code == OCFCode.SUCCESS, err  # no domain of this resource runs here
    elif interval == b"0" and variable != "OCF_RESKEY_hypervisor":
        assert code == OCFCode.NOT_RUNNING, err
