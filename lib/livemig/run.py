"""Running external commands: argv only, never a shell, always a timeout.

Every external program livemig calls (crm_resource, cibadmin, drbdadm,
drbdsetup, ...) goes through a :class:`CommandRunner`, so that tests can inject
a scripted runner and so that no call can outlive its bound. On timeout the
whole process group of the child is killed: a hung tool that forked helpers
cannot keep the agent waiting.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from livemig.ocf.logs import get_logger

if TYPE_CHECKING:
    import subprocess  # nosec B404 # argv lists only, never shell=True (see CommandRunner)

# subprocess, shutil and signal are imported where a command is run: a steady-state
# monitor runs none, and shutil alone pulls in bz2, lzma and fnmatch.

log = get_logger(__name__)


class CommandError(Exception):
    """A command could not be run, or did not finish in time.

    Carries the argv so that an exit reason can name what failed.
    """

    def __init__(self, argv: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.argv = list(argv)
        self.message = message

    def __str__(self) -> str:
        return self.message


class CommandNotFound(CommandError):
    """The program is not installed (not on PATH, or not executable)."""


class CommandTimeout(CommandError):
    """The program did not finish within its bound and was killed."""


class CommandResult:
    """What a command did: its argv, exit code and decoded output."""

    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"CommandResult({list(self.argv)!r}, {self.returncode})"

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """A one-line summary for logs and exit reasons."""
        err = self.stderr.strip().splitlines()
        tail = f": {err[-1]}" if err else ""
        return f"{' '.join(self.argv)} exited {self.returncode}{tail}"


class CommandRunner:
    """Runs programs by argv with a timeout; the default, real implementation.

    ``env`` entries are added to (not substituted for) the inherited
    environment; ``path`` overrides where programs are looked up.
    """

    def __init__(self, env: Optional[Mapping[str, str]] = None, path: Optional[str] = None) -> None:
        self._env = dict(env or {})
        self._path = path

    def which(self, program: str) -> Optional[str]:
        if os.sep in program:
            return program if os.access(program, os.X_OK) else None
        import shutil

        return shutil.which(program, path=self._path or os.environ.get("PATH", os.defpath))

    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        stdin: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> CommandResult:
        """Run ``argv`` and return its result, whatever its exit code.

        Raises :class:`CommandNotFound` if the program is missing and
        :class:`CommandTimeout` if it ran past ``timeout`` seconds.
        """
        if not argv:
            raise ValueError("empty argv")
        exe = self.which(argv[0])
        if exe is None:
            raise CommandNotFound(argv, f"{argv[0]}: command not found")
        full_env = dict(os.environ)
        full_env.update(self._env)
        if env:
            full_env.update(env)
        timeout = max(0.0, timeout)
        import subprocess  # nosec B404 # argv lists only, never shell=True

        started = time.monotonic()
        log.debug("running: %s (timeout %.1fs)", " ".join(argv), timeout)
        try:
            proc = subprocess.Popen(  # nosec B603 # argv from livemig's code, no shell
                [exe, *argv[1:]],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise CommandNotFound(argv, f"{argv[0]}: cannot execute: {exc.strerror}") from exc
        try:
            out, err = proc.communicate(input=stdin.encode() if stdin is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandTimeout(argv, f"{argv[0]} did not finish within {timeout:.1f}s and was killed") from None
        result = CommandResult(
            argv=list(argv),
            returncode=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
        )
        log.debug("%s -> %d in %.2fs", argv[0], proc.returncode, time.monotonic() - started)
        return result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    import signal
    import subprocess  # nosec B404 # only for TimeoutExpired/Popen types

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        # Bounded: the group was SIGKILLed; pipes close when it dies.
        proc.communicate(timeout=2)
    except (subprocess.TimeoutExpired, OSError):
        pass
