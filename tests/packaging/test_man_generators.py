"""tools/metadata2man.py and tools/cli2man.py, the build-time man page generators."""

from __future__ import annotations

import os
import re
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
    assert re.search(r"^ +0 +shown$", shown, re.M)  # the epilog's list: tagged paragraphs
    assert ".TP\n\\fB0\\fR\nshown\n" in text
    assert "SEE ALSO" in shown and "pcs(8)" in shown


def test_cli2man_refuses_a_long_name_line(tmp_path: Path) -> None:
    script = tmp_path / "demo"
    script.write_text(CLI.replace("Demo: does things", "Demo: " + "very " * 20 + "long"), encoding="utf-8")
    argv = [sys.executable, str(TOOLS / "cli2man.py"), "--name", "demo", "--output", str(tmp_path / "demo.8"),
            "--", sys.executable, str(script)]
    proc = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "at most 80" in proc.stderr and "--summary" in proc.stderr
    run(argv[:2] + ["--summary", "does things"] + argv[2:])
    assert "\n.SH NAME\ndemo \\- does things\n" in (tmp_path / "demo.8").read_text(encoding="utf-8")


def _subsection(text: str, title: str) -> str:
    start = text.index(f'.SS "{title}"\n')
    end = text.find("\n.SS ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def test_cli2man_on_livemig(tmp_path: Path) -> None:
    """The livemig(8) page as the packages build it: a short NAME; every sub-command's options,
    exit statuses and lists as tagged paragraphs, its epilog's prose as paragraphs."""
    page = tmp_path / "livemig.8"
    run([sys.executable, str(TOOLS / "cli2man.py"), "--name", "livemig", "--section", "8", "--source",
         "livemig X", "--entry-point", "livemig.cli.main:main", "--output", str(page)])
    text = page.read_text(encoding="utf-8")
    name_line = text.split("\n.SH NAME\n", 1)[1].split("\n", 1)[0]
    assert name_line.startswith("livemig \\- ") and len(name_line) <= 82, name_line
    for title, options in (("livemig drbd status", ("\\-\\-json", "\\-\\-timeout SECONDS")),
                           ("livemig config", ("\\-\\-domain\\-xml FILE", "\\-\\-pcs")),
                           ("livemig check", ("\\-\\-skip\\-host", "\\-\\-problems")),
                           ("livemig guard", ("\\-\\-peer NODE",))):
        body = _subsection(text, title)
        for option in options:
            assert f".TP\n\\fB{option}\\fR\n" in body, (title, option)
        # Only the usage is pre-formatted: nothing of argparse's own layout is left as it is.
        assert body.count(".nf") == 1, body
    for title in ("livemig drbd status", "livemig check", "livemig guard"):
        body = _subsection(text, title)
        for code in ("0", "1", "2"):
            assert f".TP\n\\fB{code}\\fR\n" in body, (title, code)
    shown = render(page)
    names = shown.split("\nNAME\n", 1)[1].split("\n\n", 1)[0].split("\n")
    assert len(names) <= 2 and all(len(line) <= 80 for line in names), names
    status = shown.split("   livemig drbd status\n", 1)[1].split("   livemig guard\n", 1)[0]
    assert re.search(r"^ {7}--json +print +JSON +instead +of +a +table$", status, re.M), status
    assert re.search(r"^ {7}--timeout SECONDS\n {14}give up", status, re.M), status
    assert re.search(r"^ {7}DRBD +9 +is +read +with", status, re.M), status  # a paragraph of its own
    assert not re.search(r"^ {8,}--json {2,}print", shown, re.M)  # no argparse column layout left
    config = shown.split("   livemig config\n", 1)[1]
    assert re.search(r"^ {7}--pcs +print +pcs +commands +instead +of +crmsh$", config, re.M), config
    assert re.search(r"^ {7}The +commands +create, +for +each", config, re.M), config
