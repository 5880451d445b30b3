"""Reading files without hanging and without unbounded memory: the one bounded read.

The agent's ``config`` file (and the files the ``livemig`` command is given)
may be anything: a FIFO, a device, a huge file, or a regular file on an NFS,
GFS2, OCFS2 or FUSE mount that has stopped answering. Here a file is opened
non-blocking (a FIFO or a device cannot block the open), checked to be a
regular file, and read up to a size limit; more than the limit is an error,
never a silent truncation.

- :func:`read_regular_file` (and :func:`read_text_file`, UTF-8): the whole of it
  (``stat`` and ``open`` included) runs through :func:`livemig.bounded.bounded_call`,
  so a mount that does not answer costs at most the bound;
- :func:`read_small_file`: the same checks in the caller's thread, for kernel
  files (``/proc``, ``/sys``: ``kernel=True``, their ``st_size`` says nothing)
  and for callers that bound a whole walk themselves (the disk tracer);
- :func:`read_owned_file`: the state file: not followed through a symlink,
  owned by this user, writable by no one else;
- :func:`read_stream`: standard input, up to the limit and only for as long as the bound.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import Optional

from livemig.bounded import CallTimeout, bounded_call

_CHUNK = 64 * 1024


class FileUnreadable(Exception):  # noqa: N818 - reads as a condition
    """The file cannot be read. ``missing``: it does not exist; ``timed_out``: its storage did not answer.

    ``errno``: the error of the call that failed, when one did.
    """

    def __init__(self, message: str, *, missing: bool = False, timed_out: bool = False,
                 error: Optional[int] = None) -> None:
        super().__init__(message)
        self.missing = missing
        self.timed_out = timed_out
        self.errno = error


class FileTooLarge(FileUnreadable):
    """The file is larger than the limit the caller set."""


class FileNotText(FileUnreadable):
    """The file is not UTF-8 text."""


def _describe(path: str, exc: OSError) -> FileUnreadable:
    missing = exc.errno in (errno.ENOENT, errno.ENOTDIR)
    return FileUnreadable(f"{path}: {exc.strerror or exc}", missing=missing, error=exc.errno)


def _size(count: int) -> str:
    return f"{count // (1024 * 1024)} MiB" if count % (1024 * 1024) == 0 else f"{count} bytes"


def _read_open(path: str, max_bytes: int, *, kernel: bool = False, owned: bool = False) -> bytes:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (os.O_NOFOLLOW if owned else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _describe(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileUnreadable(f"{path} is not a regular file")
        if owned and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
            raise FileUnreadable(f"{path} is not owned by this user, or others may write to it")
        if not kernel and st.st_size > max_bytes:
            raise FileTooLarge(f"{path} is larger than {max_bytes // 1024} KiB")
        chunks = []
        size = 0
        while size <= max_bytes:  # bounded: at most max_bytes + 1 bytes in total
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _describe(path, exc) from None
    finally:
        os.close(fd)
    if size > max_bytes:  # grew between fstat and read, or a kernel file longer than the limit
        raise FileTooLarge(f"{path} is larger than {max_bytes // 1024} KiB")
    return b"".join(chunks)


def read_small_file(path: str, max_bytes: int, *, kernel: bool = False) -> bytes:
    """The bytes of the regular file ``path``, read in this thread; :class:`FileUnreadable` otherwise.

    For kernel files (``kernel=True``: sysfs gives every attribute a size of
    4096, procfs 0, so only what is read counts) and callers that bound the
    whole of their work themselves. A FIFO or device is refused, never waited on.
    """
    return _read_open(path, max_bytes, kernel=kernel)


def read_owned_file(path: str, max_bytes: int) -> bytes:
    """:func:`read_small_file` for a file this user wrote and no one else can have.

    Not followed through a symlink; a regular file owned by this user and
    writable by no one else, or :class:`FileUnreadable`.
    """
    return _read_open(path, max_bytes, owned=True)


def read_regular_file(path: str, max_bytes: int, seconds: float) -> bytes:
    """The bytes of the regular file ``path``, or :class:`FileUnreadable` (never a hang past ``seconds``)."""
    try:
        return bounded_call(f"read {path}", seconds, _read_open, path, max_bytes)
    except CallTimeout:
        raise FileUnreadable(f"{path}: its file system did not answer within {max(seconds, 0):.1f}s",
                             timed_out=True) from None


def read_text_file(path: str, max_bytes: int, seconds: float) -> str:
    """:func:`read_regular_file`, decoded as UTF-8 (anything else is :class:`FileNotText`)."""
    data = read_regular_file(path, max_bytes, seconds)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileNotText(f"{path} is not UTF-8 text") from None


def read_stream(fd: int, max_bytes: int, seconds: float) -> bytes:
    """Up to ``max_bytes`` from ``fd`` (a pipe, a terminal, standard input) until its end, within ``seconds``.

    :class:`FileTooLarge` past ``max_bytes``; :class:`FileUnreadable`
    (``timed_out``) when its end does not come in time, or when it cannot be read.
    """
    import selectors

    from livemig.ocf.deadline import clamp_wait

    end = time.monotonic() + max(0.0, seconds)
    chunks = []
    size = 0
    selector_cls = getattr(selectors, "PollSelector", selectors.SelectSelector)
    try:
        with selector_cls() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:  # bounded: by ``end``, and by max_bytes + 1 bytes read in all
                left = end - time.monotonic()
                if left <= 0:
                    raise FileUnreadable(f"standard input did not reach its end within {max(0.0, seconds):.0f}s",
                                         timed_out=True)
                if not selector.select(clamp_wait(left)):
                    continue
                chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(f"standard input is larger than {_size(max_bytes)}")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FileUnreadable(f"cannot read standard input: {reason}",
                             error=exc.errno if isinstance(exc, OSError) else None) from None
    return b"".join(chunks)


def _stat(path: str) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise _describe(path, exc) from None


def stat_file(path: str, seconds: float) -> Optional[os.stat_result]:
    """``os.stat(path)``; None when it does not exist, :class:`FileUnreadable` when it cannot be told in time."""
    try:
        return bounded_call(f"stat {path}", seconds, _stat, path)
    except CallTimeout:
        raise FileUnreadable(f"{path}: its file system did not answer within {max(seconds, 0):.1f}s",
                             timed_out=True) from None


def replace_file(path: str, text: str, mode: Optional[int] = None, prefix: str = ".livemig-") -> None:
    """Replace ``path`` with ``text`` atomically: a temporary file beside it, then rename.

    ``mode``: the new file's permissions (None: mkstemp's 0600). The temporary
    file never survives a failure. Not bounded: callers on a mount that may hang
    run it through :func:`livemig.bounded.bounded_call`.
    """
    import tempfile  # here: a steady-state monitor only reads (tempfile pulls in shutil, random)

    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
