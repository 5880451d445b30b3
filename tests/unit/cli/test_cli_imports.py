"""`livemig --help` (and every command's --help) works where lxml cannot be imported.

Each run is a fresh interpreter whose first act is to put a meta-path finder in front that
refuses lxml (as a machine without python3-lxml would); the import of lxml by a command that
needs it, once it runs, still fails loudly, which the last test shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[3]

BLOCK_LXML = """
import runpy, sys

class NoLxml:
    def find_spec(self, name, path=None, target=None):
        if name == "lxml" or name.startswith("lxml."):
            raise ImportError("lxml is blocked by the test")
        return None

sys.meta_path.insert(0, NoLxml())
sys.argv = ["livemig"] + sys.argv[1:]
runpy.run_module("livemig", run_name="__main__", alter_sys=True)
"""


def livemig_without_lxml(argv: List[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"), COLUMNS="80", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", BLOCK_LXML] + argv, env=env, cwd=str(ROOT),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["drbd", "--help"], ["drbd", "status", "--help"],
                                  ["guard", "--help"], ["check", "--help"], ["config", "--help"]])
def test_help_needs_no_lxml(argv: List[str]) -> None:
    proc = livemig_without_lxml(argv)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith("usage: livemig") or proc.stdout.startswith("livemig ")


def test_the_blocker_does_block_lxml(tmp_path: Path) -> None:
    """A command that reads a CIB needs lxml: there the import fails (so the tests above do test something)."""
    cib = tmp_path / "cib.xml"
    cib.write_text("<cib/>", encoding="utf-8")
    proc = livemig_without_lxml(["guard", "--peer", "beta", "--resource", "r0", "--cib", str(cib)])
    assert proc.returncode != 0 and "lxml is blocked by the test" in proc.stderr
