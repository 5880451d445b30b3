from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Dict

import pytest
from lxml import etree

from livemig.ocf.agent import ResourceAgent, exit_reason_line
from livemig.ocf.codes import OCFCode
from livemig.ocf.deadline import Deadline, DeadlineExceeded, operation_deadline
from livemig.ocf.environment import OCFEnvironment
from livemig.ocf.errors import ConfigurationError, GenericError, NotInstalledError
from livemig.ocf.logs import debug_enabled, setup_logging
from livemig.ocf.metadata import Action, AgentMetadata, Parameter, parse_boolean, parse_integer
from livemig.ocf.statefile import StateFile

RA_DIR = Path("/usr/share/resource-agents")


def test_codes_are_pacemakers() -> None:
    assert [int(c) for c in OCFCode] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 190, 191]


def test_errors_carry_code_and_reason() -> None:
    assert ConfigurationError("x").code == OCFCode.ERR_CONFIGURED
    assert NotInstalledError("x").code == OCFCode.ERR_INSTALLED
    err = GenericError("boom", code=OCFCode.ERR_PERM)
    assert (err.code, err.reason, str(err)) == (OCFCode.ERR_PERM, "boom", "boom")


def test_environment_from_mapping() -> None:
    env = OCFEnvironment.from_environ("monitor", {
        "OCF_RESKEY_config": "/etc/vm.xml", "OCF_RESKEY_CRM_meta_timeout": "30000",
        "OCF_RESKEY_CRM_meta_interval": "10000", "OCF_RESOURCE_INSTANCE": "vm1", "OCF_CHECK_LEVEL": "10",
        "PATH": "/bin"})
    assert env.params == {"config": "/etc/vm.xml"}
    assert env.meta == {"timeout": "30000", "interval": "10000"}
    assert (env.timeout_ms, env.interval_ms, env.check_level) == (30000, 10000, 10)
    assert env.resource_instance == "vm1"
    assert not env.is_probe


@pytest.mark.parametrize("meta,probe", [({}, True), ({"OCF_RESKEY_CRM_meta_interval": "0"}, True),
                                        ({"OCF_RESKEY_CRM_meta_interval": "5000"}, False)])
def test_probe_detection(meta: Dict[str, str], probe: bool) -> None:
    assert OCFEnvironment.from_environ("monitor", meta).is_probe is probe
    assert OCFEnvironment.from_environ("start", meta).is_probe is False


def test_garbage_meta_values_are_ignored() -> None:
    env = OCFEnvironment.from_environ("monitor", {"OCF_RESKEY_CRM_meta_timeout": "ten",
                                                  "OCF_CHECK_LEVEL": "high"})
    assert env.timeout_ms is None and env.check_level == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_arithmetic() -> None:
    clock = FakeClock()
    d = Deadline(10, clock=clock)
    assert d.remaining() == 10 and d.bound(3) == 3
    clock.now += 8
    assert d.remaining() == 2 and d.bound(3) == 2
    sub = d.sub(0.5)
    assert sub.remaining() == 1
    clock.now += 5
    assert d.expired() and d.remaining() == 0
    with pytest.raises(DeadlineExceeded):
        d.check("waiting")


@pytest.mark.parametrize("timeout_ms,expected", [(20000, 18.0), (90000, 81.0), (300000, 290.0), (None, 27.0)])
def test_operation_deadline_keeps_a_margin(timeout_ms: int, expected: float) -> None:
    assert operation_deadline(timeout_ms, 30.0).total == pytest.approx(expected)


