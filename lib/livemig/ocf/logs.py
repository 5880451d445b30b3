"""Logging that follows Pacemaker's variables.

- ``HA_LOGFACILITY`` / ``PCMK_logfacility``: syslog facility (``none`` turns syslog off)
- ``HA_LOGFILE`` / ``PCMK_logfile``: a file to append to
- ``HA_debug`` / ``PCMK_debug``: debug messages on (``1``, ``yes``, ``true``, or a list
  naming this agent)

With neither syslog nor a file configured, messages go to stderr, which
pacemaker-execd records in its own log. Every line names the agent and the
resource instance, like resource-agents' ``ocf_log``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple, cast

from livemig.ocf.environment import printable

if TYPE_CHECKING:
    import logging

LOGGER_NAME = "livemig"
SYSLOG_SOCKET = "/dev/log"


def _first(env: Mapping[str, str], *names: str) -> Optional[str]:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def debug_enabled(env: Mapping[str, str], agent: str) -> bool:
    value = _first(env, "HA_debug", "PCMK_debug")
    if value is None:
        return False
    words = {w.strip().lower() for w in value.replace(",", " ").split()}
    if words & {"0", "no", "false", "off"}:
        return False
    return bool(words & {"1", "yes", "true", "on", agent.lower()})


class LazyLogger:
    """``logging.getLogger(name)``, with :mod:`logging` imported on first use.

    A steady-state monitor logs nothing, and importing :mod:`logging` (with
    ``traceback``, ``linecache``, ``tokenize``) costs it ~5 ms of CPU on every
    call. The first attribute access imports it and applies the configuration
    :func:`setup_logging` recorded.
    """

    __slots__ = ("_name", "_real")

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: Optional[logging.Logger] = None

    def _logger(self) -> logging.Logger:
        if self._real is None:
            import logging as logging_module

            _apply_pending()
            self._real = logging_module.getLogger(self._name)
        return self._real

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._logger(), attr)


def get_logger(name: str = "livemig") -> logging.Logger:
    """What livemig modules use instead of ``logging.getLogger``: see :class:`LazyLogger`."""
    return cast("logging.Logger", LazyLogger(name))


_pending: Optional[Tuple[str, str, Dict[str, str], Optional[object]]] = None


def setup_logging(agent: str, instance: str, environ: Optional[Mapping[str, str]] = None,
                  stream: Optional[object] = None) -> logging.Logger:
    """Configure the ``livemig`` logger for one invocation and return it.

    Applied at once if :mod:`logging` is already loaded, else on the first log
    call. Idempotent: handlers from a previous call are replaced.
    """
    global _pending
    _pending = (agent, instance, dict(os.environ if environ is None else environ), stream)
    if "logging" in sys.modules:
        _apply_pending()
    return get_logger(LOGGER_NAME)


def _apply_pending() -> None:
    global _pending
    if _pending is not None:
        agent, instance, env, stream = _pending
        _pending = None
        _configure(agent, instance, env, stream)


def _configure(agent: str, instance: str, env: Mapping[str, str], stream: Optional[object]) -> None:
    import logging

    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        try:
            handler.close()  # Python 3.9's flushes the stream first: it may be closed already
        except (OSError, ValueError):
            pass
    logger.propagate = False
    logger.setLevel(logging.DEBUG if debug_enabled(env, agent) else logging.INFO)

    # The tag goes into %-style format strings: a "%" in the instance name must stay literal.
    tag = printable(f"{agent}({instance})[{os.getpid()}]").replace("%", "%%")
    handlers: List[logging.Handler] = []

    class Formatter(logging.Formatter):
        """Lines that any handler can encode: a byte that was not UTF-8 (in a path, say) shows as \\xNN."""

        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record))

    # A log line that cannot be written is dropped, never turned into a traceback on
    # stderr (where Pacemaker looks for the exit reason).
    logging.raiseExceptions = False
    facility = _first(env, "HA_LOGFACILITY", "PCMK_logfacility")
    # SysLogHandler swallows a failed connect and fails at every emit instead: only use it
    # when a syslog socket exists (a node may run no syslog daemon at all).
    if facility and facility.lower() not in ("none", "no", "false") and os.path.exists(SYSLOG_SOCKET):
        # Imported only when syslog is wanted: logging.handlers pulls in socket, pickle and queue.
        from logging.handlers import SysLogHandler as syslog_cls  # noqa: N813
        code = syslog_cls.facility_names.get(facility.lower(), syslog_cls.LOG_DAEMON)
        try:
            syslog = syslog_cls(address="/dev/log", facility=code)
            syslog.setFormatter(Formatter(f"{tag}: %(levelname)s: %(message)s"))
            handlers.append(syslog)
        except OSError:
            pass  # no syslog socket: fall through to the file or stderr

    logfile = _first(env, "HA_LOGFILE", "PCMK_logfile")
    if logfile and logfile.lower() not in ("none", "/dev/null"):
        try:
            fh = logging.FileHandler(logfile, encoding="utf-8")
            fh.setFormatter(Formatter(
                f"%(asctime)s {tag}: %(levelname)s: %(message)s", "%b %d %H:%M:%S"))
            handlers.append(fh)
        except OSError:
            pass

    if not handlers:
        err = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
        err.setFormatter(Formatter(f"{tag}: %(levelname)s: %(message)s"))
        handlers.append(err)

    for handler in handlers:
        logger.addHandler(handler)
