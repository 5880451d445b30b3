"""The migration guard's modes (what ``drbd_guard`` and ``livemig guard --mode`` accept).

Kept apart from :mod:`livemig.drbd.guard` so that the command's argument parser
(``livemig --help``) imports nothing that needs lxml.
"""

from __future__ import annotations

MODE_DUAL_PRIMARY = "dual-primary"
MODE_AUTO_PROMOTE = "auto-promote"
#: ``drbd_two_primaries=migration``: the target is Secondary until the migration's window opens.
MODE_WINDOW = "migration-window"
#: The modes of the agent's ``drbd_guard`` parameter.
MODES = (MODE_DUAL_PRIMARY, MODE_AUTO_PROMOTE)
#: Every mode :func:`livemig.drbd.guard.evaluate_guard` and ``livemig guard --mode`` accept.
ALL_MODES = MODES + (MODE_WINDOW,)

#: The window mode's phases: before the window opens, and the watch while libvirt's job runs.
PHASE_BEFORE = "before"
PHASE_DURING = "during"
PHASES = (PHASE_BEFORE, PHASE_DURING)
