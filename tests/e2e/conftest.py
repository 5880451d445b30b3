"""End-to-end tests run in the two-node lab (tests/lab): the ``lab`` fixture builds it once."""

from tests.lab.labfixtures import lab, lab_session  # noqa: F401
from tests.lab.labvm import cluster_vm, direct_vm  # noqa: F401
