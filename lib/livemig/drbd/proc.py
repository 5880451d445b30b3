"""DRBD 8.x state from ``/proc/drbd``.

The format, as 8.0 to 8.4 print it (one block per minor)::

    version: 8.4.11-1 (api:1/proto:86-101)
    GIT-hash: ... build by ...            (or "srcversion: ..." on some builds)
     1: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
        ns:524236 nr:0 dw:0 ... ep:1 wo:f oos:0
     2: cs:Unconfigured

Variations handled here, all seen in real output: 8.0 (and older) write
``st:`` where 8.3/8.4 write ``ro:``; the I/O-flag field has 4 to 6 characters
and may be followed by NUL bytes (8.3.1 prints an unset flag as NUL); a
StandAlone minor has blanks where the protocol letter goes; empty lines may
appear anywhere; the ``version:`` line may be missing; a SyncSource/SyncTarget
minor has progress lines; ``oos:`` (out of sync, KiB) exists from 8.3 on.

Everything else is read strictly, never resolved one way or the other:

- a minor line that carries a field twice (``ro:`` or ``st:`` twice, ``ds:``
  twice, two protocol letters, two I/O-flag fields, a second ``cs:``), a line
  that starts like a minor's (``N:``) but is not one, or a minor block with a
  character the kernel does not print (a NUL byte anywhere but right after the
  I/O flags, a control or non-ASCII character), with a line under it that is
  not indented, or with resync progress lines under a minor that is not
  resyncing: that minor's state is unreadable (:attr:`ProcMinor.unreadable`);
- I/O flags not in the kernel's shape (``r`` or ``s``, then 3 to 5 of
  ``a``/``p``/``u``/a congestion letter/``s`` or ``-`` in their places): the
  I/O state is unknown;
- a minor block with two ``oos:`` counts or two statistics lines, or (from 8.3
  on, and wherever the version line does not say 8.0 to 8.2) with no ``oos:``
  count: its out-of-sync is unreadable;
- such a character in the header: the version is unreadable; more than one
  ``version:`` line: :class:`DrbdStateError`.

DRBD 9 keeps ``/proc/drbd`` but prints only its version there: no minors.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Mapping, Optional, Tuple

from livemig.drbd.state import (
    DrbdResourceState,
    DrbdStateError,
    DrbdStatus,
    PeerState,
    PeerVolumeState,
    VolumeState,
    generation_of,
)
from livemig.files import FileUnreadable, read_regular_file

#: Where the kernel puts it; the environment variable overrides it (for tests).
PROC_DRBD_PATH = "/proc/drbd"
PROC_DRBD_ENV = "LIVEMIG_PROC_DRBD"
#: More than this is not /proc/drbd (4 MiB: some 40000 minors' lines).
MAX_PROC_DRBD_BYTES = 4 * 1024 * 1024
#: Reading it may take this long at most (a file named by the variable may be on any mount).
PROC_DRBD_TIMEOUT = 10.0

_VERSION = re.compile(r"^version: (\S+)")
_MINOR = re.compile(r"^[ \t]*([0-9]+):[ \t]+cs:(\S*)(.*)$")
_MINOR_LIKE = re.compile(r"^[ \t]*([0-9]+):")
_PAIR = re.compile(r"^(ro|st|ds):([^/\s]*)/([^/\s]*)$")
_DIGITS = re.compile(r"^[0-9]+$")
#: What the kernel prints: printable ASCII and tabs.
_PRINTABLE = re.compile(r"^[\t -~]*$")
#: drbd_proc.c: s/r (I/O suspended or running), then a (after-sync-dependency), p (peer-initiated
#: pause), u (user pause), a congestion letter, s (activity log suspended), "-" where unset;
#: 8.0 prints the first four, 8.3.1 five, later versions six.
_FLAGS = re.compile(r"^[rs][-a][-p][-u](?:[-a-z][-s]?)?$")
#: The version lines of 8.0 to 8.2, whose kernels print no oos:.
_BEFORE_OOS = re.compile(r"^8\.([0-9]+)(?![0-9A-Za-z])")
_PROTOCOLS = ("A", "B", "C")
#: Connection states under which the kernel prints resync progress lines.
_PROGRESS_STATES = ("SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT", "VerifyS", "VerifyT")


@dataclass(frozen=True)
class ProcMinor:
    """One minor's line (and its statistics line) from ``/proc/drbd``."""

    minor: int
    connection: Optional[str]
    local_role: Optional[str] = None
    peer_role: Optional[str] = None
    local_disk: Optional[str] = None
    peer_disk: Optional[str] = None
    protocol: Optional[str] = None
    io_flags: Optional[str] = None
    out_of_sync_kib: Optional[int] = None
    out_of_sync_unreadable: bool = False
    #: Why the minor's lines could not be read; every state field is then None.
    unreadable: Optional[str] = None

    @property
    def configured(self) -> bool:
        return self.connection != "Unconfigured"

    @property
    def suspended(self) -> Optional[bool]:
        """From the first I/O flag: ``r`` running, ``s`` suspended; unknown unless the flags have the kernel's shape."""
        if not self.io_flags or not _FLAGS.match(self.io_flags):
            return None
        return self.io_flags[0] == "s"


