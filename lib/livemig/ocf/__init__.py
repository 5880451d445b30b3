"""The OCF framework: return codes, errors, environment, meta-data, dispatch.

Knows nothing of libvirt or DRBD. Agents declare their parameters and actions
(:mod:`livemig.ocf.metadata`), subclass :class:`livemig.ocf.agent.ResourceAgent`
and raise :class:`livemig.ocf.errors.OCFError` subclasses; the dispatcher turns
those into exit codes and ``ocf-exit-reason:`` lines in exactly one place.
"""

from livemig.ocf.codes import OCFCode
from livemig.ocf.errors import (
    ArgsError,
    ConfigurationError,
    GenericError,
    NotInstalledError,
    NotRunningError,
    OCFError,
    PermissionError_,
    UnimplementedError,
)

__all__ = [
    "OCFCode",
    "OCFError",
    "GenericError",
    "ArgsError",
    "UnimplementedError",
    "PermissionError_",
    "NotInstalledError",
    "ConfigurationError",
    "NotRunningError",
]
