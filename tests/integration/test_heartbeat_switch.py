"""A heartbeat VirtualDomain configuration switches by changing the provider only.

heartbeat's own agent (resource-agents, installed by `make deps`) says which parameters a
heartbeat configuration can hold: its meta-data is read here, not a list written for the test.
Every one of them is set to a value a heartbeat user would write (the copy-on-write mode with a
real backing file and qemu-img, csync2 and virt-copy-in as recording stand-ins, the virsh
convergence options of migrate_options), and livemig's validate-all and start accept them.
"""

from __future__ import annotations

import subprocess  # nosec B404 # fixed argv
from pathlib import Path
from typing import Dict, List, Optional

from lxml import etree

from tests.support.agent import ocf_env, run_agent

HEARTBEAT = "/usr/lib/ocf/resource.d/heartbeat/VirtualDomain"


def _content(meta_data: bytes, attribute: str) -> Dict[str, Optional[str]]:
    """parameter name -> an attribute of its <content> (type, default)."""
    return {p.get("name"): p.find("content").get(attribute) for p in etree.fromstring(meta_data).iter("parameter")}


def heartbeat_meta_data() -> bytes:
    return subprocess.run([HEARTBEAT, "meta-data"], env={"OCF_ROOT": "/usr/lib/ocf", "PATH": "/usr/bin:/bin"},
                          capture_output=True, timeout=30, check=True).stdout  # nosec B603


def livemig_meta_data() -> bytes:
    return run_agent("meta-data", ocf_env({}, instance="vm1")).stdout.encode()


def heartbeat_parameters() -> Dict[str, Optional[str]]:
    return _content(heartbeat_meta_data(), "type")


def _true(value: Optional[str]) -> bool:
    return (value or "false").lower() in ("1", "true", "yes", "on")


def recorder(directory: Path, name: str, log: Path) -> None:
    tool = directory / name
    tool.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\n")
    tool.chmod(0o755)


def test_every_heartbeat_parameter_is_livemigs_with_its_type() -> None:
    ours = _content(livemig_meta_data(), "type")
    theirs = heartbeat_parameters()
    assert len(theirs) >= 25  # the meta-data was read, not an empty answer
    missing = sorted(set(theirs) - set(ours))
    assert not missing, missing
    # heartbeat's strings may be stricter here (integer, boolean); a boolean stays a boolean
    assert [n for n, t in theirs.items() if t == "boolean" and ours[n] != "boolean"] == []


def test_a_heartbeat_configuration_with_every_parameter_validates(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "tools.log"
    bin_dir.mkdir()
    for name in ("csync2", "virt-copy-in"):
        recorder(bin_dir, name, log)
    (tmp_path / "files").mkdir()
    backing = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(backing), "16M"], check=True,  # nosec B603 B607
                   timeout=30)
    config = tmp_path / "vm1.xml"
    overlay = tmp_path / "vm1.qcow2"
    config.write_text(f"""<domain type='qemu'><name>vm1</name><memory unit='MiB'>128</memory><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{overlay}'/>
  <target dev='vda'/></disk></devices></domain>""")
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    script = bin_dir / "check-guest"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    values = {
        "config": str(config), "hypervisor": "qemu:///system", "force_stop": "false", "migration_transport": "ssh",
        "migration_user": "root", "migration_downtime": "300", "migration_speed": "100",
        "migration_network_suffix": "-mig", "migrateuri": "tcp://%n-mig:49152", "migrateport": "49152",
        "migrate_options": "--p2p --compressed --postcopy --postcopy-after-precopy --timeout 120 --timeout-postcopy",
        "monitor_scripts": str(script), "autoset_utilization_cpu": "true", "autoset_utilization_hv_memory": "true",
        "autoset_utilization_host_memory": "true", "unset_utilization_cpu": "false",
        "unset_utilization_host_memory": "false", "unset_utilization_hv_memory": "false",
        "shutdown_mode": "acpi", "snapshot": "", "save_config_on_stop": "true", "sync_config_on_stop": "true",
        "backingfile": str(backing), "stateless": "true", "copyindirs": str(tmp_path / "files"),
        "start_resources": "false", "remoteuri": "",
    }
    unset = sorted(set(heartbeat_parameters()) - set(values))
    assert not unset, f"heartbeat has parameters this configuration does not set: {unset}"
    env = ocf_env(values, instance="vm1", extra={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
    res = run_agent("validate-all", env)
    assert res.code == 0, res.details()
    # snapshot= is the one heartbeat parameter that cannot be combined with the copy-on-write mode's
    # stateless restart in a meaningful way; it is checked on its own
    env = ocf_env({"config": str(config), "snapshot": str(snapshot)}, instance="vm1")
    assert run_agent("validate-all", env).code == 0
    assert not overlay.exists()  # validate-all creates nothing
    assert not log.exists() or "csync2" not in log.read_text()


def test_heartbeat_boolean_defaults_are_livemigs() -> None:
    theirs = _content(heartbeat_meta_data(), "default")
    types = heartbeat_parameters()
    ours = _content(livemig_meta_data(), "default")
    differ: List[str] = [f"{n}: {d} vs {ours.get(n)}" for n, d in theirs.items()
                         if types[n] == "boolean" and _true(d) != _true(ours.get(n))]
    assert [n for n in types if types[n] == "boolean"], "no boolean parameter read"
    assert not differ, differ