@dataclass(frozen=True)
class ProcDrbd:
    version: Optional[str]
    minors: Tuple[ProcMinor, ...]

    @property
    def generation(self) -> Optional[int]:
        found = generation_of(self.version)
        if self.minors:
            # Only 8.x lists minors here (8.0 builds may omit the version line); minor lines
            # under a version that is not 8.x contradict it: the generation cannot be told.
            return 8 if self.version is None or found == 8 else None
        return found

    def configured_minors(self) -> Tuple[ProcMinor, ...]:
        return tuple(m for m in self.minors if m.configured)

    def minor(self, number: int) -> Optional[ProcMinor]:
        """Minor ``number`` as listed (configured or not), ``None`` if it is not listed."""
        for m in self.minors:
            if m.minor == number:
                return m
        return None

    def to_status(
        self,
        names: Optional[Mapping[int, str]] = None,
        volumes: Optional[Mapping[int, int]] = None,
    ) -> DrbdStatus:
        """One resource per configured minor, named from ``names`` (minor -> resource)."""
        names = names or {}
        volumes = volumes or {}
        return DrbdStatus(
            drbd_version=self.version,
            generation=self.generation,
            resources=tuple(
                minor_as_resource(m, names.get(m.minor), volumes.get(m.minor))
                for m in self.configured_minors()
            ),
        )


def minor_as_resource(m: ProcMinor, name: Optional[str], volume: Optional[int],
                      peer_name: Optional[str] = None) -> DrbdResourceState:
    """Minor ``m`` as a resource entry; ``peer_name`` is the peer's host name if known (8.x does not show it)."""
    if m.unreadable is not None:
        return DrbdResourceState(name=name, role=None, suspended=None,
                                 volumes=(VolumeState(volume=volume, minor=m.minor, disk=None),),
                                 unreadable=m.unreadable)
    peer_volume = PeerVolumeState(
        volume=volume,
        replication=None,
        disk=m.peer_disk,
        out_of_sync_kib=m.out_of_sync_kib,
        minor=m.minor,
        out_of_sync_unreadable=m.out_of_sync_unreadable,
    )
    return DrbdResourceState(
        name=name,
        role=m.local_role,
        suspended=m.suspended,
        volumes=(VolumeState(volume=volume, minor=m.minor, disk=m.local_disk, quorum=None),),
        peers=(PeerState(name=peer_name, node_id=None, connection=m.connection, role=m.peer_role,
                         volumes=(peer_volume,)),),
    )


@dataclass
class _Block:
    """What the lines under one minor line say."""

    stats_lines: int = 0
    oos: List[str] = field(default_factory=list)
    progress: bool = False
    garbled: Optional[str] = None


def parse_proc_drbd(text: str) -> ProcDrbd:
    """Parse the text of ``/proc/drbd``.

    Fields a line does not carry (or carries in a shape not understood) stay
    ``None``. Raises :class:`DrbdStateError` for text that cannot be
    ``/proc/drbd`` at all (the same minor twice, two ``version:`` lines).
    """
    version: Optional[str] = None
    version_lines = 0
    header_garbled = False
    minors: Dict[int, ProcMinor] = {}
    blocks: Dict[int, _Block] = {}
    current: Optional[int] = None
    for raw_line in text.split("\n"):
        line = raw_line.rstrip(" \t")
        if not line:
            continue
        like = _MINOR_LIKE.match(line)
        if like:
            number = int(like.group(1))
            if number in minors:
                raise DrbdStateError(f"/proc/drbd lists minor {number} twice")
            minors[number] = _parse_minor_line(number, line)
            blocks[number] = _Block()
            current = number
            continue
        if not _PRINTABLE.match(line):
            if current is None:
                header_garbled = True
            else:
                blocks[current].garbled = blocks[current].garbled or (
                    f"/proc/drbd: a line under minor {current} holds a character the kernel does not print: "
                    f"{line[:80]!r}")
            continue
        if line.startswith("version:"):
            version_lines += 1
            if version_lines > 1:
                raise DrbdStateError("/proc/drbd has more than one version: line")
            found = _VERSION.match(line)
            version = found.group(1) if found else None
            current = None
            continue
        if current is None:
            continue  # the header (GIT-hash, srcversion, ...)
        block = blocks[current]
        if line[0] not in " \t":
            # the kernel indents every line it prints under a minor's line
            block.garbled = block.garbled or (f"/proc/drbd: a line under minor {current} is not indented as the "
                                              f"kernel prints it: {line[:80]!r}")
            continue
        words = line.split()
        if words[0].startswith("[") or words[0] in ("finish:", "sync'ed:", "verified:"):
            block.progress = True
        if words[0].startswith("ns:") or any(w.startswith("oos:") for w in words):
            block.stats_lines += 1
            block.oos.extend(w[4:] for w in words if w.startswith("oos:"))
    if header_garbled:
        version = None
    oos_printed = not _prints_no_oos(version)
    for number, block in blocks.items():
        minors[number] = _with_block(minors[number], block, oos_printed)
    return ProcDrbd(version=version, minors=tuple(minors[n] for n in sorted(minors)))