def test_parameter_parsing() -> None:
    assert parse_boolean("x", "Yes") is True and parse_boolean("x", "off") is False
    with pytest.raises(ConfigurationError, match="not a boolean"):
        parse_boolean("x", "maybe")
    assert parse_integer("n", " 42 ") == 42
    for bad in ("4x", "", "1e3", "9" * 30, "--5", "+-5", "\u00b2", "\u0665", "5 5"):
        with pytest.raises(ConfigurationError):
            parse_integer("n", bad)
    with pytest.raises(ConfigurationError, match="below the minimum"):
        parse_integer("n", "-1", minimum=0)
    p = Parameter("mode", "s", "l", choices=("a", "b"), default="a")
    assert p.parse(None) == "a"
    with pytest.raises(ConfigurationError, match="not one of"):
        p.parse("c")
    with pytest.raises(ConfigurationError, match="longer"):
        Parameter("s", "s", "l").parse("x" * 5000)
    with pytest.raises(ConfigurationError, match="NUL"):
        Parameter("s", "s", "l").parse("a\x00b")
    with pytest.raises(ConfigurationError, match="required"):
        Parameter("s", "s", "l", required=True).parse(None)


def _metadata(desc: str = "plain") -> AgentMetadata:
    return AgentMetadata(
        name="Test", version="1.0", shortdesc=desc, longdesc=desc,
        parameters=[Parameter("p", desc, desc, default=desc), Parameter("b", "b", "b", type="boolean", default="0")],
        actions=[Action("start", 20), Action("monitor", 20, interval=10, depth=0), Action("meta-data", 5)])


@pytest.mark.parametrize("schema", ["dtd", "rng"])
def test_metadata_is_valid_and_escaped(schema: str) -> None:
    xml = _metadata('a <b> & "c" \'d\'').to_xml().encode()
    doc = etree.fromstring(xml, etree.XMLParser(resolve_entities=False))
    if schema == "dtd":
        assert etree.DTD(str(RA_DIR / "ra-api-1.dtd")).validate(doc)
    else:
        assert etree.RelaxNG(etree.parse(str(RA_DIR / "metadata.rng"))).validate(doc)
    assert doc.findtext("shortdesc") == 'a <b> & "c" \'d\''
    assert doc.find("parameters/parameter/content").get("default") == 'a <b> & "c" \'d\''
    assert all(a.get("timeout") for a in doc.iter("action"))


class Boom(ResourceAgent):
    metadata = _metadata()

    def action_start(self) -> OCFCode:
        if self.env.raw["ERR"] == "ocf":
            raise ConfigurationError("bad\nthing")
        raise RuntimeError("kaput")

    def action_monitor(self) -> OCFCode:
        return OCFCode.NOT_RUNNING


