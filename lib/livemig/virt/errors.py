"""virt/'s own errors: what the libvirt layer tells its callers, without OCF codes.

The agent (livemig.agents.virtualdomain) decides what each means to Pacemaker; `livemig check`
turns them into rows. Nothing here knows either.
"""

from __future__ import annotations


class VirtError(Exception):
    """Base of virt/'s errors; ``reason`` is a sentence an operator can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class InvalidSetting(VirtError):
    """A parameter that cannot become a libvirt call (a URI, a migration option, a flag)."""


class OperationFailed(VirtError):
    """A libvirt operation (a migration, a domain's arrival) did not do what it was for."""
