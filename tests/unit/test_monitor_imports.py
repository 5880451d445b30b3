"""The steady-state monitor imports only what it uses: no lxml, no DRBD, no domain XML parsing.

Every 10 s per VM, a level-0 monitor pays for each module it imports (see
docs/performance.md). Each action runs in a fresh interpreter here (as
Pacemaker runs the agent), against the fake libvirt: start (which parses the
config and remembers the domain's name), then monitor, whose new imports are
listed and compared with what it may not need.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404 # a fixed argv: this interpreter and a script of this file
import sys
from pathlib import Path
from typing import List

from tests.unit.conftest import DOMAIN_XML

ROOT = Path(__file__).resolve().parents[2]

#: What a level-0 monitor of a running, already-known domain must not import.
FORBIDDEN = ("lxml", "livemig.drbd", "livemig.domain_xml", "livemig.xmlsafe", "livemig.check", "livemig.cli",
             "livemig.pacemaker.cib")

SCRIPT = r"""
import io, json, re, sys
from tests.unit.fake_libvirt import FakeDomain, FakeLibvirt
import livemig.virt.connection as connection

action, rsctmp, config, tagged = sys.argv[1:5]


def metadata(self, kind, uri, flags=0):  # the fake's own reads the XML with lxml: this one does not
    found = re.search(r"<livemig:resource [^>]*/>", self.xml)
    if found is None:
        raise sys.modules["tests.unit.fake_libvirt"].libvirtError("metadata not found", 80)
    return found.group(0).replace("<livemig:resource", '<resource xmlns="%s"' % uri)


FakeDomain.metadata = metadata
world = FakeLibvirt()
connection.quiet_libvirt = lambda: world
if action == "monitor":
    world.add("vm1", tagged)
from livemig.agents.virtualdomain import VirtualDomain

env = {"HA_RSCTMP": rsctmp, "OCF_RESOURCE_INSTANCE": "vm1", "OCF_RESKEY_config": config,
       "OCF_RESKEY_hypervisor": "qemu:///system", "OCF_RESKEY_CRM_meta_timeout": "20000",
       "OCF_RESKEY_CRM_meta_interval": "10000"}
before = set(sys.modules)
out, err = io.StringIO(), io.StringIO()
code = VirtualDomain.main(["VirtualDomain", action], env, stdout=out, stderr=err)
print(json.dumps({"code": code, "imported": sorted(set(sys.modules) - before), "stderr": err.getvalue()}))
"""


def run(action: str, tmp_path: Path, config: Path, tagged: str = "") -> dict:  # type: ignore[type-arg]
    done = subprocess.run(  # nosec B603 # fixed argv, no shell
        [sys.executable, "-c", SCRIPT, action, str(tmp_path / "rsctmp"), str(config), tagged],
        cwd=ROOT, env={"PYTHONPATH": f"{ROOT / 'lib'}:{ROOT}", "PATH": "/usr/bin:/bin",
                       "LIVEMIG_PROC_DRBD": str(tmp_path / "no-drbd")},
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def forbidden(imported: List[str]) -> List[str]:
    return [m for m in imported if m == "lxml" or m.startswith("lxml.")
            or any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def test_level_0_monitor_imports_no_lxml_and_no_drbd(tmp_path: Path) -> None:
    config = tmp_path / "vm1.xml"
    config.write_text(DOMAIN_XML.format(name="vm1"))
    started = run("start", tmp_path, config)
    assert started["code"] == 0, started["stderr"]
    assert "lxml.etree" in started["imported"]  # start parses the config: the check can see an import
    tagged = DOMAIN_XML.format(name="vm1").replace(
        "<devices>", "<metadata><livemig:resource xmlns:livemig='https://livemig.org/xmlns/resource/1' "
                     "id='vm1'/></metadata><devices>")
    monitored = run("monitor", tmp_path, config, tagged)
    assert monitored["code"] == 0, monitored["stderr"]
    assert forbidden(monitored["imported"]) == [], monitored["imported"]
