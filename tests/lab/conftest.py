"""Lab fixtures: see labfixtures.py and docs/lab.md."""

from tests.lab.labfixtures import lab, lab_session  # noqa: F401