def _prints_no_oos(version: Optional[str]) -> bool:
    """Whether the version line says 8.0 to 8.2, whose kernels print no oos: count."""
    found = _BEFORE_OOS.match(version or "")
    return found is not None and int(found.group(1)) < 3


def _with_block(minor: ProcMinor, block: _Block, oos_printed: bool) -> ProcMinor:
    """``minor`` with what its block says (its out-of-sync count), or unreadable."""
    if minor.unreadable is not None or not minor.configured:
        return minor
    why = block.garbled
    if why is None and block.progress and minor.connection not in _PROGRESS_STATES:
        why = (f"/proc/drbd: minor {minor.minor} is {minor.connection} but has resync progress lines "
               "(printed only while a resync or verify runs)")
    if why is not None:
        return ProcMinor(minor=minor.minor, connection=None, unreadable=why)
    if block.stats_lines == 1 and len(block.oos) == 1 and _DIGITS.match(block.oos[0]):
        return replace(minor, out_of_sync_kib=int(block.oos[0]))
    if block.stats_lines <= 1 and not block.oos and not oos_printed:
        return minor  # 8.0 to 8.2: not reported
    # not a count, two counts or statistics lines, or none where the version prints one: unknown, never a guess
    return replace(minor, out_of_sync_kib=None, out_of_sync_unreadable=True)


def _parse_minor_line(number: int, line: str) -> ProcMinor:
    if "\0" in line:
        core = line.rstrip("\0")
        if "\0" in core or core[-1:] in ("", " ", "\t"):
            return _garbled(number, f"/proc/drbd: the line of minor {number} has a NUL byte elsewhere than "
                                    "right after its I/O flags")
        line = core  # 8.3.1 prints an unset last flag as NUL
    if not _PRINTABLE.match(line):
        return _garbled(number, f"/proc/drbd: the line of minor {number} holds a character the kernel does not "
                                f"print: {line[:80]!r}")
    found = _MINOR.match(line)
    if not found:
        return _garbled(number, f"/proc/drbd: the line of minor {number} is not understood: {line[:80]!r}")
    cstate, rest = found.group(2), found.group(3)
    fields: Dict[str, Tuple[str, str]] = {}
    protocols = []
    tail = []
    repeated: Optional[str] = None
    for token in rest.split():
        pair = _PAIR.match(token)
        if pair:
            key = "ro" if pair.group(1) in ("ro", "st") else "ds"
            if key in fields:
                repeated = repeated or token
            fields[key] = (pair.group(2), pair.group(3))
        elif token in _PROTOCOLS:
            protocols.append(token)
        elif token.startswith(("cs:", "ro:", "st:", "ds:")):
            repeated = repeated or token  # a second cs:, or a role/disk pair not understood
        else:
            tail.append(token)
    if len(protocols) > 1:
        repeated = repeated or " ".join(protocols)
    if len(tail) > 1:
        repeated = repeated or " ".join(tail)
    if repeated is not None:
        return ProcMinor(minor=number, connection=cstate or None,
                         unreadable=f"/proc/drbd: the line of minor {number} is not understood "
                                    f"(a field given twice or not understood: {repeated!r})")
    roles = fields.get("ro", (None, None))
    disks = fields.get("ds", (None, None))
    return ProcMinor(
        minor=number,
        connection=cstate or None,
        local_role=roles[0] or None,
        peer_role=roles[1] or None,
        local_disk=disks[0] or None,
        peer_disk=disks[1] or None,
        protocol=protocols[0] if protocols else None,
        io_flags=tail[0] if tail else None,
    )


def _garbled(number: int, why: str) -> ProcMinor:
    return ProcMinor(minor=number, connection=None, unreadable=why)


def proc_drbd_path(environ: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(PROC_DRBD_ENV) or PROC_DRBD_PATH


def read_proc_drbd(path: str, seconds: float = PROC_DRBD_TIMEOUT) -> Optional[ProcDrbd]:
    """Read and parse ``path``; ``None`` if it does not exist (no DRBD module loaded).

    Raises :class:`DrbdStateError` if it exists but cannot be read within
    ``seconds``, is not a regular file (a FIFO or a device named by
    ``LIVEMIG_PROC_DRBD`` is refused, never waited on) or is larger than
    :data:`MAX_PROC_DRBD_BYTES`.
    """
    try:
        data = read_regular_file(path, MAX_PROC_DRBD_BYTES, seconds)
    except FileUnreadable as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise DrbdStateError(f"cannot read {exc}" if exc.errno is not None else f"cannot read {path}: {exc}") from None
    return parse_proc_drbd(data.decode("utf-8", "replace"))
