"""pytest fixtures for the lab (shared by tests/lab and tests/e2e).

``lab_session`` builds the two-node lab once per session (``lifecycle.up``) and tears it down at the
end; a component that cannot start makes the fixture *fail* with the lab's error (never a skip).
``lab`` hands the same session to a test, bringing the lab back up if a test tore it down.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional

import pytest

from tests.lab import core, lifecycle, queries
from tests.lab import lock as lab_lock
from tests.lab import nodes as lab_nodes
from tests.lab.state import LabState


class LabSession:
    def __init__(self) -> None:
        self.before: Dict[str, List[str]] = {}
        self.state: Optional[LabState] = None
        self.names: List[str] = []

    def up(self, nodes: int = 2) -> None:
        if os.geteuid() != 0:
            pytest.fail("the lab needs root (network, mount and PID namespaces)", pytrace=False)
        if core.LAB_DIR.exists():
            pytest.fail(f"{core.LAB_DIR} exists: a lab is already up or was left behind; "
                        "run tests/lab/lab down", pytrace=False)
        self.before = queries.snapshot()
        try:
            self.state = lifecycle.up(nodes)
        except core.LabError as exc:
            pytest.fail(f"lab up failed: {exc}", pytrace=False)
        self.names = list(self.state.names)

    def down(self) -> None:
        lifecycle.down()
        self.state = None

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
    if not lab_session.is_up:
        lab_session.up(int(os.environ.get("LAB_NODES", "2")))
    return lab_session
