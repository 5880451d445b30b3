"""Typed errors that carry an OCF return code and an exit reason.

Code anywhere in livemig raises one of these; only the dispatcher
(:func:`livemig.ocf.agent.ResourceAgent.main`) turns them into an exit code.
The reason is what an operator reads in ``crm_mon``: say what was seen and
what to do about it.
"""

from __future__ import annotations

from livemig.ocf.codes import OCFCode


class OCFError(Exception):
    code: OCFCode = OCFCode.ERR_GENERIC

    def __init__(self, reason: str, code: OCFCode | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.reason


class GenericError(OCFError):
    code = OCFCode.ERR_GENERIC


class ArgsError(OCFError):
    code = OCFCode.ERR_ARGS


class UnimplementedError(OCFError):
    code = OCFCode.ERR_UNIMPLEMENTED


class PermissionError_(OCFError):  # noqa: N801 - avoid shadowing the builtin
    code = OCFCode.ERR_PERM


class NotInstalledError(OCFError):
    code = OCFCode.ERR_INSTALLED


class ConfigurationError(OCFError):
    code = OCFCode.ERR_CONFIGURED


class NotRunningError(OCFError):
    code = OCFCode.NOT_RUNNING
