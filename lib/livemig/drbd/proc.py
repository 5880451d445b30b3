"""DRBD 8.x state from ``/proc/drbd``.

The format, as 8.0 to 8.4 print it (one block per minor)::

    version: 8.4.11-1 (api:1/proto:86-101)
    GIT-hash: ... build by ...            (or "srcversion: ..." on some builds)
     1: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
        ns:524236 nr:0 dw:0 ... ep:1 wo:f oos:0
     2: cs:Unconfigured

Variations handled here, all seen in real output: 8.0 (and older) write
``st:`` where 8.3/8.4 write ``ro:``; the I/O-flag field has 4 to 6 characters
and may carry a trailing NUL byte; a StandAlone minor has blanks where the
protocol letter goes; empty lines may appear anywhere; the ``version:`` line
may be missing; a SyncSource/SyncTarget minor has progress lines; ``oos:``
(out of sync, KiB) exists from 8.3 on.

A minor line that carries a field twice (``ro:`` or ``st:`` twice, ``ds:``
twice, two protocol letters, two I/O-flag fields, a second ``cs:``), or a
minor block with two ``oos:`` counts, is not resolved one way or the other:
that minor's state is unreadable (:attr:`ProcMinor.unreadable`).

DRBD 9 keeps ``/proc/drbd`` but prints only its version there: no minors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
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

#: Where the kernel puts it; the environment variable overrides it (for tests).
PROC_DRBD_PATH = "/proc/drbd"
PROC_DRBD_ENV = "LIVEMIG_PROC_DRBD"

_VERSION = re.compile(r"^version:\s*(\S+)")
_MINOR = re.compile(r"^\s*(\d+):\s+cs:(\S*)(.*)$")
_PAIR = re.compile(r"^(ro|st|ds):([^/\s]*)/([^/\s]*)$")
_OOS = re.compile(r"(?:^|\s)oos:(\S*)")
_DIGITS = re.compile(r"^[0-9]+$")
_PROTOCOLS = ("A", "B", "C")


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
    #: Why the line could not be read (a field given twice); every state field is then None.
    unreadable: Optional[str] = None

    @property
    def configured(self) -> bool:
        return self.connection != "Unconfigured"

    @property
    def suspended(self) -> Optional[bool]:
        """From the first I/O flag: ``r`` running, ``s`` suspended; else unknown."""
        if not self.io_flags:
            return None
        return {"r": False, "s": True}.get(self.io_flags[0])


@dataclass(frozen=True)
class ProcDrbd:
    version: Optional[str]
    minors: Tuple[ProcMinor, ...]

    @property
    def generation(self) -> Optional[int]:
        found = generation_of(self.version)
        if found is None and self.minors:
            return 8  # only 8.x lists minors here (8.0 builds may omit the version line)
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


def parse_proc_drbd(text: str) -> ProcDrbd:
    """Parse the text of ``/proc/drbd``.

    Fields a line does not carry (or carries in a shape not understood) stay
    ``None``. Raises :class:`DrbdStateError` for text that cannot be
    ``/proc/drbd`` at all (the same minor twice).
    """
    version: Optional[str] = None
    minors: Dict[int, ProcMinor] = {}
    seen_oos: Dict[int, List[str]] = {}
    current: Optional[int] = None
    for raw_line in text.replace("\0", "").splitlines():
        line = raw_line.rstrip()
        if not line:
            continue
        found = _VERSION.match(line)
        if found:
            version = found.group(1)
            current = None
            continue
        found = _MINOR.match(line)
        if found:
            number = int(found.group(1))
            if number in minors:
                raise DrbdStateError(f"/proc/drbd lists minor {number} twice")
            minors[number] = _parse_minor_line(number, found.group(2), found.group(3))
            current = number
            continue
        counts = _OOS.findall(line) if current is not None else []
        if counts and current is not None:
            seen_oos.setdefault(current, []).extend(counts)
    for number, counts in seen_oos.items():
        value = counts[0]
        if len(counts) == 1 and _DIGITS.match(value):
            minors[number] = replace(minors[number], out_of_sync_kib=int(value))
        else:  # not a count, or two counts for one minor: unknown, never one of them
            minors[number] = replace(minors[number], out_of_sync_kib=None, out_of_sync_unreadable=True)
    return ProcDrbd(version=version, minors=tuple(minors[n] for n in sorted(minors)))


def _parse_minor_line(number: int, cstate: str, rest: str) -> ProcMinor:
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


def proc_drbd_path(environ: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(PROC_DRBD_ENV) or PROC_DRBD_PATH


def read_proc_drbd(path: str) -> Optional[ProcDrbd]:
    """Read and parse ``path``; ``None`` if it does not exist (no DRBD module loaded).

    Raises :class:`DrbdStateError` if it exists but cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(4 * 1024 * 1024)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DrbdStateError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_proc_drbd(data.decode("utf-8", "replace"))
