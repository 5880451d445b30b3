"""pytest fixtures for the lab (shared by tests/lab and tests/e2e).

One lab per session: ``lab_session`` holds it (``lifecycle.up`` on first use) and tears it down
at the end; a component that cannot start makes the fixture *fail* with the lab's error (never a
skip). Each lab fixture names the lab it needs as a :class:`LabSpec`: ``lab`` the two-node lab
(``LAB_NODES=3`` makes it three), ``lab_three`` three diskful nodes, ``lab_tiebreaker`` two
diskful nodes and a diskless node3 with DRBD quorum majority, ``lab_window`` three diskful
nodes in drbd_two_primaries=migration. The session's lab is rebuilt only
when a test needs another one (or a test tore it down); ``order_by_lab`` (the lab's conftest)
runs the tests that need the default lab first, so that a whole ``pytest tests`` builds each
lab once.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from tests.lab import core, lifecycle, queries
from tests.lab import lock as lab_lock
from tests.lab import nodes as lab_nodes
from tests.lab.state import LabState


class LabSpec(NamedTuple):
    """The lab a test needs: how many nodes, which of them diskless, DRBD's quorum option, the
    VM's drbd_two_primaries mode."""

    nodes: int = 2
    diskless: Tuple[str, ...] = ()
    drbd_quorum: str = ""
    two_primaries: str = "always"


def default_spec() -> LabSpec:
    return LabSpec(int(os.environ.get("LAB_NODES", "2")))


THREE_NODES = LabSpec(3)
TIEBREAKER = LabSpec(3, ("node3",), "majority")
WINDOW = LabSpec(3, two_primaries="migration")

# The lab fixtures, and the spec each asks for (order_by_lab runs them in this order).
SPEC_FIXTURES = {"lab": None, "lab_three": THREE_NODES, "lab_tiebreaker": TIEBREAKER, "lab_window": WINDOW}


class LabSession:
    def __init__(self) -> None:
        self.before: Dict[str, List[str]] = {}
        self.state: Optional[LabState] = None
        self.names: List[str] = []
        self.spec: Optional[LabSpec] = None

    def ensure(self, spec: LabSpec) -> LabSession:
        """This session's lab as ``spec`` says, rebuilt only if it is down or another one."""
        if self.is_up and self.spec != spec:
            self.down()
        if not self.is_up:
            self.up(spec.nodes, spec.diskless, spec.drbd_quorum, spec.two_primaries)
        return self

    @property
    def diskful(self) -> List[str]:
        return [n for n in self.names if n not in (self.spec.diskless if self.spec else ())]

    def up(self, nodes: int = 2, diskless: Tuple[str, ...] = (), drbd_quorum: str = "",
           two_primaries: str = "always") -> None:
        if os.geteuid() != 0:
            pytest.fail("the lab needs root (network, mount and PID namespaces)", pytrace=False)
        if core.LAB_DIR.exists():
            pytest.fail(f"{core.LAB_DIR} exists: a lab is already up or was left behind; "
                        "run tests/lab/lab down", pytrace=False)
        self.before = queries.snapshot()
        spec = LabSpec(nodes, tuple(diskless), drbd_quorum, two_primaries)
        try:
            self.state = lifecycle.up(nodes, diskless=diskless, drbd_quorum=drbd_quorum, two_primaries=two_primaries)
        except core.LabError as exc:
            pytest.fail(f"lab up failed: {exc}", pytrace=False)
        self.names = list(self.state.names)
        self.spec = spec

    def down(self) -> None:
        lifecycle.down()
        self.state = None
        self.spec = None

    @property
    def is_up(self) -> bool:
        return self.state is not None and core.LAB_DIR.exists()

    def run(self, node: str, *argv: str, check: bool = True, timeout: float = 60):
        return lab_nodes.on_node(node, list(argv), check=check, timeout=timeout)

    def crm(self, *args: str, node: Optional[str] = None, timeout: float = 120) -> str:
        return lab_nodes.on_node(node or self.names[0], ["crm", "-w"] + list(args), timeout=timeout).stdout


# One per process: tests/lab and tests/e2e both register the fixtures, and must share one lab.
_SESSION = LabSession()


@pytest.fixture(scope="session")
def lab_session() -> Iterator[LabSession]:
    session = _SESSION
    lock = lab_lock.acquire_lab_lock()  # another session's lab: wait for it, don't collide
    try:
        yield session
    finally:
        try:
            if session.is_up or core.LAB_DIR.exists():
                session.down()
        finally:
            lab_lock.release_lab_lock(lock)


@pytest.fixture()
def lab(lab_session: LabSession) -> LabSession:
    """The default lab: two nodes (``LAB_NODES``), both diskful, DRBD without quorum."""
    return lab_session.ensure(default_spec())


@pytest.fixture()
def lab_three(lab_session: LabSession) -> LabSession:
    """Three diskful nodes, three-node votequorum, the DRBD clone promoted on two of them."""
    return lab_session.ensure(THREE_NODES)


@pytest.fixture()
def lab_tiebreaker(lab_session: LabSession) -> LabSession:
    """node1 and node2 diskful, node3 a diskless DRBD tiebreaker (never promoted, the VM kept off
    it by a -inf location), DRBD quorum majority."""
    return lab_session.ensure(TIEBREAKER)


@pytest.fixture()
def lab_window(lab_session: LabSession) -> LabSession:
    """Three diskful nodes in drbd_two_primaries=migration: no DRBD clone (each node brings r0 up
    at boot), allow-two-primaries off in DRBD's configuration, the VM's agent making its node
    Primary and opening the two-primaries window for each migration only."""
    return lab_session.ensure(WINDOW)


def lab_rank(fixturenames: List[str]) -> int:
    """Where a test goes in the session: 0 without a lab or with the default one, then by
    SPEC_FIXTURES' order (each lab built once: the default lab's tests, its teardown test
    tests/lab's test_zz_down..., then the others)."""
    ranks = [i for i, name in enumerate(SPEC_FIXTURES) if name in fixturenames]
    return max(ranks) if ranks else 0


def order_by_lab(items: List[pytest.Item]) -> None:
    """Stable: tests keep their order within each lab (a module stays together)."""
    items[:] = sorted(items, key=lambda item: lab_rank(list(getattr(item, "fixturenames", []))))
