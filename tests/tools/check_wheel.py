#!/usr/bin/python3
"""Build livemig's wheel with this Python's setuptools, from a copy of the tree, and check it.

The Debian 11 tier runs it on setuptools 52 (below RHEL 9's 53, the floor in pyproject.toml): the
build must work there, and the wheel must declare the floors setup.cfg states. Standard library
and setuptools only; no network, no build isolation (RHEL's %pyproject_wheel builds the same way).
Usage: check_wheel.py  (from the tree's top directory)
"""

from __future__ import annotations

import configparser
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path


def main() -> int:
    import setuptools
    import setuptools.build_meta as backend

    tree = Path.cwd()
    cfg = configparser.ConfigParser()
    cfg.read(tree / "setup.cfg")
    wanted = sorted(line.strip().replace(" ", "") for line in cfg["options"]["install_requires"].splitlines()
                    if line.strip())
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "wheel"
        src.mkdir()
        out.mkdir()
        for name in ("setup.cfg", "pyproject.toml", "README.md", "COPYING"):
            shutil.copy(tree / name, src / name)
        shutil.copytree(tree / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        old = Path.cwd()
        import os

        os.chdir(src)
        try:
            wheel = backend.build_wheel(str(out))
        finally:
            os.chdir(old)
        with zipfile.ZipFile(out / wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            lines = z.read(meta).decode().splitlines()
    # Older setuptools writes "lxml (>=4.6.3)", newer "lxml>=4.6.3".
    declared = sorted(re.sub(r"[ ()]", "", line.split(":", 1)[1]) for line in lines
                      if line.startswith("Requires-Dist:"))
    python = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Python:")]
    print(f"setuptools {setuptools.__version__} built {wheel}: Requires-Python {python}, Requires-Dist {declared}")
    if declared != wanted or python != [cfg["options"]["python_requires"].strip()]:
        print(f"check_wheel: the wheel declares {python} {declared}, setup.cfg says {wanted}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
