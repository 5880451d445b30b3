"""End-to-end tests run in the lab (tests/lab): ``lab`` two nodes, ``lab_three`` and ``lab_tiebreaker``
three (tests/lab/labfixtures.py); each lab is built once per session."""

from tests.lab.labfixtures import lab, lab_session, lab_three, lab_tiebreaker  # noqa: F401
from tests.lab.labvm import cluster_vm, direct_vm  # noqa: F401
