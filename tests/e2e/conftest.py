"""End-to-end tests run in the lab (tests/lab): ``lab`` two nodes, ``lab_three``, ``lab_tiebreaker`` and
``lab_window`` three (tests/lab/labfixtures.py); each lab is built once per session."""

from tests.lab.labfixtures import lab, lab_session, lab_three, lab_tiebreaker, lab_window  # noqa: F401
from tests.lab.labvm import cluster_vm, direct_vm, drbd_direct_vm  # noqa: F401
