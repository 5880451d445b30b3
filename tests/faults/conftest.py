"""Fixtures for the fault-injection suite: the unit tests' in-process agent with a scripted
libvirt (DRBD tool faults), the integration tests' private libvirtd and real guest, and the
two-node lab (tests/lab) with its VMs."""

from tests.integration.conftest import guest_image, libvirtd, libvirtd_session, make_vm, rsctmp, vm  # noqa: F401
from tests.lab.labfixtures import lab, lab_session  # noqa: F401
from tests.lab.labvm import cluster_vm, direct_vm  # noqa: F401
from tests.unit.conftest import agent, config_file, fake_libvirt  # noqa: F401
