"""Dispatch: one handler per action, one place that maps errors to exit codes.

An agent subclasses :class:`ResourceAgent`, declares ``metadata`` and
implements ``action_<name>`` methods (``-`` in an action name becomes ``_``).
Handlers return an :class:`OCFCode` or raise an :class:`OCFError`;
:meth:`ResourceAgent.main` does the rest: meta-data, usage, unknown actions,
logging setup, the operation deadline, the ``ocf-exit-reason:`` line, and the
conversion of any unexpected exception into code 1 with a reason (the
traceback goes to the log at debug level, never to stdout).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from livemig.ocf.codes import OCFCode
from livemig.ocf.deadline import Deadline, DeadlineExceeded, operation_deadline
from livemig.ocf.environment import OCFEnvironment, printable
from livemig.ocf.errors import OCFError
from livemig.ocf.logs import setup_logging
from livemig.ocf.metadata import AgentMetadata

if TYPE_CHECKING:
    import logging

DEFAULT_EXIT_REASON_PREFIX = "ocf-exit-reason:"

# Actions that need no resource environment at all.
_STATIC_ACTIONS = ("meta-data", "usage", "help", "methods")


#: Pacemaker keeps at most this much of an exit reason (longer ones are cut or dropped,
#: depending on the version); the full text always goes to the log.
EXIT_REASON_MAX = 128


def exit_reason_line(reason: str, environ: Mapping[str, str]) -> str:
    """The line Pacemaker's executor picks up as the exit reason.

    Newlines are folded (the executor reads one line) and the text is cut to
    :data:`EXIT_REASON_MAX` characters, so the most important words come first.
    """
    prefix = environ.get("OCF_EXIT_REASON_PREFIX", DEFAULT_EXIT_REASON_PREFIX)
    flat = " ".join(reason.split())
    if len(flat) > EXIT_REASON_MAX:
        flat = flat[:EXIT_REASON_MAX - 12].rstrip(" ;,") + " (see log)"
    return printable(f"{prefix}{flat}")  # text that any stream can take


class ResourceAgent:
    metadata: AgentMetadata
    #: default deadline (seconds) per action when Pacemaker gives no timeout
    default_timeouts: Dict[str, float] = {}
    #: Actions that still run when an ``OCF_*`` variable is not valid text (read with U+FFFD
    #: in place of the bad bytes, as a wrong value): a failed stop gets the node fenced, and a
    #: monitor or probe must tell whether the resource runs. Every other action returns
    #: ERR_CONFIGURED: a parameter that is not text is a configuration error.
    invalid_text_actions: Tuple[str, ...] = ("stop", "monitor", "status")

    def __init__(self, env: OCFEnvironment, log: logging.Logger, deadline: Deadline) -> None:
        self.env = env
        self.log = log
        self.deadline = deadline
        #: set by a handler that succeeds in a degraded way (e.g. state read from /proc
        #: because libvirtd did not answer): printed as the exit reason with the code
        self.notice: Optional[str] = None

    # -- helpers for subclasses ---------------------------------------------------------

    @classmethod
    def action_names(cls) -> List[str]:
        return [a.name for a in cls.metadata.actions]

    @classmethod
    def usage(cls) -> str:
        names = [n for n in cls.action_names() if n not in ("status",)]
        return f"usage: {cls.metadata.name} {{{'|'.join(names)}}}"

    def handler(self, action: str) -> Optional[Callable[[], OCFCode]]:
        method = getattr(self, "action_" + action.replace("-", "_"), None)
        return method if callable(method) else None

    # -- the entry point ---------------------------------------------------------------

    @classmethod
    def main(cls, argv: Sequence[str], environ: Optional[Mapping[str, str]] = None,
             stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
        """Run one action as Pacemaker does; return the OCF exit code."""
        env_map: Mapping[str, str] = os.environ if environ is None else environ
        out = stdout or sys.stdout
        err = stderr or sys.stderr
        action = argv[1] if len(argv) > 1 else ""

        if action == "meta-data":
            out.write(cls.metadata.to_xml())
            return OCFCode.SUCCESS
        if action in ("usage", "help", "methods"):
            if action == "methods":
                out.write("\n".join(cls.action_names()) + "\n")
            else:
                out.write(cls.usage() + "\n")
            return OCFCode.SUCCESS
        if not action:
            err.write(cls.usage() + "\n")
            return OCFCode.ERR_ARGS
        if len(argv) > 2:
            err.write(cls.usage() + "\n")
            err.write(exit_reason_line(f"unexpected arguments after {action}", env_map) + "\n")
            return OCFCode.ERR_ARGS

        env = OCFEnvironment.from_environ(action, env_map)
        log = setup_logging(cls.metadata.name, env.resource_instance, env_map, stream=err)
        # An action runs if the agent has a handler for it; meta-data lists the ones it
        # advertises (an agent may accept an action before it advertises it).
        if action in _STATIC_ACTIONS or not callable(getattr(cls, "action_" + action.replace("-", "_"), None)):
            err.write(cls.usage() + "\n")
            return OCFCode.ERR_UNIMPLEMENTED
        if env.invalid:
            problem = env.invalid_reason()
            if action not in cls.invalid_text_actions:
                return cls._fail(log, err, env_map, OCFCode.ERR_CONFIGURED, problem)
            log.warning("%s; %s goes on with U+FFFD in place of the bytes that are not text", problem, action)
        deadline = operation_deadline(env.timeout_ms, cls.default_timeouts.get(action, 60.0))
        try:
            agent = cls(env, log, deadline)
            handler = agent.handler(action)
            if handler is None:
                return OCFCode.ERR_UNIMPLEMENTED
            code = handler()
            if agent.notice:
                err.write(exit_reason_line(agent.notice, env_map) + "\n")
            return int(code)
        except OCFError as exc:
            return cls._fail(log, err, env_map, exc.code, exc.reason)
        except DeadlineExceeded as exc:
            return cls._fail(log, err, env_map, OCFCode.ERR_GENERIC, str(exc))
        except Exception as exc:  # noqa: BLE001 - the one place nothing may escape from
            import traceback  # only on this path: it costs every action ~3 ms to import

            log.debug("internal error:\n%s", traceback.format_exc())
            reason = f"internal error in {action}: {type(exc).__name__}: {exc}"
            return cls._fail(log, err, env_map, OCFCode.ERR_GENERIC, reason)

    @staticmethod
    def _fail(log: logging.Logger, err: TextIO, environ: Mapping[str, str],
              code: OCFCode, reason: str) -> int:
        reason = printable(reason)
        log.error("%s", reason)
        err.write(exit_reason_line(reason, environ) + "\n")
        return int(code)


def run(agent_cls: type[ResourceAgent]) -> None:
    """Entry point for an agent executable: run, flush, and exit hard.

    ``os._exit`` is deliberate: a libvirt call abandoned at its bound may
    still be blocked in a worker thread, and must not delay the exit.
    """
    code = agent_cls.main(sys.argv)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        if "logging" in sys.modules:  # flush file handlers; never imported by a quiet monitor
            sys.modules["logging"].shutdown()
    finally:
        os._exit(code)
