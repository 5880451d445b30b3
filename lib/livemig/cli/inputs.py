"""The files the ``livemig`` command is given: read bounded, FIFO-safe, or refused with a reason.

Every file named on the command line (``--cib``, ``--domain-xml``,
``--drbd-xml``) is read with :func:`livemig.files.read_regular_file`: it must
be a regular file (a FIFO, a device or a directory is refused, never waited
on), of at most a size, and a file system that does not answer costs at most a
bound. ``-`` (standard input, where an option accepts it) is read with the same
limits: at most the size, and only for as long as the bound.
"""

from __future__ import annotations

import errno
import os
from typing import Callable, Dict, Optional, Sequence

from livemig import files
from livemig.files import FileUnreadable, read_regular_file, stat_file
from livemig.names import PeerNameError, parse_peer_names
from livemig.ocf.deadline import Deadline

MAX_INPUT_BYTES = 16 * 1024 * 1024
#: A file system that does not answer a read or a stat within this long makes the file unreadable.
FILE_TIMEOUT = 10.0


class InputError(Exception):
    """A file or value given on the command line cannot be used; the message names the option and what was given."""


def _seconds(deadline: Optional[Deadline]) -> float:
    return deadline.bound(FILE_TIMEOUT) if deadline is not None else FILE_TIMEOUT


def read_bytes(path: str, option: str, *, max_bytes: int = MAX_INPUT_BYTES, deadline: Optional[Deadline] = None,
               stdin_fd: Optional[int] = None) -> bytes:
    """The bytes of the file ``path`` (``-``: of ``stdin_fd``, when given), or :class:`InputError`."""
    if path == "-" and stdin_fd is not None:
        return read_stream(stdin_fd, f"{option} -", max_bytes, _seconds(deadline))
    try:
        return read_regular_file(path, max_bytes, _seconds(deadline))
    except FileUnreadable as exc:
        raise InputError(f"{option} {exc}") from None


def read_text(path: str, option: str, *, max_bytes: int = MAX_INPUT_BYTES, deadline: Optional[Deadline] = None,
              stdin_fd: Optional[int] = None) -> str:
    """:func:`read_bytes`, decoded as UTF-8 (anything else is :class:`InputError`)."""
    data = read_bytes(path, option, max_bytes=max_bytes, deadline=deadline, stdin_fd=stdin_fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{option} {path}: not UTF-8 text") from None


def check_regular_file(path: str, option: str, *, max_bytes: int = MAX_INPUT_BYTES,
                       deadline: Optional[Deadline] = None) -> None:
    """:class:`InputError` unless ``path`` is a readable regular file of at most ``max_bytes``.

    For a file another program reads (``--cib`` goes to cibadmin through
    ``CIB_file``): it must not be able to make that program block either.
    """
    read_bytes(path, option, max_bytes=max_bytes, deadline=deadline)


def read_stream(fd: int, what: str, max_bytes: int, seconds: float) -> bytes:
    """Up to ``max_bytes`` from ``fd`` until end of file, waiting at most ``seconds`` in all."""
    try:
        return files.read_stream(fd, max_bytes, seconds)
    except FileUnreadable as exc:
        raise InputError(f"{what}: {exc}") from None


def bounded_stat(deadline: Optional[Deadline]) -> Callable[[str], os.stat_result]:
    """``os.stat`` that raises OSError (never hangs) when the file system does not answer in time."""

    def stat(path: str) -> os.stat_result:
        try:
            result = stat_file(path, _seconds(deadline))
        except FileUnreadable as exc:
            raise OSError(errno.ETIMEDOUT if exc.timed_out else errno.EIO, str(exc)) from None
        if result is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return result

    return stat


def peer_names_option(items: Sequence[str]) -> Dict[str, str]:
    """The ``--peer-name NODE=HOST`` options (:func:`livemig.names.parse_peer_names`), or :class:`InputError`."""
    try:
        return parse_peer_names(items)
    except PeerNameError as exc:
        raise InputError(f"--peer-name wants NODE=HOST, got {exc.item!r}") from None
