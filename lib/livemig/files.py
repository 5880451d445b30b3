"""Reading input files without hanging and without unbounded memory.

The agent's ``config`` file (and the files the ``livemig`` command is given)
may be anything: a FIFO, a device, a huge file, or a regular file on an NFS,
GFS2, OCFS2 or FUSE mount that has stopped answering. Here a file is opened
non-blocking (a FIFO or a device cannot block the open), checked to be a
regular file, read up to a size limit, and the whole of it (``stat`` and
``open`` included) runs through :func:`livemig.bounded.bounded_call`, so a
mount that does not answer costs at most the bound.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional

from livemig.bounded import CallTimeout, bounded_call


class FileUnreadable(Exception):  # noqa: N818 - reads as a condition
    """The file cannot be read. ``missing``: it does not exist; ``timed_out``: its storage did not answer."""

    def __init__(self, message: str, *, missing: bool = False, timed_out: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.timed_out = timed_out


class FileTooLarge(FileUnreadable):
    """The file is larger than the limit the caller set."""


def _describe(path: str, exc: OSError) -> FileUnreadable:
    missing = exc.errno in (errno.ENOENT, errno.ENOTDIR)
    return FileUnreadable(f"{path}: {exc.strerror or exc}", missing=missing)


def _read(path: str, max_bytes: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _describe(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileUnreadable(f"{path} is not a regular file")
        if st.st_size > max_bytes:
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
    if size > max_bytes:  # grew between fstat and read
        raise FileTooLarge(f"{path} is larger than {max_bytes // 1024} KiB")
    return b"".join(chunks)


def read_regular_file(path: str, max_bytes: int, seconds: float) -> bytes:
    """The bytes of the regular file ``path``, or :class:`FileUnreadable` (never a hang past ``seconds``)."""
    try:
        return bounded_call(f"read {path}", seconds, _read, path, max_bytes)
    except CallTimeout:
        raise FileUnreadable(f"{path}: its file system did not answer within {max(seconds, 0):.1f}s",
                             timed_out=True) from None


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
