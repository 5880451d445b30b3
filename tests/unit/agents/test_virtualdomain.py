from __future__ import annotations

import time
from pathlib import Path

import pytest

from livemig.run import CommandResult
from tests.unit.fake_libvirt import VIR_DOMAIN_SHUTOFF, FakeLibvirt, libvirtError


def test_meta_data_lists_every_heartbeat_parameter(agent) -> None:
    from lxml import etree

    res = agent("meta-data")
    names = {p.get("name") for p in etree.fromstring(res.stdout.encode()).iter("parameter")}
    heartbeat = {
        "config", "hypervisor", "force_stop", "shutdown_mode", "monitor_scripts", "autoset_utilization_cpu",
        "autoset_utilization_host_memory", "autoset_utilization_hv_memory", "unset_utilization_cpu",
        "unset_utilization_host_memory", "unset_utilization_hv_memory", "save_config_on_stop",
        "sync_config_on_stop", "snapshot", "backingfile", "stateless", "copyindirs", "start_resources",
        "migration_transport", "migration_user", "migration_downtime", "migration_speed",
        "migration_network_suffix", "migrateuri", "migrateport", "migrate_options", "remoteuri"}
    assert heartbeat <= names


def test_meta_data_advertises_no_usage_action_and_usage_still_answers(agent) -> None:
    """pcs creates an op for every advertised action: an advertised usage became <op name="usage"> in the CIB."""
    from lxml import etree

    actions = [a.get("name") for a in etree.fromstring(agent("meta-data").stdout.encode()).iter("action")]
    assert "usage" not in actions and {"start", "stop", "monitor", "migrate_to", "migrate_from"} <= set(actions)
    res = agent("usage")
    assert res.code == 0 and "usage: VirtualDomain" in res.stdout


def test_start_creates_transient_domain(agent, fake_libvirt: FakeLibvirt) -> None:
    res = agent("start")
    assert res.code == 0, res.stderr
    assert ("create", "vm1") in fake_libvirt.calls
    assert agent("monitor", interval_ms=10000).code == 0


