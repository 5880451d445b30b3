"""`livemig config --two-primaries migration`: no DRBD clone, the VM in the window mode, kept off diskless nodes."""

from __future__ import annotations

import pytest

from livemig.pacemaker.config_generator import (
    MIGRATION_NET,
    MIGRATION_OPTIONS,
    ConfigError,
    crmsh_commands,
    pcs_commands,
)
from tests.unit.check.test_config_commands import DOMAIN, pcs_argvs_through_sh, run, setup, statements, vm_ops


def window(**kw: object) -> object:
    return setup(two_primaries="migration", **kw)


def test_crmsh_window_statements() -> None:
    text = crmsh_commands(window(drbd_resources=["r0", "r1"], diskless=["tb", "tb2"]))  # type: ignore[arg-type]
    assert statements(text) == [
        ["primitive", "vm1", "ocf:livemig:VirtualDomain", "params", "config=/etc/libvirt/qemu/vm1.xml",
         "hypervisor=qemu:///system", "drbd_two_primaries=migration", "meta", "allow-migrate=true", *vm_ops()],
        ["location", "location-vm1-tb--INFINITY", "vm1", "-inf:", "tb"],
        ["location", "location-vm1-tb2--INFINITY", "vm1", "-inf:", "tb2"],
        ["property", "stonith-enabled=true"],
    ]
    assert "ocf:linbit:drbd" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    notes = [line for line in text.splitlines() if line.startswith("#")]
    assert f"#   {MIGRATION_NET}" in notes and f"#   {MIGRATION_OPTIONS}" in notes
    assert MIGRATION_NET == "net { protocol C; allow-two-primaries no; }"
    assert MIGRATION_OPTIONS == "options { auto-promote yes; quorum majority; on-no-quorum io-error; }"
    assert "#   systemctl enable drbd@r0.target" in notes and "#   systemctl enable drbd@r1.target" in notes
    assert any("/etc/libvirt/hooks/qemu.d/livemig" in line for line in notes)
    assert any("tiebreaker" in line for line in notes)
    assert any("no promotable clone" in line for line in notes)


def test_pcs_window_commands() -> None:
    argvs = pcs_argvs_through_sh(pcs_commands(window(diskless=["tb"])))  # type: ignore[arg-type]
    ops = [word for word in vm_ops() if word not in ("op", "interval=0s")]
    assert argvs == [
        ["resource", "create", "vm1", "ocf:livemig:VirtualDomain", "config=/etc/libvirt/qemu/vm1.xml",
         "hypervisor=qemu:///system", "drbd_two_primaries=migration", "meta", "allow-migrate=true", "op", *ops,
         "--no-default-ops"],
        ["constraint", "location", "vm1", "avoids", "tb"],
        ["property", "set", "stonith-enabled=true"],
    ]


def test_always_is_the_default_and_unchanged() -> None:
    for tool in (crmsh_commands, pcs_commands):
        assert tool(setup(two_primaries="always")) == tool(setup())
        text = tool(setup())
        assert "drbd_two_primaries" not in text and "avoids" not in text and "-inf:" not in text


@pytest.mark.parametrize("bad,message", [
    ({"two_primaries": "sometimes"}, "one of always, migration"),
    ({"diskless": ["tb"]}, "--diskless is for --two-primaries migration"),
    ({"two_primaries": "migration", "diskless": ["tb; rm -rf /"]}, "is not a node name"),
    ({"two_primaries": "migration", "diskless": ["-tb"]}, "is not a node name"),
    ({"two_primaries": "migration", "diskless": ["tb\nproperty stonith-enabled=false"]}, "control character"),
])
@pytest.mark.parametrize("tool", [crmsh_commands, pcs_commands])
def test_bad_window_setups_are_refused(bad: dict, message: str, tool: object) -> None:
    with pytest.raises(ConfigError, match=message.replace("-", r"\-")):
        tool(setup(**bad))  # type: ignore[operator]


def test_cli_config_window() -> None:
    code, out, err = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0", "--two-primaries",
                          "migration", "--diskless", "tb", "--diskless", "tb"])
    assert code == 0 and err == ""
    assert out.count("location location-vm1-tb--INFINITY vm1 -inf: tb") == 1 and "drbd_two_primaries=migration" in out
    code, out, err = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0", "--diskless", "tb"])
    assert code == 2 and out == "" and "--diskless is for --two-primaries migration" in err
    code, _, _ = run(["config", "vm1", "--domain-xml", DOMAIN, "--drbd-resource", "r0", "--two-primaries", "x"])
    assert code == 2
