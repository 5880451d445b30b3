"""`livemig config` output applied with the real crmsh / pcs to an empty CIB file.

The resulting CIB must be accepted by crm_verify and pass `livemig check`. Nothing
touches a live cluster: crmsh and cibadmin work on the file named by CIB_file, pcs on
the one named by -f. ocf:livemig:VirtualDomain is not installed on a test host, so crmsh
runs with check_mode=relaxed (it then reports the missing agent instead of refusing it)
and pcs gets --force for that one primitive. `livemig config` keeps fencing enabled, so a
fencing device is configured first, as on any real cluster (crm_verify refuses a CIB
with neither a device nor stonith-enabled=false).
"""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from livemig.cli.main import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DOMAIN = FIXTURES / "cib" / "domain-vm1.xml"
DRBD_XML = FIXTURES / "drbd" / "check" / "check-9-good.dump-xml.txt"
FENCING = ("primitive fence-alpha stonith:external/ssh params hostlist=alpha\n"
           "primitive fence-beta stonith:external/ssh params hostlist=beta\n")


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed (make deps installs them)", pytrace=False)


def sh(argv: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    full = dict(os.environ)
    full.update(env)
    return subprocess.run(argv, env=full, capture_output=True, text=True, timeout=120, check=False)


def livemig(argv: List[str]) -> Tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def empty_cib(tmp_path: Path) -> Path:
    cib = tmp_path / "cib.xml"
    result = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, timeout=60, check=True)
    cib.write_text(result.stdout, encoding="utf-8")
    return cib


def crmsh_env(tmp_path: Path, cib: Path) -> Dict[str, str]:
    conf = tmp_path / "crm.conf"
    conf.write_text("[core]\ncheck_mode = relaxed\n", encoding="utf-8")
    return {"CIB_file": str(cib), "CRM_CONFIG_FILE": str(conf)}


def check(cib: Path) -> Tuple[int, str]:
    return livemig(["check", "vm1", "--cib", str(cib), "--drbd-xml", str(DRBD_XML), "--domain-xml", str(DOMAIN),
                    "--skip-runtime", "--skip-libvirt"])


def crm_verify(cib: Path) -> None:
    result = subprocess.run(["crm_verify", "-x", str(cib)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def config_output(pcs: bool = False) -> str:
    code, text = livemig(["config", "vm1", "--domain-xml", str(DOMAIN), "--drbd-resource", "r0",
                          "--config-path", "/etc/libvirt/qemu/vm1.xml"] + (["--pcs"] if pcs else []))
    assert code == 0, text
    return text


def test_crmsh_roundtrip(tmp_path: Path) -> None:
    need("crm", "cibadmin", "crm_verify")
    cib = empty_cib(tmp_path)
    script = tmp_path / "vm1.crm"
    script.write_text(FENCING + config_output(), encoding="utf-8")
    result = sh(["crm", "configure", "load", "update", str(script)], crmsh_env(tmp_path, cib))
    assert result.returncode == 0, result.stdout + result.stderr
    crm_verify(cib)
    code, text = check(cib)
    assert code == 0, text
    assert "0 fail" in text


def test_crmsh_roundtrip_with_fencing_disabled_fails_the_check(tmp_path: Path) -> None:
    need("crm", "cibadmin", "crm_verify")
    cib = empty_cib(tmp_path)
    script = tmp_path / "vm1.crm"
    # what an operator does to get past crm_verify without a fencing device
    text = config_output().replace("property stonith-enabled=true", "property stonith-enabled=false")
    script.write_text(text, encoding="utf-8")
    result = sh(["crm", "configure", "load", "update", str(script)], crmsh_env(tmp_path, cib))
    assert result.returncode == 0, result.stdout + result.stderr
    crm_verify(cib)  # Pacemaker accepts it ...
    code, text = check(cib)  # ... livemig does not
    assert code == 1
    assert "fix: crm configure property stonith-enabled=true" in text
    assert "no fencing (stonith) device" in text


def pcs_commands(output: str, nodes: Tuple[str, ...]) -> List[List[str]]:
    """A fencing device per node, then the ``pcs`` lines of ``output`` (``livemig config --pcs``), as argv.

    --force: pcs 0.12 (Debian 13) finds cluster-glue's external/ssh meta-data invalid (the fencing
    devices only stand in for the real ones a cluster has), and the agent is not installed on a test host.
    """
    commands = [["pcs", "stonith", "create", f"fence-{n}", "external/ssh", f"hostlist={n}", "--force"] for n in nodes]
    for line in output.splitlines():
        if line.startswith("pcs "):
            argv = shlex.split(line)
            if "ocf:livemig:VirtualDomain" in argv:
                argv.append("--force")
            commands.append(argv)
    return commands


def test_pcs_roundtrip(tmp_path: Path) -> None:
    need("pcs", "cibadmin", "crm_verify")
    cib = empty_cib(tmp_path)
    for argv in pcs_commands(config_output(pcs=True), ("alpha", "beta")):
        argv = [argv[0], "-f", str(cib), *argv[1:]]
        result = sh(argv, {})
        assert result.returncode == 0, f"{shlex.join(argv)}: {result.stdout}{result.stderr}"
    crm_verify(cib)
    code, text = check(cib)
    assert code == 0, text
