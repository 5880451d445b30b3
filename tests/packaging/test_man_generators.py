"""tools/metadata2man.py and tools/cli2man.py, the build-time man page generators."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
ENV = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", PYTHONPATH=str(ROOT / "lib"), PYTHONDONTWRITEBYTECODE="1")

CLI = '''
import argparse, sys

def main():
    parser = argparse.ArgumentParser(description="Demo: does things to .dots and back\\\\slashes. More here.")
    parser.add_argument("-v", "--verbose", action="store_true", help="say more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    show = sub.add_parser("show", help="show a thing", description="Show one thing.",
                          epilog="exit status:\\n  0  shown\\n  1  not found",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("--mode", choices=["fast", "slow"], help="how")
    show.add_argument("thing", help="what to show")
    sub.add_parser("list", help="list things")
    parser.parse_args()
    return 0

sys.exit(main())
'''


def run(argv: List[str]) -> str:
    proc = subprocess.run(argv, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def render(page: Path) -> str:
    """The page as man shows it; fails on any groff or man warning."""
    if not shutil.which("man"):
        pytest.skip("man is not installed")
    env = dict(os.environ, MANWIDTH="80", MANROFFSEQ="", LC_ALL="C.UTF-8")
    check = subprocess.run(["man", "--warnings", "-l", "-Tutf8", "-Z", str(page)], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr
    shown = subprocess.run(["man", "-l", str(page)], env=dict(env, MANPAGER="cat", PAGER="cat"),
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_metadata2man_on_the_agent(tmp_path: Path) -> None:
    xml = run([sys.executable, str(ROOT / "agents" / "VirtualDomain"), "meta-data"])
    (tmp_path / "meta.xml").write_text(xml, encoding="utf-8")
    page = tmp_path / "ocf_livemig_VirtualDomain.7"
    run([sys.executable, str(TOOLS / "metadata2man.py"), "--provider", "livemig", "--source", "livemig X",
         "--see-also", "livemig(8)", "--output", str(page), str(tmp_path / "meta.xml")])
    text = page.read_text(encoding="utf-8")
    assert '.TH OCF_LIVEMIG_VIRTUALDOMAIN 7 "2023-11-14" "livemig X"' in text
    assert "\n.SH NAME\nocf_livemig_VirtualDomain \\- " in text
    shown = render(page)
    root = ET.fromstring(xml.encode())
    for param in root.iter("parameter"):
        assert param.get("name", "") in shown
    for action in root.iter("action"):
        assert action.get("name", "") in shown
    assert "primitive p_VirtualDomain ocf:livemig:VirtualDomain" in shown
    assert "pcs resource create p_VirtualDomain ocf:livemig:VirtualDomain" in shown


def test_metadata2man_escapes_roff(tmp_path: Path) -> None:
    meta = tmp_path / "meta.xml"
    meta.write_text(
        '<?xml version="1.0"?>\n<resource-agent name="Odd" version="1">\n<version>1.1</version>\n'
        '<longdesc lang="en">.starts with a dot\n\n- a bullet\n- \\back\\slash</longdesc>\n'
        '<shortdesc lang="en">odd agent</shortdesc>\n<parameters>\n'
        '<parameter name="p" unique="0" required="1"><longdesc lang="en">\'quoted\n\nsecond</longdesc>'
        '<shortdesc lang="en">p</shortdesc><content type="string" default="a b"/></parameter>\n'
        '</parameters>\n<actions><action name="start" timeout="20s"/></actions>\n</resource-agent>\n',
        encoding="utf-8")
    page = tmp_path / "ocf_x_Odd.7"
    run([sys.executable, str(TOOLS / "metadata2man.py"), "-p", "x", "-o", str(page), str(meta)])
    text = page.read_text(encoding="utf-8")
    assert "\n\\&.starts with a dot" in text and "\n\\&'quoted" in text
    assert "\\eback\\eslash" in text
    shown = render(page)
    assert ".starts with a dot" in shown and "\\back\\slash" in shown
    assert "params p=VALUE" in shown and "default: a b" in shown


def test_cli2man(tmp_path: Path) -> None:
    script = tmp_path / "demo"
    script.write_text(CLI, encoding="utf-8")
    page = tmp_path / "demo.8"
    run([sys.executable, str(TOOLS / "cli2man.py"), "--name", "demo", "--source", "demo 1",
         "--see-also", "pcs(8)", "--output", str(page), "--", sys.executable, str(script)])
    text = page.read_text(encoding="utf-8")
    assert "\n.SH NAME\ndemo \\- does things to .dots and back\\eslashes\n" in text
    assert '.SS "demo show"' in text and '.SS "demo list"' in text
    assert '.SS "demo show fast"' not in text  # option choices are no sub-commands
    shown = render(page)
    assert "demo show [-h] [--mode {fast,slow}] thing" in shown
    assert "0  shown" in shown  # epilog kept verbatim
    assert "SEE ALSO" in shown and "pcs(8)" in shown
