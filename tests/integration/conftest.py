"""Fixtures for the integration tests: one real libvirtd per session, the tiny guest, test VMs.

A component that cannot start is a test *error* with the reason (pytest.fail),
never a skip: `make test` must not pass on a machine where nothing ran.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from tests.support import guest
from tests.support.libvirtd import LibvirtDaemon, LibvirtdError
from tests.support.vm import MakeVM, TestVM, safe_name


@pytest.fixture(scope="session")
def guest_image() -> guest.GuestImage:
    try:
        return guest.ensure_guest_image()
    except guest.GuestError as exc:
        pytest.fail(f"cannot build the test guest: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def libvirtd_session() -> Iterator[LibvirtDaemon]:
    daemon = LibvirtDaemon()
    started = time.monotonic()
    try:
        daemon.setup()
    except (LibvirtdError, OSError) as exc:
        pytest.fail(f"cannot start the test libvirtd: {exc}", pytrace=False)
    print(f"\nlibvirtd ready in {time.monotonic() - started:.1f}s at {daemon.uri}")
    try:
        yield daemon
    finally:
        daemon.teardown()


@pytest.fixture
def libvirtd(libvirtd_session: LibvirtDaemon) -> Iterator[LibvirtDaemon]:
    """The session libvirtd, thawed and running again after the test whatever it did."""
    yield libvirtd_session
    libvirtd_session.thaw()
    try:
        libvirtd_session.start()
    except LibvirtdError as exc:
        pytest.fail(f"cannot restart the test libvirtd after the test: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def rsctmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HA_RSCTMP for the agent: its state files stay out of /run/resource-agents."""
    return tmp_path_factory.mktemp("rsctmp")




@pytest.fixture
def make_vm(libvirtd: LibvirtDaemon, guest_image: guest.GuestImage, rsctmp: Path,
            request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeVM]:
    """``make_vm(acpi_behaviour='ignore', ...)``: a fresh, uniquely named test VM (not started)."""
    vms: List[TestVM] = []
    base = f"lmt-{libvirtd.session_id.split('-')[-1]}-{safe_name(request.node.name)}"

    def factory(**xml_options: Any) -> TestVM:
        name = base if not vms else f"{base}-{len(vms)}"
        vm = TestVM(name, tmp_path, libvirtd, guest_image, rsctmp, **xml_options)
        vms.append(vm)
        return vm

    yield factory
    libvirtd.thaw()
    libvirtd.start()
    for vm in vms:
        vm.cleanup()
        for state in rsctmp.glob(f"*{vm.name}*"):
            with contextlib.suppress(OSError):
                state.unlink()


@pytest.fixture
def vm(make_vm: MakeVM) -> TestVM:
    """A test VM whose guest answers ACPI by powering off."""
    return make_vm()

