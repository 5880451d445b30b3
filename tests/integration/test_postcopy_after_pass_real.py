"""--postcopy-after-precopy against the real libvirtd and libvirt-python (no lab, no migration).

What a single host can prove: the migration-iteration event registers on a connection opened with
livemig's event loop and is deregistered when it closes, and virDomainMigrateStartPostCopy answers
with the codes :mod:`livemig.virt.postcopy` takes for "the job has ended": VIR_ERR_OPERATION_INVALID
on a running domain with no outgoing migration, VIR_ERR_NO_DOMAIN once a transient domain is gone.
The switch itself, during a real migration, is the lab's (tests/e2e/test_live_migration.py).
"""

from __future__ import annotations

import threading
from typing import List

import libvirt
import pytest

from livemig.ocf.deadline import Deadline
from livemig.virt.bounded import BackgroundCall
from livemig.virt.connection import (
    ERR_OPERATION_INVALID,
    EVENT_ID_LIFECYCLE,
    EVENT_ID_MIGRATION_ITERATION,
    Hypervisor,
    HypervisorError,
)
from livemig.virt.postcopy import COMPLETING, FirstPassSwitch
from tests.support.vm import TestVM


def test_the_binding_knows_the_event_and_the_error_codes() -> None:
    assert libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION == EVENT_ID_MIGRATION_ITERATION
    assert libvirt.VIR_ERR_OPERATION_INVALID == ERR_OPERATION_INVALID


def test_iteration_event_registers_and_postcopy_outside_a_migration_is_the_jobs_end(vm: TestVM) -> None:
    assert vm.run("start").code == 0
    hv = Hypervisor(vm.daemon.uri, Deadline(60), events=True).open()
    try:
        dom = hv.lookup(vm.name)
        seen: List[int] = []
        hv.watch_domain(dom, EVENT_ID_MIGRATION_ITERATION, seen.append)
        assert len(hv._callback_ids) == 1 and hv._callback_ids[0] >= 0
        hv.watch_domain(dom, EVENT_ID_LIFECYCLE, lambda event, detail: None)
        with pytest.raises(HypervisorError) as refused:
            hv.start_postcopy(dom)
        assert refused.value.code == ERR_OPERATION_INVALID, refused.value
        assert "post-copy can only be started while outgoing migration is in progress" in str(refused.value)
        # The request path as a migration would take it: event 2 (sent here as libvirt would call the
        # callback), the request from the switch's own thread, the loop's verdict on libvirt's answer.
        release = threading.Event()
        job = BackgroundCall("a job that has not ended", release.wait, 30).start()
        switch = FirstPassSwitch(hv, dom, vm.name, "node2")
        switch.follow(job)
        switch._on_iteration(2)
        assert switch._requested.wait(10)
        release.set()
        assert switch.switch(job) is False and switch.outcome == COMPLETING
        assert isinstance(switch._answer, HypervisorError) and switch._answer.code == ERR_OPERATION_INVALID
        assert seen == []  # no migration, no pass
        registered = list(hv._callback_ids)
        conn = hv.conn
        real_deregister = conn.domainEventDeregisterAny
        deregistered: List[int] = []

        def deregister(cb_id: int) -> None:
            real_deregister(cb_id)  # libvirtError for an id libvirt does not know
            deregistered.append(cb_id)

        conn.domainEventDeregisterAny = deregister
    finally:
        hv.close()
    assert deregistered == registered and hv._callback_ids == []  # close() deregistered what libvirt knew


def test_postcopy_on_a_transient_domain_that_has_left_is_no_domain(vm: TestVM) -> None:
    assert vm.run("start").code == 0
    hv = Hypervisor(vm.daemon.uri, Deadline(60), events=True).open()
    try:
        dom = hv.lookup(vm.name)
        hv.destroy(dom)
        with pytest.raises(HypervisorError) as refused:
            hv.start_postcopy(dom)
        assert refused.value.code == libvirt.VIR_ERR_NO_DOMAIN, refused.value
    finally:
        hv.close()
