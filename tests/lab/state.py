"""What ``up`` has built so far, kept in ``LAB_DIR/state.json`` so that ``down`` (in any process)
undoes exactly that, and so that other processes find each node's PID 1.

Who writes which field: ``lifecycle.up`` the first five, ``diskless``, ``drbd_quorum``, ``two_primaries``, ``ready``
and ``crm_commands``; ``network`` ``netns``; ``nodes`` ``unshare`` and ``holders``; ``storage``
``loop``; ``cluster`` ``vm_agent``. Each saves the file right after a change, so a failed ``up`` leaves
a record of what to remove.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from tests.lab.core import STATE_FILE, LabError


@dataclass
class LabState:
    names: List[str] = field(default_factory=list)          # the nodes, node1 first
    netns_dir_existed: bool = False                          # /run/netns before `up`
    netns_dir_was_mount: bool = False
    started: float = 0.0                                     # time.time() of `up`
    lower_root: str = ""                                     # LIVEMIG_LAB_ROOT of `up`
    netns: List[str] = field(default_factory=list)           # network namespaces created
    unshare: Dict[str, int] = field(default_factory=dict)    # node -> host pid of its `unshare`
    holders: Dict[str, int] = field(default_factory=dict)    # node -> host pid of its PID 1
    loop: str = ""                                           # the loop device under DRBD
    vm_agent: str = ""                                       # the VM's agent in the CIB
    diskless: List[str] = field(default_factory=list)        # nodes whose DRBD has no backing disk
    drbd_quorum: str = ""                                    # DRBD resource option quorum ("" = off)
    two_primaries: str = "always"                            # the VM's drbd_two_primaries
    crm_commands: List[str] = field(default_factory=list)    # the configuration, as typed
    ready: bool = False

    def save(self) -> None:
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        tmp.replace(STATE_FILE)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> LabState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def holder_pid(self, name: str) -> int:
        pid = self.holders.get(name)
        if not pid:
            raise LabError(f"node {name} is not running (is the lab up?)")
        return int(pid)


def load_state() -> Optional[LabState]:
    """The lab's state file, or None where there is none (the lab is down, or `up` never wrote it)."""
    try:
        data = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return LabState.from_dict(data) if isinstance(data, dict) else None