def _main(argv, environ):  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    code = Boom.main(argv, environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_dispatch_maps_errors_to_codes_and_reasons() -> None:
    code, out, err = _main(["Test", "start"], {"ERR": "ocf"})
    assert code == 6 and out == ""
    assert "ocf-exit-reason:bad thing\n" in err


def test_dispatch_unexpected_exception_is_code_1_without_traceback() -> None:
    code, out, err = _main(["Test", "start"], {"ERR": "other", "OCF_EXIT_REASON_PREFIX": "XR:"})
    assert code == 1 and out == ""
    assert "XR:internal error in start: RuntimeError: kaput" in err
    assert "Traceback" not in err


def test_dispatch_static_and_unknown_actions() -> None:
    code, out, _ = _main(["Test", "meta-data"], {})
    assert code == 0 and out.startswith("<?xml")
    assert _main(["Test", "monitor"], {})[0] == 7
    assert _main(["Test", "frobnicate"], {})[0] == 3
    assert _main(["Test", "stop"], {})[0] == 3  # declared nowhere: unimplemented
    assert _main(["Test"], {})[0] == 2
    code, out, _ = _main(["Test", "usage"], {})
    assert code == 0 and "usage: Test" in out


def test_exit_reason_line_honours_prefix() -> None:
    assert exit_reason_line("a\nb", {}) == "ocf-exit-reason:a b"
    assert exit_reason_line("x", {"OCF_EXIT_REASON_PREFIX": "P "}) == "P x"


def test_logging_to_file_names_the_instance(tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    log = setup_logging("Test", "vm7", {"HA_LOGFILE": str(logfile), "HA_debug": "1"})
    log.debug("hello %s", "world")
    for h in log.handlers:
        h.flush()
    text = logfile.read_text()
    assert "Test(vm7)" in text and "DEBUG: hello world" in text


def test_logging_falls_back_to_stderr_and_debug_is_off_by_default() -> None:
    stream = io.StringIO()
    log = setup_logging("Test", "vm8", {}, stream=stream)
    log.debug("hidden")
    log.info("shown")
    assert "hidden" not in stream.getvalue() and "Test(vm8)" in stream.getvalue()
    assert log.level == logging.INFO
    assert debug_enabled({"PCMK_debug": "pacemaker-execd,Test"}, "Test")
    assert not debug_enabled({"HA_debug": "0"}, "Test")


def test_a_previous_handlers_closed_stream_does_not_fail_the_next_setup(tmp_path: Path) -> None:
    # Closing the previous invocation's handlers flushes their streams (FileHandler.close): one
    # closed since (by the test that opened it, a log file's descriptor closed) raised ValueError
    # out of the next action's setup, seen on Debian 11's Python 3.9.
    log = setup_logging("Test", "vm8", {"HA_LOGFILE": str(tmp_path / "ha.log")})
    log.info("one")
    for handler in log.handlers:
        handler.stream.close()  # type: ignore[attr-defined]
    second = io.StringIO()
    setup_logging("Test", "vm8", {}, stream=second).info("two")
    assert "two" in second.getvalue()


def test_statefile_roundtrip_and_corruption(tmp_path: Path) -> None:
    sf = StateFile("Agent", "res/../x", {"HA_RSCTMP": str(tmp_path)})
    assert Path(sf.path).parent == tmp_path  # no traversal out of the directory
    assert sf.load() == {}
    sf.update(name="vm1")
    assert sf.load() == {"name": "vm1"}
    Path(sf.path).write_text("{not json")
    assert sf.load() == {}


def test_statefile_unwritable_directory_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    sf = StateFile("Agent", "r", {"HA_RSCTMP": str(blocker / "sub")})
    assert sf.save({"a": 1}) is False


def test_exit_reason_is_cut_to_what_pacemaker_keeps() -> None:
    line = exit_reason_line("x" * 300, {})
    assert len(line) == len("ocf-exit-reason:") + 128 - 12 + len(" (see log)")
    assert line.endswith("(see log)")


def test_unreachable_syslog_never_prints_tracebacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import sys

    monkeypatch.setattr("livemig.ocf.logs.SYSLOG_SOCKET", str(tmp_path / "no-such-socket"))
    err = io.StringIO()
    log = setup_logging("Test", "vm9", {"HA_LOGFACILITY": "daemon"}, stream=err)
    with contextlib.redirect_stderr(err):
        log.error("boom")
    assert "Traceback" not in err.getvalue() and "Logging error" not in err.getvalue()
    assert "boom" in err.getvalue()  # fell back to stderr
    sys.stderr.flush()


def test_broken_log_handler_is_silent(tmp_path: Path) -> None:
    import contextlib

    logfile = tmp_path / "ha.log"
    log = setup_logging("Test", "vm9", {"HA_LOGFILE": str(logfile)})
    for handler in log.handlers:
        handler.stream.close()  # type: ignore[attr-defined]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        log.error("lost")
    assert err.getvalue() == ""


def test_statefile_ignores_symlinks_and_foreign_files(tmp_path: Path) -> None:
    import os

    sf = StateFile("Agent", "r", {"HA_RSCTMP": str(tmp_path)})
    target = tmp_path / "elsewhere.json"
    target.write_text('{"name": "planted"}')
    os.symlink(target, sf.path)
    assert sf.load() == {}
    os.unlink(sf.path)
    Path(sf.path).write_text('{"name": "vm1"}')
    os.chmod(sf.path, 0o666)  # writable by anyone: not trusted
    assert sf.load() == {}
    os.chmod(sf.path, 0o600)
    assert sf.load() == {"name": "vm1"}
    os.chmod(tmp_path, 0o777)  # a world-writable directory without the sticky bit
    try:
        assert sf.load() == {} and sf.save({"a": 1}) is False
    finally:
        os.chmod(tmp_path, 0o755)