def test_start_is_idempotent(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    assert agent("start").code == 0
    assert not [c for c in fake_libvirt.calls if c[0] == "create"]


def test_start_removes_stale_persistent_definition(agent, fake_libvirt: FakeLibvirt, config_file: Path) -> None:
    fake_libvirt.add("vm1", persistent=True, state=(VIR_DOMAIN_SHUTOFF, 1))
    assert agent("start").code == 0
    kinds = [c[0] for c in fake_libvirt.calls if c[0] in ("undefine", "create")]
    assert kinds == ["undefine", "create"]
    assert fake_libvirt.domains["vm1"].persistent is False
    assert config_file.exists()


def test_start_destroys_a_crashed_domain_first(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1", state=(6, 1))
    assert agent("start").code == 0
    assert [c[0] for c in fake_libvirt.calls if c[0] in ("destroy", "create")] == ["destroy", "create"]


def test_start_with_unreachable_hypervisor_is_soft_error(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.open_error = libvirtError("Failed to connect socket", 38)
    res = agent("start")
    assert res.code == 1
    assert "cannot connect" in res.reason


def test_stop_graceful_with_shutdown_mode(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    res = agent("stop", shutdown_mode="agent,acpi")
    assert res.code == 0, res.stderr
    assert ("shutdown", "vm1", 3) in fake_libvirt.calls
    assert not [c for c in fake_libvirt.calls if c[0] == "destroy"]


def test_stop_falls_back_to_destroy_within_deadline(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1").ignores_shutdown = True
    started = time.monotonic()
    res = agent("stop", timeout_ms=6000)
    assert res.code == 0, res.stderr
    assert time.monotonic() - started < 6
    assert [c[0] for c in fake_libvirt.calls if c[0] in ("shutdown", "destroy")] == ["shutdown", "destroy"]


def test_stop_repeats_the_shutdown_request(agent, fake_libvirt: FakeLibvirt) -> None:
    dom = fake_libvirt.add("vm1")
    dom.ignores_shutdown = True
    asked = []

    def second_time_lucky() -> None:
        asked.append(1)
        if len(asked) == 2:
            dom.ignores_shutdown = False

    fake_libvirt.hooks["shutdown"] = second_time_lucky
    res = agent("stop", timeout_ms=30000)
    assert res.code == 0, res.stderr
    assert len(asked) == 2
    assert not [c for c in fake_libvirt.calls if c[0] == "destroy"]


def test_recurring_monitor_reports_a_crash_shutoff(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1", persistent=True, state=(VIR_DOMAIN_SHUTOFF, 3))
    res = agent("monitor", interval_ms=10000)
    assert res.code == 1 and "after a crash" in res.reason
    assert agent("monitor").code == 7  # a probe: it is not running


def test_force_stop_destroys_at_once(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.add("vm1")
    assert agent("stop", force_stop="true").code == 0
    assert [c[0] for c in fake_libvirt.calls if c[0] in ("shutdown", "destroy")] == ["destroy"]


def test_stop_of_absent_or_shutoff_domain_is_success(agent, fake_libvirt: FakeLibvirt) -> None:
    assert agent("stop").code == 0
    fake_libvirt.add("vm1", persistent=True, state=(VIR_DOMAIN_SHUTOFF, 1))
    assert agent("stop").code == 0


def test_stop_remembers_name_when_config_becomes_unreadable(agent, fake_libvirt: FakeLibvirt,
                                                            config_file: Path) -> None:
    assert agent("start").code == 0
    config_file.unlink()
    res = agent("stop")
    assert res.code == 0, res.stderr
    assert "vm1" not in fake_libvirt.domains


def test_stop_without_any_name_fails_rather_than_lie(agent, fake_libvirt: FakeLibvirt, config_file: Path) -> None:
    fake_libvirt.add("vm1")  # named like the resource: it may well be ours
    config_file.unlink()
    res = agent("stop")
    assert res.code == 1
    assert res.reason.startswith("domain vm1 runs here and config")


def test_stop_after_a_start_that_never_found_its_config(agent, fake_libvirt: FakeLibvirt, config_file: Path) -> None:
    """A typo in config= must not get nodes fenced: start fails (5), the stop after it succeeds."""
    config_file.unlink()
    assert agent("start").code == 5
    res = agent("stop")
    assert res.code == 0, res.stderr
    assert "no domain of this resource ran here since boot" in res.reason


def test_save_config_on_stop_writes_the_running_definition(agent, fake_libvirt: FakeLibvirt,
                                                            config_file: Path) -> None:
    config_file.chmod(0o600)
    new_xml = "<domain type='qemu'><name>vm1</name><memory>262144</memory></domain>"
    fake_libvirt.add("vm1", xml=new_xml)
    assert agent("stop", save_config_on_stop="true").code == 0
    assert config_file.read_text() == new_xml
    assert config_file.stat().st_mode & 0o777 == 0o600


def test_snapshot_saves_on_stop_and_restores_on_start(agent, fake_libvirt: FakeLibvirt, tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    assert agent("start", snapshot=str(snap)).code == 0
    assert agent("stop", snapshot=str(snap)).code == 0
    assert (snap / "vm1.state").exists()
    assert agent("start", snapshot=str(snap)).code == 0
    assert ("restore", "vm1", str(snap / "vm1.state")) in fake_libvirt.calls
    assert not (snap / "vm1.state").exists()


@pytest.mark.parametrize("state,code", [((1, 1), 0), ((3, 1), 0), ((3, 2), 0), ((4, 1), 0),
                                        ((3, 5), 1), ((6, 1), 1), ((5, 1), 7)])
def test_monitor_maps_states(agent, fake_libvirt: FakeLibvirt, state, code) -> None:
    fake_libvirt.add("vm1", state=state)
    res = agent("monitor", interval_ms=10000)
    assert res.code == code
    if code == 1:
        assert "vm1 is" in res.reason


def test_monitor_absent_is_not_running(agent, fake_libvirt: FakeLibvirt) -> None:
    assert agent("monitor").code == 7


def test_probe_falls_back_to_proc_when_libvirtd_hangs(agent, fake_libvirt: FakeLibvirt, monkeypatch) -> None:
    fake_libvirt.hooks["open"] = fake_libvirt.block_forever
    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: [4242] if name == "vm1" else [])
    started = time.monotonic()
    res = agent("monitor", timeout_ms=6000)
    assert time.monotonic() - started < 6
    assert res.code == 0
    assert "QEMU process 4242" in res.stderr
    assert "did not answer" in res.reason and "from /proc" in res.reason  # said even on success


def test_monitor_with_hung_libvirtd_and_no_qemu_is_not_running(agent, fake_libvirt: FakeLibvirt,
                                                              monkeypatch) -> None:
    fake_libvirt.hooks["lookup"] = fake_libvirt.block_forever
    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: [])
    res = agent("monitor", timeout_ms=6000)
    assert res.code == 7
    assert "no QEMU process of vm1 in /proc" in res.reason


def test_monitor_remote_uri_and_hung_libvirtd_is_an_error(agent, fake_libvirt: FakeLibvirt) -> None:
    fake_libvirt.hooks["open"] = fake_libvirt.block_forever
    res = agent("monitor", timeout_ms=5000, hypervisor="qemu+ssh://elsewhere/system")
    assert res.code == 1 and "did not answer" in res.reason


def test_stop_with_hung_libvirtd_kills_qemu(agent, fake_libvirt: FakeLibvirt, monkeypatch) -> None:
    fake_libvirt.hooks["open"] = fake_libvirt.block_forever
    alive = {"pids": [4242]}
    killed = []

    def fake_kill(pid: int, sig: int) -> None:
        killed.append((pid, sig))
        alive["pids"] = []

    monkeypatch.setattr("livemig.virt.qemu_proc.find_qemu_pids", lambda name: list(alive["pids"]))
    monkeypatch.setattr("livemig.agents.virtualdomain.stop.os.kill", fake_kill)
    res = agent("stop", timeout_ms=8000)
    assert res.code == 0, res.stderr
    assert killed and killed[0][0] == 4242


def test_monitor_scripts_failure_is_reported(agent, fake_libvirt: FakeLibvirt, tmp_path: Path) -> None:
    script = tmp_path / "check"
    script.write_text("#!/bin/sh\necho nope >&2\nexit 4\n")
    script.chmod(0o755)
    fake_libvirt.add("vm1")
    res = agent("monitor", interval_ms=10000, monitor_scripts=str(script))
    assert res.code == 1
    assert "exited 4: nope" in res.reason
    assert agent("monitor", monitor_scripts=str(script)).code == 0  # probes skip the scripts


def test_utilization_written_once_then_steady(agent, fake_libvirt: FakeLibvirt, runner) -> None:
    fake_libvirt.add("vm1")
    assert agent("monitor", interval_ms=10000).code == 0
    written = {tuple(c[c.index("--set-parameter") + 1::2]) for c in runner.calls}
    assert written == {("cpu", "2"), ("host_memory", "128"), ("hv_memory", "128")}
    before = len(runner.calls)
    assert agent("monitor", interval_ms=10000).code == 0
    assert len(runner.calls) == before  # steady state forks nothing
    fake_libvirt.domains["vm1"].vcpus = 4
    assert agent("monitor", interval_ms=10000).code == 0
    assert runner.calls[-1][-3:] == ["cpu", "--parameter-value", "4"]
    assert len(runner.calls) == before + 1


def test_unset_utilization(agent, fake_libvirt: FakeLibvirt, runner) -> None:
    fake_libvirt.add("vm1")
    runner.answers = [CommandResult([], 0, "", "")] * 3
    assert agent("monitor", interval_ms=10000, unset_utilization_cpu="1").code == 0
    assert ["crm_resource", "--resource", "vm1", "--utilization", "--delete-parameter", "cpu"] in runner.calls


def test_no_utilization_outside_pacemaker(agent, fake_libvirt: FakeLibvirt, runner) -> None:
    fake_libvirt.add("vm1")
    assert agent("monitor", timeout_ms=None, interval_ms=10000).code == 0
    assert runner.calls == []


@pytest.mark.parametrize("params,code,reason", [
    ({"config": None}, 6, "required parameter config"),
    ({"config": "relative.xml"}, 6, "absolute path"),
    ({"force_stop": "maybe"}, 6, "not a boolean"),
    ({"shutdown_mode": "reboot"}, 6, "not one of"),
    ({"hypervisor": "qemu:///system\nrm -rf /"}, 6, "not a libvirt URI"),
    ({"migrate_options": "--offline"}, 6, "not supported"),
    ({"migrate_options": "--p2p --frobnicate"}, 6, "unknown option"),
    ({"migration_transport": "tcp; reboot"}, 6, "not a libvirt transport"),
    ({"migration_convergence": "postcopy-after", "migrate_options": "--tunnelled"}, 6, "tunnelled"),
    ({"migration_speed": "-1"}, 6, "below the minimum"),
    ({"stateless": "true"}, 6, "needs backingfile"),
    ({"snapshot": "/tmp", "force_stop": "1"}, 6, "cannot be used together"),
    ({"migrateport": "abc"}, 6, "not an integer"),
    ({"monitor_scripts": "/nonexistent/check"}, 5, "missing or not executable"),
])
def test_validate_all_bad_input(agent, params, code, reason) -> None:
    res = agent("validate-all", **params)
    assert res.code == code
    assert reason in res.reason


def test_validate_all_accepts_heartbeat_defaults(agent) -> None:
    res = agent("validate-all", stateless="false", migration_speed="0", migration_transport="",
                sync_config_on_stop="no")
    assert res.code == 0, res.stderr


def test_validate_all_config_errors(agent, config_file: Path) -> None:
    config_file.write_text("<domain><memory>1</memory></domain>")
    res = agent("validate-all")
    assert res.code == 6 and "has no <name>" in res.reason
    config_file.unlink()
    res = agent("validate-all")
    assert res.code == 5 and "unreadable" in res.reason


def test_probe_with_missing_config_and_nothing_remembered(agent, fake_libvirt: FakeLibvirt,
                                                          config_file: Path) -> None:
    config_file.unlink()
    assert agent("monitor").code == 7
    assert agent("monitor", interval_ms=10000).code == 5


def test_probe_with_missing_config_uses_remembered_name(agent, fake_libvirt: FakeLibvirt,
                                                        config_file: Path) -> None:
    assert agent("start").code == 0
    config_file.unlink()
    assert agent("monitor").code == 0


def test_start_after_a_failed_postcopy_destroys_the_transient_leftover_and_starts(agent, fake_libvirt) -> None:
    """Found in the lab: the destroyed transient domain is gone, and asking whether it is persistent failed start."""
    fake_libvirt.add("vm1", state=(3, 13))  # paused: post-copy failed (VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)
    res = agent("start")
    assert res.code == 0, res.stderr
    assert [c[0] for c in fake_libvirt.calls if c[0] in ("destroy", "create")] == ["destroy", "create"]
    assert fake_libvirt.domains["vm1"].state_[0] == 1
