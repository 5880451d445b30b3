"""One test per row of bad_input.TABLE and per action it lists."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import pytest

from tests.integration.bad_input import CONFIG_KINDS, TABLE, BadInput, markdown
from tests.support import guest
from tests.support.agent import REPO, ocf_env, run_agent
from tests.support.libvirtd import LibvirtDaemon
from tests.support.vm import DEFAULT_TIMEOUT_MS

CASES = [pytest.param(row, action, id=f"{row.case}-{action}") for row in TABLE for action in row.actions]


def _config_files(directory: Path, name: str, image: guest.GuestImage) -> Dict[str, Path]:
    valid = guest.domain_xml(name, image)
    files = {kind: directory / f"{kind}.xml" for kind in CONFIG_KINDS}
    files["valid"].write_text(valid)
    files["dangling-symlink"].symlink_to(directory / "nowhere.xml")
    files["directory"].mkdir()
    files["empty"].write_text("")
    files["not-xml"].write_text("this is not XML <domain\n")
    files["no-name"].write_text(valid.replace(f"<name>{name}</name>", ""))
    files["empty-name"].write_text(valid.replace(f"<name>{name}</name>", "<name>  </name>"))
    files["not-a-domain"].write_text(f"<network><name>{name}</name></network>\n")
    secret = directory / "secret"
    secret.write_text("SECRET\n")
    files["xxe"].write_text(f"<!DOCTYPE domain [<!ENTITY x SYSTEM 'file://{secret}'>]><domain><name>&x;</name></domain>")
    entities = "".join(f"<!ENTITY {chr(98 + i)} '{('&' + chr(97 + i) + ';') * 10}'>" for i in range(9))
    files["billion-laughs"].write_text(f"<!DOCTYPE d [<!ENTITY a 'aaaa'>{entities}]><domain><name>&j;</name></domain>")
    files["huge"].write_text(valid)
    with open(files["huge"], "r+b") as fh:
        fh.truncate(5 << 20)  # sparse: over the 4 MiB limit without writing it
    return files


def _fill(value: str, files: Dict[str, Path], uri: str, dead_uri: str, config: str) -> str:
    for kind, path in files.items():
        value = value.replace(f"{{config:{kind}}}", str(path))
    return value.replace("{uri}", uri).replace("{dead_uri}", dead_uri).replace("{config}", config)


@pytest.mark.parametrize(("row", "action"), CASES)
def test_bad_input(row: BadInput, action: str, libvirtd: LibvirtDaemon, guest_image: guest.GuestImage,
                   tmp_path: Path, rsctmp: Path) -> None:
    name = f"lmt-bad-{row.case}"[:60]
    files = _config_files(tmp_path, name, guest_image)
    dead_uri = f"qemu:///system?socket={tmp_path}/no-libvirtd/libvirt-sock"
    raw: Dict[str, Optional[str]] = {"config": str(files["valid"]), "hypervisor": libvirtd.uri}
    raw.update(row.params)
    config = _fill(raw.get("config") or "", files, libvirtd.uri, dead_uri, "")
    params = {k: _fill(v, files, libvirtd.uri, dead_uri, config) for k, v in raw.items() if v is not None}
    env = ocf_env(params, instance=name, timeout_ms=DEFAULT_TIMEOUT_MS,
                  interval_ms=(0 if row.probe else 10000) if action == "monitor" else None,
                  extra={"HA_RSCTMP": str(rsctmp), **row.env})
    cwd = os.getcwd()
    os.chdir(tmp_path)  # config-relative: a guest.xml in the cwd must not rescue a relative path
    try:
        (tmp_path / "guest.xml").write_text(files["valid"].read_text())
        res = run_agent(action, env)
    finally:
        os.chdir(cwd)
    try:
        label = "expected (GUESS, to be aligned with the agent)" if row.guess else "expected (per the issue)"
        assert res.code == row.expected, f"{row.case}: {label} {row.expected}, got {res.details()}"
        if row.reason is not None:
            assert res.exit_reason, f"{row.case}: no ocf-exit-reason: {res.details()}"
            want = _fill(row.reason, files, libvirtd.uri, dead_uri, config).lower()
            assert want in res.exit_reason.lower(), f"{row.case}: {label} reason containing {want!r}: {res.details()}"
        assert "Traceback" not in res.stderr + res.stdout, res.details()
    finally:
        # Whatever the verdict, a bad-input start must not leave a domain behind.
        dom = None
        import libvirt

        try:
            dom = libvirtd.connect().lookupByName(name)
        except libvirt.libvirtError:
            pass
        if dom is not None:
            dom.destroy()
            pytest.fail(f"{row.case}: {action} left domain {name} running")


def test_docs_show_the_current_table() -> None:
    docs = (REPO / "docs" / "testing.md").read_text()
    assert markdown() in docs, "docs/testing.md lacks the current bad-input table: paste bad_input.markdown() there"
