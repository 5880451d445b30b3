"""End-to-end tests run in the two-node lab (tests/lab): the ``lab`` fixture builds it once."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from labfixtures import lab, lab_session  # noqa: E402,F401
from labvm import cluster_vm, direct_vm  # noqa: E402,F401
