"""The agent as Pacemaker's own tools see it: ocf-tester, crm_resource, pcs, and its meta-data.

crm_resource and pcs find agents under /usr/lib/ocf/resource.d only: those tests
install a wrapper there (tests/support/ocf_provider.py) and remove it afterwards.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.support.agent import AGENT, REPO, SYSTEM_PYTHON, agent_for_any_user
from tests.support.ocf_provider import installed_agent
from tests.support.vm import TestVM

OK, NOT_INSTALLED, NOT_RUNNING = 0, 5, 7
RA_DTD_DIR = Path("/usr/share/resource-agents")


def _tool_env(rsctmp: Path) -> Dict[str, str]:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HA_RSCTMP": str(rsctmp),
        # The agent must run from the working tree even if a livemig package is installed.
        "PYTHONPATH": str(REPO / "lib"),
    }
    return env


def _run(argv: List[str], env: Dict[str, str], timeout: float, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(proc.args)} -> {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def test_meta_data_is_valid(tmp_path: Path) -> None:
    """What ocf-tester checks (ra-api-1.dtd) and what Pacemaker's schema says (metadata.rng)."""
    proc = _run([SYSTEM_PYTHON, str(AGENT), "meta-data"], _tool_env(tmp_path), 30)
    assert proc.returncode == OK, _explain(proc)
    # The DOCTYPE names ra-api-1.dtd relatively: validate from its directory, as ocf-tester does.
    dtd = subprocess.run(["xmllint", "--noout", "--valid", "-"], input=proc.stdout, cwd=RA_DTD_DIR,
                         capture_output=True, text=True, timeout=30, check=False)
    assert dtd.returncode == 0, f"not valid against ra-api-1.dtd: {_explain(dtd)}"
    meta = tmp_path / "meta-data.xml"
    meta.write_text(proc.stdout)
    rng = _run(["xmllint", "--noout", "--relaxng", str(RA_DTD_DIR / "metadata.rng"), str(meta)],
               _tool_env(tmp_path), 30)
    assert rng.returncode == 0, f"not valid against metadata.rng: {_explain(rng)}"


def test_ocf_tester(vm: TestVM, rsctmp: Path) -> None:
    # ocf-tester runs meta-data as nobody: the working tree's files, from a directory nobody can read
    # even when the checkout lies under a 0700 one (Debian's /root).
    with agent_for_any_user() as agent:
        env = dict(_tool_env(rsctmp), PYTHONPATH=str(agent.parents[1] / "lib"))
        proc = _run(["ocf-tester", "-n", vm.name, "-o", f"config={vm.config}", "-o", f"hypervisor={vm.daemon.uri}",
                     str(agent)], env, 600)
    assert proc.returncode == 0 and "passed all tests" in proc.stdout, _explain(proc)
    assert vm.domain() is None, "ocf-tester ends with the resource stopped"


@pytest.fixture(scope="module")
def provider() -> Iterator[Path]:
    with installed_agent() as path:
        yield path


def _crm(action: str, vm: TestVM, rsctmp: Path, *options: str, timeout_s: int = 30) -> subprocess.CompletedProcess[str]:
    argv = ["crm_resource", f"--{action}", "--class", "ocf", "--provider", "livemig", "--agent", "VirtualDomain",
            "--timeout", f"{timeout_s}s"]
    for option in (f"config={vm.config}", f"hypervisor={vm.daemon.uri}", *options):
        argv += ["--option", option]
    return _run(argv, _tool_env(rsctmp), timeout_s + 30)


def test_crm_resource_lifecycle(provider: Path, vm: TestVM, rsctmp: Path) -> None:
    steps = [
        ("validate", OK),
        ("force-check", NOT_RUNNING),
        ("force-start", OK),
        ("force-check", OK),
        ("force-start", OK),
        ("force-stop", OK),
        ("force-check", NOT_RUNNING),
        ("force-stop", OK),
    ]
    for action, expected in steps:
        if action == "force-stop" and vm.domain() is not None:
            vm.wait_ready()  # a graceful stop, not the destroy fallback
        proc = _crm(action, vm, rsctmp)
        assert proc.returncode == expected, f"{action}: expected {expected}\n{_explain(proc)}"
        if action == "force-start":
            assert vm.qemu_pid() is not None
    assert vm.domain() is None
    assert vm.last_stop_reason() == "shutdown"


def test_crm_resource_validate_reports_bad_config(provider: Path, vm: TestVM, rsctmp: Path) -> None:
    vm.config.unlink()
    proc = _crm("validate", vm, rsctmp)
    assert proc.returncode == NOT_INSTALLED, _explain(proc)
    assert "ocf-exit-reason" in proc.stdout + proc.stderr or str(vm.config) in proc.stdout + proc.stderr, _explain(proc)


def test_pcs_describes_the_agent(provider: Path, tmp_path: Path) -> None:
    proc = _run(["pcs", "resource", "describe", "ocf:livemig:VirtualDomain"], _tool_env(tmp_path), 120)
    assert proc.returncode == 0, _explain(proc)
    for name in ("config", "hypervisor", "force_stop", "shutdown_mode"):
        assert name in proc.stdout, f"{name} missing from pcs' description:\n{proc.stdout}"



def test_crmsh_knows_the_agent_and_checks_its_parameters(provider: Path, tmp_path: Path) -> None:
    """crmsh (4.4 here, 5.0 in the Debian 13 tier) reads the agent's meta-data: `crm ra info`, and a
    primitive checked against it in crmsh's strict mode: the real parameters pass, a made-up one fails."""
    env = dict(_tool_env(tmp_path), HOME=str(tmp_path))
    info = _run(["crm", "ra", "info", "ocf:livemig:VirtualDomain"], env, 120)
    assert info.returncode == 0, _explain(info)
    for name in ("config", "hypervisor", "migration_downtime"):
        assert name in info.stdout, f"{name} missing from crm ra info:\n{info.stdout}"
    conf = tmp_path / "crm.conf"
    conf.write_text("[core]\ncheck_mode = strict\ncheck_frequency = always\n", encoding="utf-8")
    results = {}
    for label, extra in (("good", ""), ("bogus", " no_such_parameter=1")):
        cib = tmp_path / f"cib-{label}.xml"
        cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, timeout=60,
                                      check=True).stdout, encoding="utf-8")
        script = tmp_path / f"{label}.crm"
        script.write_text("property stonith-enabled=false\n"
                          "primitive vm1 ocf:livemig:VirtualDomain params config=/etc/libvirt/qemu/vm1.xml "
                          f"hypervisor=qemu:///system{extra} meta allow-migrate=true "
                          "op monitor interval=10s timeout=30s\n", encoding="utf-8")
        results[label] = _run(["crm", "configure", "load", "update", str(script)],
                              dict(env, CIB_file=str(cib), CRM_CONFIG_FILE=str(conf)), 120)
    assert results["good"].returncode == 0, _explain(results["good"])
    assert results["bogus"].returncode != 0, _explain(results["bogus"])
    assert "no_such_parameter" in results["bogus"].stdout + results["bogus"].stderr, _explain(results["bogus"])
