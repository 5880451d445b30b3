"""Lab fixtures: see labfixtures.py and docs/lab.md."""

from typing import List

import pytest

from tests.lab.labfixtures import lab, lab_session, lab_three, lab_tiebreaker, lab_window, order_by_lab  # noqa: F401


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Tests needing another lab than the default one run after all others: one build per lab."""
    order_by_lab(items)
