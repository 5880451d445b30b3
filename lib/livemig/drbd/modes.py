"""The migration guard's modes (what ``drbd_guard`` and ``livemig guard --mode`` accept).

Kept apart from :mod:`livemig.drbd.guard` so that the command's argument parser
(``livemig --help``) imports nothing that needs lxml.
"""

from __future__ import annotations

MODE_DUAL_PRIMARY = "dual-primary"
MODE_AUTO_PROMOTE = "auto-promote"
MODES = (MODE_DUAL_PRIMARY, MODE_AUTO_PROMOTE)
