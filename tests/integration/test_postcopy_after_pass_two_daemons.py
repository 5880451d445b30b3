"""--postcopy-after-precopy for real, without the lab: a migration between two private libvirtds on this host.

The second libvirtd has a host UUID of its own (libvirt refuses a migration to the host it runs
on by comparing host UUIDs), its own namespace and socket; the source's libvirtd reaches it over
``qemu+unix`` (peer-to-peer) and the migration stream over 127.0.0.1. The agent's migrate_to runs
as Pacemaker would run it; the guest dirties its memory faster than the stream carries it, so the
first pass ends with a lot left and libvirt's iteration event 2 switches the job to post-copy (or,
should the migration complete as that pass ends, it is a pre-copy one): either way the guest must
run on the second libvirtd with its memory whole, which its userspace answering the power button
there shows (a guest whose memory came over corrupt panics within seconds).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Iterator

import libvirt
import pytest

from tests.support import guest
from tests.support.libvirtd import LibvirtDaemon, LibvirtdError
from tests.support.vm import MakeVM


class PeerDaemon(LibvirtDaemon):
    """A second private libvirtd that libvirt takes for another host."""

    def _prepare_dirs(self) -> None:
        super()._prepare_dirs()
        with open(self.etc_dir / "libvirtd.conf", "a") as conf:
            conf.write(f'host_uuid = "{uuid.uuid4()}"\n')

    @property
    def remote_uri(self) -> str:
        """As another libvirtd must name it: the remote driver over this daemon's socket."""
        return f"qemu+unix:///system?socket={self.socket}"


#: outside /run: the first libvirtd's namespace lays an overlay over /run, through which a socket of
#: another namespace's daemon cannot be connected to (ECONNREFUSED)
PEER_BASE = Path("/var/tmp/livemig-tests-peer")


@pytest.fixture
def peer() -> Iterator[PeerDaemon]:
    daemon = PeerDaemon(base=PEER_BASE)
    try:
        daemon.setup()
    except (LibvirtdError, OSError) as exc:
        pytest.fail(f"cannot start the second libvirtd: {exc}", pytrace=False)
    try:
        yield daemon
    finally:
        daemon.teardown()


def test_a_busy_guest_switches_to_postcopy_after_its_first_pass(make_vm: MakeVM, peer: PeerDaemon) -> None:
    vm = make_vm(dirty_mib_s=60, memory_mib=256)
    assert vm.run("start").code == 0
    vm.wait_ready()
    booted = vm.console_size()
    res = vm.run("migrate_to", timeout_ms=120000, params={
        "remoteuri": peer.remote_uri, "migrateuri": "tcp://127.0.0.1:49321", "migration_speed": "8",
        "migration_progress_interval": "1", "migrate_options": "--postcopy --postcopy-after-precopy"},
        extra={"OCF_RESKEY_CRM_meta_migrate_target": "peer"})
    try:
        assert res.code == 0, res.details()
        switched = "first pass over memory done: switched to post-copy" in res.stderr
        assert switched != ("no post-copy" in res.stderr), res.details()  # which way it went, said once
        assert vm.domain() is None  # gone from the source
        arrived = peer.connect().lookupByName(vm.name)
        state = arrived.state()
        assert state[0] == libvirt.VIR_DOMAIN_RUNNING, state
        # Alive with its memory whole: its userspace answers the power button on the target.
        arrived.shutdown()
        guest.wait_for_console(vm.console, "LIVEMIG-GUEST-POWEROFF", 60, since=booted)
        assert "Kernel panic" not in vm.console_text(booted), vm.console_text(booted)[-2000:]
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            peer.connect().lookupByName(vm.name).destroy()
