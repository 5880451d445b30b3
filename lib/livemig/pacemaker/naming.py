"""The Pacemaker ids livemig gives what it configures: one rule, for ``livemig config`` and ``livemig check``.

For DRBD resource ``RES`` the ``ocf:linbit:drbd`` primitive is
``drbd_<RES>`` and its promotable clone ``ms_drbd_<RES>``, where every
character of ``RES`` that a Pacemaker id cannot hold (anything but ASCII
letters, digits, ``_``, ``.`` and ``-``: a DRBD name may have ``+``) becomes
``_``. The VM's colocation with the clone's Promoted role is
``col_<VM>_on_<CLONE>``, the order promote-then-start ``ord_<CLONE>_before_<VM>``, and
the location keeping the VM off node ``NODE`` (a diskless DRBD tiebreaker)
``location-<VM>-<NODE>--INFINITY``: the id ``pcs constraint location VM avoids NODE`` gives it
(pcs 0.11 and 0.12; the only form of a -INFINITY location both read without a deprecation, and
it takes no id).
"""

from __future__ import annotations

import re

_NOT_IN_AN_ID = re.compile(r"[^A-Za-z0-9_.-]")


def id_part(name: str) -> str:
    """``name`` with every character a Pacemaker id cannot hold replaced by ``_``."""
    return _NOT_IN_AN_ID.sub("_", name)


def drbd_primitive_id(res: str) -> str:
    return f"drbd_{id_part(res)}"


def drbd_clone_id(res: str) -> str:
    return f"ms_drbd_{id_part(res)}"


def colocation_id(vm_id: str, clone_id: str) -> str:
    return f"col_{vm_id}_on_{clone_id}"


def order_id(clone_id: str, vm_id: str) -> str:
    return f"ord_{clone_id}_before_{vm_id}"


def avoid_location_id(vm_id: str, node: str) -> str:
    return f"location-{vm_id}-{id_part(node)}--INFINITY"
