"""Hostile input under strace: no command runs, nothing outside the configured files is read or written.

The agent runs as Pacemaker runs it (tests/support/agent.py) under
``strace -f -e trace=%file,%process``. From the trace:

- exactly one program is executed (the agent's Python): no shell, no helper;
- every file opened for writing, created, renamed or removed is under HA_RSCTMP;
- every file read is the config file, HA_RSCTMP, or part of the runtime
  (Python, libraries, locale, /proc, /sys, libvirt's client configuration):
  an XXE entity or an external DTD naming a secret file never opens it.

No libvirtd is needed: the hypervisor URI names a socket that does not exist,
so stop and monitor also walk the /proc fallback.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.support.agent import AGENT, REPO, SYSTEM_PYTHON, ocf_env, run_agent

VALID = "<domain type='qemu'><name>lmt-strace</name><memory unit='MiB'>128</memory></domain>\n"

#: runtime files any Python + libvirt client process reads
_RUNTIME_READS = ("/usr/", "/lib/", "/lib64/", "/etc/ld.so.cache", "/etc/localtime", "/etc/libvirt/",
                  "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/host.conf", "/etc/hosts",
                  "/etc/resolv.conf", "/etc/gai.conf", "/proc/", "/sys/", "/dev/null", "/dev/urandom",
                  "/root/.config/libvirt", "/root/.cache/libvirt", "/run/libvirt/", str(REPO) + "/")

_OPEN = re.compile(r'^\d+\s+(openat|open|creat)\((?:AT_FDCWD|\d+), "([^"]*)", ([A-Z_|]+)')
_PATH_CALL = re.compile(r'^\d+\s+(mkdir|mkdirat|rename|renameat2?|unlink|unlinkat|rmdir|symlink|link|chmod|'
                        r'fchmodat|chown|truncate)\((?:AT_FDCWD, |\d+, )?"([^"]*)"')
_EXECVE = re.compile(r'^\d+\s+execve\("([^"]*)".* = (-?\d+)')


def _trace(tmp_path: Path, action: str, params: Dict[str, str], rsctmp: Path) -> Tuple[int, str, List[str]]:
    log = tmp_path / f"trace-{action}"
    # Python's own byte-code cache is not the agent's doing: a checkout whose modules were never
    # compiled (a fresh clone, or a session with PYTHONDONTWRITEBYTECODE) would otherwise show
    # __pycache__ writes the agent does not make once installed.
    env = ocf_env(params, instance="lmt-strace", timeout_ms=10000,
                  interval_ms=0 if action == "monitor" else None,
                  extra={"HA_RSCTMP": str(rsctmp), "PYTHONDONTWRITEBYTECODE": "1"})
    strace = shutil.which("strace")
    assert strace, "strace is needed (apt-get install strace)"
    res = run_agent(action, env, agent=(strace, "-f", "-qq", "-s", "512", "-o", str(log),
                                        "-e", "trace=%file,%process", SYSTEM_PYTHON, str(AGENT)))
    assert not res.timed_out, res.details()
    return res.code, res.exit_reason, log.read_text().splitlines()


def _violations(lines: List[str], allowed_reads: Tuple[str, ...], rsctmp: Path) -> List[str]:
    bad: List[str] = []
    executed = [m.group(1) for m in map(_EXECVE.match, lines) if m and m.group(2) == "0"]
    if executed != [SYSTEM_PYTHON]:
        bad.append(f"programs executed: {executed}")
    writable = str(rsctmp) + "/"
    for line in lines:
        m = _OPEN.match(line)
        if m:
            path, flags = m.group(2), m.group(3)
            if "ENOENT" in line and "O_CREAT" not in flags:
                continue  # a lookup that found nothing (Python's import path, libvirt's optional config)
            if any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")):
                if not path.startswith(writable) and path != "/dev/null":
                    bad.append(f"written: {line}")
            elif not path.startswith(allowed_reads) and path not in (".", "", "/proc", "/sys"):
                bad.append(f"read: {line}")
            continue
        m = _PATH_CALL.match(line)
        if m and " = 0" in line and not (m.group(2) + "/").startswith(writable):
            bad.append(f"changed: {line}")
    return bad


CASES = [
    ("xxe", "validate-all", {"config": "{dir}/xxe.xml"}, 6),
    ("xxe-start", "start", {"config": "{dir}/xxe.xml"}, 6),
    ("external-dtd", "start", {"config": "{dir}/dtd.xml"}, 6),
    ("billion-laughs", "validate-all", {"config": "{dir}/laughs.xml"}, 6),
    ("shell-metachars", "start", {"config": "{dir}/ok.xml", "shutdown_mode": "$(touch {dir}/pwned)",
                                  "migrate_options": "--p2p; touch {dir}/pwned"}, 6),
    ("remoteuri-percent", "validate-all", {"config": "{dir}/ok.xml", "remoteuri": "qemu+ssh://%n/%s`id`"}, 6),
    ("drbd-option-injection", "start", {"config": "{dir}/ok.xml", "drbd_resources": "--config-file={dir}/secret"}, 6),
    ("path-traversal-config", "validate-all", {"config": "{dir}" + "/.." * 20 + "/{secret_rel}"}, 6),
    ("hostile-stop", "stop", {"config": "{dir}/ok.xml", "shutdown_mode": "`touch {dir}/pwned`",
                              "snapshot": "../../../tmp", "migrateport": "--5"}, 0),
    ("hostile-probe", "monitor", {"config": "{dir}/ok.xml", "monitor_scripts": "/bin/sh -c reboot"}, 6),
    ("probe", "monitor", {"config": "{dir}/ok.xml"}, 7),
]


@pytest.mark.parametrize(("case", "action", "params", "code"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input_touches_nothing_else(tmp_path: Path, case: str, action: str, params: Dict[str, str],
                                            code: int) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    secret = conf / "secret"
    secret.write_text("SECRET-TOKEN\n")
    (conf / "ok.xml").write_text(VALID)
    (conf / "xxe.xml").write_text(f"<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY x SYSTEM 'file://{secret}'>]>"
                                  "<domain><name>&x;</name></domain>\n")
    (conf / "dtd.xml").write_text(f"<!DOCTYPE domain SYSTEM '{secret}'><domain><name>lmt-strace</name></domain>\n")
    (conf / "laughs.xml").write_text(
        "<!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'>" + "".join(
            f"<!ENTITY {chr(98 + i)} '{('&' + chr(97 + i) + ';') * 10}'>" for i in range(9))
        + "]><domain><name>&j;</name></domain>\n")
    rsctmp = tmp_path / "rsctmp"
    filled = {k: v.replace("{dir}", str(conf)).replace("{secret_rel}", str(secret).lstrip("/"))
              for k, v in params.items()}
    filled.setdefault("hypervisor", f"qemu:///system?socket={tmp_path}/no-libvirtd/sock")
    got, reason, lines = _trace(tmp_path, action, filled, rsctmp)
    assert got == code, f"{case}: {action} -> {got} ({reason})"
    if code:
        assert reason, f"{case}: no exit reason"
    assert "SECRET" not in reason
    allowed = _RUNTIME_READS + (str(conf / "ok.xml"), str(rsctmp) + "/")
    xml_file = {"xxe": "xxe.xml", "xxe-start": "xxe.xml", "external-dtd": "dtd.xml", "billion-laughs": "laughs.xml"}
    if case in xml_file:
        allowed += (str(conf / xml_file[case]),)
    if case == "path-traversal-config":
        # the configured path itself is read (it is what was configured), and refused as not XML
        allowed += (filled["config"],)
    bad = _violations(lines, allowed, rsctmp)
    assert not bad, f"{case}:\n" + "\n".join(bad[:20])
    assert not (conf / "pwned").exists()
    if case != "path-traversal-config":
        assert not [line for line in lines if str(secret) in line and "open" in line], f"{case}: opened the secret"
    for entry in rsctmp.glob("*") if rsctmp.exists() else []:
        assert entry.name.startswith("livemig-VirtualDomain-") and entry.suffix == ".json", entry
        assert entry.stat().st_mode & 0o077 == 0, f"{entry} is readable by others: {oct(entry.stat().st_mode)}"
