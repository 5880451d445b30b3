"""The table of promotable-clone configurations `livemig check` is judged on, and its oracle.

Each combination: the element (the legacy ``<master>`` or ``<clone>`` with promotable=true),
promoted-max unset/1/2 and master-max unset/1/2, each set on the clone or on the primitive.
:func:`cib_for` writes the CIB (two nodes, fencing, the VM, its colocation and order);
:func:`promoted_instances` is the oracle, written from Pacemaker's documentation of clone
options and not from livemig's code: only the clone's own meta attributes count, promoted-max
when set, else master-max, else 1. The unit test compares `livemig check` with the oracle;
the integration test compares the oracle with what crm_simulate promotes on this machine's
Pacemaker (2.1, and 3.0 in the Debian 13 tier).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Optional, Tuple

ELEMENTS = ("master", "clone")
VALUES: Tuple[Optional[str], ...] = (None, "1", "2")
PLACES = ("clone", "primitive")
NODES = ("alpha", "beta")


@dataclass(frozen=True)
class Combination:
    element: str
    promoted_max: Optional[str]
    promoted_max_on: str
    master_max: Optional[str]
    master_max_on: str

    @property
    def label(self) -> str:
        parts = [self.element]
        if self.promoted_max is not None:
            parts.append(f"promoted-max={self.promoted_max}@{self.promoted_max_on}")
        if self.master_max is not None:
            parts.append(f"master-max={self.master_max}@{self.master_max_on}")
        return ",".join(parts)

    def on(self, place: str) -> List[Tuple[str, str]]:
        found = []
        if self.promoted_max is not None and self.promoted_max_on == place:
            found.append(("promoted-max", self.promoted_max))
        if self.master_max is not None and self.master_max_on == place:
            found.append(("master-max", self.master_max))
        return found


def combinations() -> List[Combination]:
    """The full product (an unset value's place repeats: the same CIB, asked twice)."""
    return [Combination(*values) for values in itertools.product(ELEMENTS, VALUES, PLACES, VALUES, PLACES)]


def distinct_combinations() -> List[Combination]:
    return list({c.label: c for c in combinations()}.values())


# -- the oracle ----------------------------------------------------------------------------------


def promoted_instances(combo: Combination) -> int:
    """How many instances Pacemaker promotes at most (two nodes, clone-max=2)."""
    on_clone = dict(combo.on("clone"))
    wanted = int(on_clone.get("promoted-max", on_clone.get("master-max", "1")))
    return min(wanted, 2)


def deprecated(combo: Combination) -> bool:
    return combo.element == "master" or combo.master_max is not None


def attribute_read(combo: Combination) -> str:
    """What the promoted-max row must print."""
    on_clone = dict(combo.on("clone"))
    for name in ("promoted-max", "master-max"):
        if name in on_clone:
            return f"{name}={on_clone[name]}"
    return "promoted-max not set (1)"


# -- the CIB ---------------------------------------------------------------------------------------


def _meta(owner: str, pairs: List[Tuple[str, str]]) -> str:
    if not pairs:
        return ""
    nvpairs = "".join(f'<nvpair id="{owner}-meta-{name}" name="{name}" value="{value}"/>' for name, value in pairs)
    return f'<meta_attributes id="{owner}-meta">{nvpairs}</meta_attributes>'


def cib_for(combo: Combination) -> str:
    clone_meta = [("clone-max", "2"), ("clone-node-max", "1"), ("notify", "true"), ("interleave", "true")]
    if combo.element == "clone":
        clone_meta.insert(0, ("promotable", "true"))
    clone_meta += combo.on("clone")
    nodes = "".join(f'<node id="{i}" uname="{n}"/>' for i, n in enumerate(NODES, 1))
    fencing = "".join(f'<primitive id="fence-{n}" class="stonith" type="external/ssh">'
                      f'<instance_attributes id="fence-{n}-ia"><nvpair id="fence-{n}-ia-h" name="hostlist" '
                      f'value="{n}"/></instance_attributes></primitive>' for n in NODES)
    drbd = ('<primitive id="drbd_r0" class="ocf" provider="linbit" type="drbd">'
            '<instance_attributes id="drbd_r0-ia"><nvpair id="drbd_r0-ia-res" name="drbd_resource" value="r0"/>'
            f'</instance_attributes>{_meta("drbd_r0", combo.on("primitive"))}<operations>'
            '<op id="drbd_r0-mon-p" name="monitor" interval="29s" role="Promoted" timeout="20s"/>'
            '<op id="drbd_r0-mon-u" name="monitor" interval="31s" role="Unpromoted" timeout="20s"/>'
            '</operations></primitive>')
    vm = ('<primitive id="vm1" class="ocf" provider="heartbeat" type="Dummy">'
          '<meta_attributes id="vm1-meta"><nvpair id="vm1-meta-am" name="allow-migrate" value="true"/>'
          '</meta_attributes></primitive>')
    return (f'<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0"><configuration>'
            '<crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="opt-se" '
            'name="stonith-enabled" value="true"/></cluster_property_set></crm_config>'
            f'<nodes>{nodes}</nodes><resources>{fencing}'
            f'<{combo.element} id="ms_drbd_r0">{_meta("ms_drbd_r0", clone_meta)}{drbd}</{combo.element}>{vm}'
            '</resources><constraints>'
            '<rsc_colocation id="col_vm1_on_ms_drbd_r0" score="INFINITY" rsc="vm1" with-rsc="ms_drbd_r0" '
            'with-rsc-role="Promoted"/>'
            '<rsc_order id="ord_ms_drbd_r0_before_vm1" kind="Mandatory" first="ms_drbd_r0" first-action="promote" '
            'then="vm1" then-action="start"/>'
            '</constraints></configuration><status/></cib>')
