"""`livemig config`: the commands, their operation timeouts, and the CLI around check/config."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import unicodedata
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from livemig.agents.virtualdomain.metadata import METADATA
from livemig.cli.main import main
from livemig.ocf.metadata import Action
from livemig.pacemaker.config_generator import ConfigError, VmSetup, crmsh_commands, pcs_commands
from livemig.run import CommandResult, CommandRunner
from tests.unit.check.helpers import CIB, DRBD

DOMAIN = str(CIB / "domain-vm1.xml")


class FileCibRunner(CommandRunner):
    """cibadmin --query answered from the file CIB_file names, as the real one does."""

    def run(self, argv: Sequence[str], timeout: float, stdin: Optional[str] = None,
            env: Optional[Mapping[str, str]] = None) -> CommandResult:
        assert list(argv) == ["cibadmin", "--query"] and env is not None
        return CommandResult(list(argv), 0, Path(env["CIB_file"]).read_text(encoding="utf-8"), "")


def run(argv: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, runner=FileCibRunner(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def setup(**kw: object) -> VmSetup:
    values = {"vm_id": "vm1", "config_path": "/etc/libvirt/qemu/vm1.xml", "drbd_resources": ["r0"],
              "actions": METADATA.actions}
    values.update(kw)
    return VmSetup(**values)  # type: ignore[arg-type]


DRBD_OPS_CRMSH = ("op start interval=0s timeout=240s op stop interval=0s timeout=100s "
                  "op promote interval=0s timeout=90s op demote interval=0s timeout=90s "
                  "op notify interval=0s timeout=90s op monitor interval=29s role=Promoted timeout=20s "
                  "op monitor interval=31s role=Unpromoted timeout=20s")


def test_crmsh_commands() -> None:
    text = crmsh_commands(setup())
    lines = text.splitlines()
    statements = [line for line in lines if not line.startswith("#")]
    # the notes come after every statement: crmsh drops trailing comments instead of storing them
    # inside the first element as XML comments
    assert lines[:len(statements)] == statements and all(line.startswith("#") for line in lines[len(statements):])
    assert statements[0] == f"primitive drbd_r0 ocf:linbit:drbd params drbd_resource=r0 {DRBD_OPS_CRMSH}"
    assert statements[1] == ("clone ms_drbd_r0 drbd_r0 meta promotable=true promoted-max=2 promoted-node-max=1 "
                             "clone-max=2 clone-node-max=1 notify=true interleave=true")
    assert "colocation col_vm1_on_ms_drbd_r0 inf: vm1:Started ms_drbd_r0:Promoted" in statements
    assert "order ord_ms_drbd_r0_before_vm1 Mandatory: ms_drbd_r0:promote vm1:start" in statements
    assert statements[-1] == "property stonith-enabled=true"
    assert "fencing (stonith) device" in text
    assert not any(word in text for word in ("master", "Master", "Slave", " ms "))


def test_operation_timeouts_come_from_the_meta_data() -> None:
    vm_line = next(line for line in crmsh_commands(setup()).splitlines() if line.startswith("primitive vm1"))
    for action in METADATA.actions:
        if action.name in ("start", "stop", "monitor", "migrate_to", "migrate_from"):
            assert f"op {action.name}" in vm_line and f"timeout={action.timeout}s" in vm_line
    custom = setup(actions=[Action("start", 11), Action("migrate_to", 222), Action("monitor", 7, interval=3)])
    vm_line = next(line for line in crmsh_commands(custom).splitlines() if line.startswith("primitive vm1"))
    assert vm_line.endswith("op start interval=0s timeout=11s op monitor interval=3s timeout=7s "
                            "op migrate_to interval=0s timeout=222s")
    assert "no migrate_from timeout" in crmsh_commands(custom)


def test_pcs_commands() -> None:
    lines = [line for line in pcs_commands(setup(drbd_resources=["r0", "r1"])).splitlines()
             if not line.startswith("#")]
    assert lines[0] == ("pcs resource create drbd_r0 ocf:linbit:drbd drbd_resource=r0 op "
                        + " ".join(w for w in DRBD_OPS_CRMSH.split() if w != "op") + " --no-default-ops")
    # the clone made after the primitive, its meta attributes after `meta` (pcs 0.12 deprecates
    # them without it; inside `resource create` they would land on the primitive)
    assert lines[1] == ("pcs resource promotable drbd_r0 ms_drbd_r0 meta promoted-max=2 promoted-node-max=1 "
                        "clone-max=2 clone-node-max=1 notify=true interleave=true")
    assert ("pcs constraint colocation add vm1 with Promoted ms_drbd_r1 score=INFINITY id=col_vm1_on_ms_drbd_r1"
            in lines)
    assert "pcs constraint order promote ms_drbd_r1 then start vm1 kind=Mandatory id=ord_ms_drbd_r1_before_vm1" in lines
    assert lines[-1] == "pcs property set stonith-enabled=true"
    assert not any(" INFINITY" in line for line in lines)  # no standalone score (deprecated in pcs 0.12)


@pytest.mark.parametrize("bad", [{"vm_id": "1 vm"}, {"config_path": "vm1.xml"}, {"drbd_resources": []},
                                 {"drbd_resources": ["r0; rm"]}])
def test_bad_setups_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError):
        crmsh_commands(setup(**bad))


def test_cli_config() -> None:
    code, out, err = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0"])
    assert code == 0 and err == "" and f"config={DOMAIN}" in out
    code, out, _ = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0", "--pcs",
                        "--config-path", "/etc/libvirt/qemu/vm1.xml"])
    assert code == 0 and "pcs resource create vm1 ocf:livemig:VirtualDomain config=/etc/libvirt/qemu/vm1.xml" in out
    code, _, err = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r7"])
    assert code == 0 and "disk vda is on DRBD resource r0, which no --drbd-resource names" in err
    code, _, err = run(["config", "vm1", "--domain-xml", "/nonexistent.xml", "--drbd-resource", "r0"])
    assert code == 2 and "/nonexistent.xml" in err


def test_cli_check_table_json_and_exit_codes() -> None:
    base = ["check", "vm1", "--drbd-xml", str(DRBD / "check-9-good.dump-xml.txt"), "--domain-xml", DOMAIN,
            "--skip-runtime", "--skip-libvirt", "--peer", "beta"]
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-good.xml")])
    assert code == 0 and "nothing prevents a safe live migration" in out and "maintenance-mode=true" in out
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-promoted-max-1.xml")])
    assert code == 1
    assert "fix: crm resource meta ms_drbd_r0 set promoted-max 2" in out
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-promoted-max-1.xml"), "--pcs", "--problems"])
    assert "fix: pcs resource meta ms_drbd_r0 promoted-max=2" in out and "\nok " not in out
    code, out, _ = run(base + ["--cib", str(CIB / "crmsh-promoted-max-1.xml"), "--json"])
    document = json.loads(out)
    assert document["exit_code"] == 1 and document["counts"]["fail"] == 1
    failed = [c for c in document["checks"] if c["status"] == "fail"]
    assert failed[0]["name"] == "promoted-max" and failed[0]["fix_detail"]["pcs"].startswith("pcs resource meta")
    code, _, err = run(base + ["--cib", "/nonexistent/cib.xml"])
    assert code == 2 and "/nonexistent/cib.xml" in err
    assert run(["check", "--help"])[0] == 0


# -- hostile values: each value stays one word, or is refused -------------------------------------

FORBIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs"}  # controls, format characters, line/paragraph separators, surrogates
ONE_RES = ["primitive", "clone", "primitive", "colocation", "order", "property"]


def forbidden(value: str) -> bool:
    return any(unicodedata.category(c) in FORBIDDEN for c in value)


def crmsh_cannot_store(value: str) -> bool:
    return "\\" in value or not value.isascii()


def vm_ops() -> List[str]:
    ops: List[str] = []
    by_name = {a.name: a for a in METADATA.actions}
    for name in ("start", "stop", "monitor", "migrate_to", "migrate_from"):
        action = by_name[name]
        ops += ["op", name, f"interval={action.interval or 0}s", f"timeout={action.timeout}s"]
    return ops


def statements(text: str) -> List[List[str]]:
    """What crmsh reads: one statement per line (a line ending in a backslash would continue)."""
    lines = [line for line in text.split("\n") if line.strip() and not line.startswith("#")]
    assert not any(line.rstrip().endswith("\\") for line in lines)
    assert text.splitlines() == text.rstrip("\n").split("\n")  # no other line break anywhere
    return [shlex.split(line) for line in lines]


def pcs_argvs_through_sh(text: str) -> List[List[str]]:
    """The argv each pcs line gives pcs, as a real POSIX shell (/bin/sh) parses the lines."""
    script = 'pcs() { printf "%s\\0" "$@"; printf "\\n"; }\n' + text
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=30, check=True)
    # one record per call, its arguments NUL-terminated (no argument has a newline: refused)
    return [[arg.decode("utf-8") for arg in record.split(b"\0")[:-1]] for record in done.stdout.split(b"\n")[:-1]]


SHELL_CHARS = st.sampled_from(list(" '\"$`;|&<>()[]{}*?~#!=%^,:@+-_./"))
CONTROL_CHARS = st.sampled_from(list("\t\n\r\x00\x0b\x0c\x1b\x7f\x85\u2028\u2029\u202e\u200b\udcff"))
#: printable ASCII without a backslash (crmsh stores it as given), shell syntax favoured
CRMSH_LEGAL = st.text(st.one_of(SHELL_CHARS, st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                                           blacklist_characters="\\")), max_size=30)
#: any text but the forbidden categories (pcs stores it as given)
PCS_LEGAL = st.text(st.one_of(SHELL_CHARS, st.sampled_from(list("\\é漢")),
                              st.characters(blacklist_categories=tuple(FORBIDDEN))), max_size=30)
#: anything, control characters favoured
HOSTILE = st.text(st.one_of(SHELL_CHARS, CONTROL_CHARS, st.characters()), max_size=30)
VALUES = st.one_of(CRMSH_LEGAL, PCS_LEGAL, HOSTILE)


@settings(max_examples=300, deadline=None)
@given(path=VALUES, hypervisor=VALUES)
def test_crmsh_hostile_values_are_one_word_or_refused(path: str, hypervisor: str) -> None:
    config_path = "/" + path
    hostile = setup(config_path=config_path, hypervisor=hypervisor)
    if any(forbidden(v) or crmsh_cannot_store(v) for v in (config_path, hypervisor)):
        with pytest.raises(ConfigError, match="contains"):
            crmsh_commands(hostile)
        event("refused")
        return
    event("accepted")
    parsed = statements(crmsh_commands(hostile))
    assert [words[0] for words in parsed] == ONE_RES
    assert parsed[2] == ["primitive", "vm1", "ocf:livemig:VirtualDomain", "params", f"config={config_path}",
                         f"hypervisor={hypervisor}", "meta", "allow-migrate=true", *vm_ops()]
    assert parsed[-1] == ["property", "stonith-enabled=true"]


@settings(max_examples=150, deadline=None)
@given(path=VALUES, hypervisor=VALUES)
def test_pcs_hostile_values_are_one_shell_word_or_refused(path: str, hypervisor: str) -> None:
    config_path = "/" + path
    hostile = setup(config_path=config_path, hypervisor=hypervisor)
    if forbidden(config_path) or forbidden(hypervisor):
        with pytest.raises(ConfigError, match="contains a control character"):
            pcs_commands(hostile)
        event("refused")
        return
    event("accepted")
    argvs = pcs_argvs_through_sh(pcs_commands(hostile))
    assert [argv[:2] for argv in argvs] == [["resource", "create"], ["resource", "promotable"], ["resource", "create"],
                                            ["constraint", "colocation"], ["constraint", "order"],
                                            ["property", "set"]]
    ops = [word for word in vm_ops() if word not in ("op", "interval=0s")]
    assert argvs[2] == ["resource", "create", "vm1", "ocf:livemig:VirtualDomain", f"config={config_path}",
                        f"hypervisor={hypervisor}", "meta", "allow-migrate=true", "op", *ops, "--no-default-ops"]


@pytest.mark.parametrize("field,value", [
    ("config_path", "/etc/vm1.xml\nproperty stonith-enabled=false"),
    ("config_path", "/etc/vm1.xml\rproperty stonith-enabled=false"),
    ("config_path", "/etc/vm1.xml\x00"),
    ("config_path", "/etc/vm1.xml\x1b[2K"),
    ("config_path", "/etc/vm1\u2028.xml"),
    ("config_path", "/etc/vm1\udcff.xml"),  # a byte that was not UTF-8 (surrogateescape)
    ("hypervisor", "qemu:///system\nproperty stonith-enabled=false"),
    ("hypervisor", "qemu:///system\t"),
    ("vm_id", "vm1\n"),  # the old ^...$ pattern let a trailing newline through
    ("drbd_resources", ["r0\n"]),
])
@pytest.mark.parametrize("tool", [crmsh_commands, pcs_commands])
def test_control_characters_are_refused_naming_the_value(field: str, value: object, tool: object) -> None:
    with pytest.raises(ConfigError) as caught:
        tool(setup(**{field: value}))  # type: ignore[operator]
    text = str(caught.value)
    shown = value[0] if isinstance(value, list) else value
    assert repr(shown) in text and "control character" in text


@pytest.mark.parametrize("value,why", [("/srv/vm\\1.xml", "a backslash"), ("/srv/vm1\\", "a backslash"),
                                       ("/srv/vmé.xml", "a non-ASCII character")])
def test_values_crmsh_would_not_store_as_given_are_refused_for_crmsh_only(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"contains {why}, which crmsh does not store as given; use --pcs"):
        crmsh_commands(setup(config_path=value))
    argvs = pcs_argvs_through_sh(pcs_commands(setup(config_path=value)))
    assert f"config={value}" in argvs[2]


def test_cli_config_refuses_a_newline_with_exit_2() -> None:
    for extra in (["--config-path", "/etc/vm1.xml\nproperty stonith-enabled=false"],
                  ["--hypervisor", "qemu:///system\nproperty stonith-enabled=false", "--pcs"]):
        code, out, err = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0", *extra])
        assert code == 2 and out == "", out
        assert "contains a control character (U+000A" in err and "stonith-enabled=false'" in err
