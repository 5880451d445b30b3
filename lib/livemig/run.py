"""Running external commands: argv only, never a shell, always a timeout.

Every external program livemig calls (crm_resource, cibadmin, drbdadm,
drbdsetup, ...) goes through a :class:`CommandRunner`, so that tests can inject
a scripted runner and so that no call can outlive its bound. On timeout the
whole process group of the child is killed: a hung tool that forked helpers
cannot keep the agent waiting.

What a command prints is read as it comes, up to a cap per stream
(:data:`DEFAULT_MAX_STDOUT`, :data:`DEFAULT_MAX_STDERR`, or what the caller
sets): a tool that prints more is killed, with its process group, and the call
raises :class:`CommandOutputTooLarge`. Memory stays bounded whatever a tool
prints (``drbdsetup status --json`` on a host full of resources, a broken tool
looping).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

from livemig.ocf.deadline import clamp_wait
from livemig.ocf.logs import get_logger

if TYPE_CHECKING:
    import subprocess  # nosec B404 # argv lists only, never shell=True (see CommandRunner)

# subprocess, shutil and signal are imported where a command is run: a steady-state
# monitor runs none, and shutil alone pulls in bz2, lzma and fnmatch.

log = get_logger(__name__)

MIB = 1024 * 1024
#: What :meth:`CommandRunner.run` keeps of a command's stdout by default (more kills it).
DEFAULT_MAX_STDOUT = 16 * MIB
#: ... and of its stderr: only its last line makes an exit reason.
DEFAULT_MAX_STDERR = 1 * MIB
_READ_CHUNK = 64 * 1024
_PIPE_BUF = 512  # what poll's POLLOUT guarantees can be written without blocking


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


class CommandOutputTooLarge(CommandError):
    """The program wrote more than the cap on one of its streams and was killed."""

    def __init__(self, argv: Sequence[str], stream: str, limit: int) -> None:
        super().__init__(argv, f"{argv[0]} wrote more than {_size(limit)} to {stream} and was killed "
                               "(output cap; see livemig.run)")
        self.stream = stream
        self.limit = limit


def _size(count: int) -> str:
    if count >= MIB and count % MIB == 0:
        return f"{count // MIB} MiB"
    if count >= 1024 and count % 1024 == 0:
        return f"{count // 1024} KiB"
    return f"{count} bytes"


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
        *,
        max_stdout: int = DEFAULT_MAX_STDOUT,
        max_stderr: int = DEFAULT_MAX_STDERR,
    ) -> CommandResult:
        """Run ``argv`` and return its result, whatever its exit code.

        Raises :class:`CommandNotFound` if the program is missing,
        :class:`CommandTimeout` if it ran past ``timeout`` seconds and
        :class:`CommandOutputTooLarge` if it wrote more than ``max_stdout``
        bytes to stdout or ``max_stderr`` to stderr; in both last cases its
        process group is killed first.
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
        timeout = clamp_wait(timeout)
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
            out, err = _exchange(proc, argv, stdin.encode() if stdin is not None else None,
                                 started + timeout, max(0, max_stdout), max(0, max_stderr))
            try:
                proc.wait(timeout=clamp_wait(started + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:  # closed its output but did not exit
                raise _Expired() from None
        except _Expired:
            _kill_group(proc)
            raise CommandTimeout(argv, f"{argv[0]} did not finish within {timeout:.1f}s and was killed") from None
        except BaseException:
            _kill_group(proc)
            raise
        result = CommandResult(
            argv=list(argv),
            returncode=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
        )
        log.debug("%s -> %d in %.2fs", argv[0], proc.returncode, time.monotonic() - started)
        return result


class _Expired(Exception):
    """The command's time ran out (turned into :class:`CommandTimeout` by the caller)."""


def _exchange(proc: subprocess.Popen[bytes], argv: Sequence[str], data: Optional[bytes], end: float,
              max_stdout: int, max_stderr: int) -> Tuple[bytes, bytes]:
    """Feed ``data`` to the child's stdin and read its stdout and stderr until both close.

    Never holds more than a cap (plus the one byte that shows it passed) of
    either stream; raises :class:`CommandOutputTooLarge` past a cap and
    :class:`_Expired` at ``end`` (monotonic time).
    """
    import selectors

    if proc.stdout is None or proc.stderr is None:
        raise ValueError("stdout and stderr must be pipes")
    caps: Dict[int, Tuple[str, int]] = {proc.stdout.fileno(): ("stdout", max_stdout),
                                         proc.stderr.fileno(): ("stderr", max_stderr)}
    chunks: Dict[int, List[bytes]] = {fd: [] for fd in caps}
    sizes: Dict[int, int] = {fd: 0 for fd in caps}
    offset = 0
    # poll(2), as subprocess does: select(2) cannot watch a descriptor numbered 1024 or more.
    selector_cls = getattr(selectors, "PollSelector", selectors.SelectSelector)
    with selector_cls() as selector:
        for fd in caps:
            selector.register(fd, selectors.EVENT_READ)
        if proc.stdin is not None:
            if data:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        while selector.get_map():  # bounded: each turn waits at most until ``end``
            left = end - time.monotonic()
            if left <= 0:
                raise _Expired()
            for key, _events in selector.select(clamp_wait(left)):
                fd = key.fd
                if fd not in caps:  # stdin
                    if proc.stdin is None or data is None:
                        raise ValueError("stdin is not a pipe")
                    try:
                        offset += os.write(fd, data[offset:offset + _PIPE_BUF])
                    except BlockingIOError:
                        continue
                    except OSError:  # EPIPE
                        offset = len(data)  # the child does not read it: its exit status tells
                    if offset >= len(data):
                        selector.unregister(fd)
                        proc.stdin.close()
                    continue
                stream, cap = caps[fd]
                chunk = os.read(fd, min(_READ_CHUNK, cap + 1 - sizes[fd]))
                if not chunk:
                    selector.unregister(fd)
                    continue
                sizes[fd] += len(chunk)
                if sizes[fd] > cap:
                    raise CommandOutputTooLarge(argv, stream, cap)
                chunks[fd].append(chunk)
    out, err = b"".join(chunks[proc.stdout.fileno()]), b"".join(chunks[proc.stderr.fileno()])
    proc.stdout.close()
    proc.stderr.close()
    return out, err


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group, drop its pipes unread, reap it (bounded)."""
    import signal
    import subprocess  # nosec B404 # only for TimeoutExpired/Popen types

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()  # nothing more is read: a helper outside the group gets EPIPE
            except OSError:
                pass
    try:
        proc.wait(timeout=2)  # bounded: the group was SIGKILLed
    except (subprocess.TimeoutExpired, OSError):
        pass
