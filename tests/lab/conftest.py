"""Lab fixtures: see labfixtures.py and docs/lab.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labfixtures import lab, lab_session  # noqa: E402,F401
