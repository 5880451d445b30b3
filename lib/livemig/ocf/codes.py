"""OCF return codes as Pacemaker interprets them."""

from __future__ import annotations

import enum


class OCFCode(enum.IntEnum):
    SUCCESS = 0
    ERR_GENERIC = 1  # soft error: Pacemaker recovers on this node or moves
    ERR_ARGS = 2  # hard error on this node (bad arguments for this node)
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4  # hard error on this node
    ERR_INSTALLED = 5  # hard error on this node: something missing here
    ERR_CONFIGURED = 6  # fatal: the resource is misconfigured on every node
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9
    DEGRADED = 190
    DEGRADED_PROMOTED = 191

    # Names used by resource-agents' shell library, for readers who know it.
    @classmethod
    def from_shell_name(cls, name: str) -> OCFCode:
        table = {
            "OCF_SUCCESS": cls.SUCCESS,
            "OCF_ERR_GENERIC": cls.ERR_GENERIC,
            "OCF_ERR_ARGS": cls.ERR_ARGS,
            "OCF_ERR_UNIMPLEMENTED": cls.ERR_UNIMPLEMENTED,
            "OCF_ERR_PERM": cls.ERR_PERM,
            "OCF_ERR_INSTALLED": cls.ERR_INSTALLED,
            "OCF_ERR_CONFIGURED": cls.ERR_CONFIGURED,
            "OCF_NOT_RUNNING": cls.NOT_RUNNING,
            "OCF_RUNNING_MASTER": cls.RUNNING_PROMOTED,
            "OCF_FAILED_MASTER": cls.FAILED_PROMOTED,
            "OCF_DEGRADED": cls.DEGRADED,
            "OCF_DEGRADED_MASTER": cls.DEGRADED_PROMOTED,
        }
        return table[name]
