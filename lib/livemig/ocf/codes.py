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
