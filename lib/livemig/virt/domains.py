"""One domain's state read through an open :class:`~livemig.virt.connection.Hypervisor`, and the
bounded wait for it to change: what start, stop and monitor ask libvirt about a domain."""

from __future__ import annotations

from typing import Optional

from livemig.ocf.deadline import Deadline
from livemig.virt.connection import DomainStatus, Hypervisor
from livemig.virt.states import DomainHealth, classify

#: the longest a wait goes without reading the domain's state again
POLL_INTERVAL = 0.5


def status_of(hv: Hypervisor, name: str) -> Optional[DomainStatus]:
    """The domain's status, or None when it does not exist."""
    dom = hv.lookup(name)
    return hv.status(dom) if dom is not None else None


def health_of(hv: Hypervisor, name: str) -> Optional[DomainHealth]:
    """The domain's health, or None when it does not exist."""
    status = status_of(hv, name)
    return classify(status.state, status.reason) if status is not None else None


def occupies(status: Optional[DomainStatus]) -> bool:
    """The domain is on this node in some form: not absent, not shut off."""
    return status is not None and not classify(status.state, status.reason).stopped


def wait_until(hv: Hypervisor, name: str, want_running: bool, until: Deadline, deadline: Deadline) -> bool:
    """Wait until the domain runs (or is gone/off); False when ``until`` (or ``deadline``) passes first.

    Event-driven where the connection delivers lifecycle events (see
    :meth:`Hypervisor.watch`): the state is read again as soon as libvirt reports
    a change, and every POLL_INTERVAL anyway. Otherwise a plain poll.
    """
    hv.watch()
    while True:
        hv.mark()  # before reading: a change that lands after the read wakes the wait below
        health = health_of(hv, name)
        done = (health is not None and health.running) if want_running else (health is None or health.stopped)
        if done:
            return True
        # Stop while a last libvirt call still has time to answer within the operation deadline.
        if until.remaining() < POLL_INTERVAL or deadline.remaining() < POLL_INTERVAL:
            return False
        hv.wait_for_change(until.bound(POLL_INTERVAL))
