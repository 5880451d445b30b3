"""Plain-text tables for people (``livemig drbd status``)."""

from __future__ import annotations

from typing import List, Optional, Sequence

from livemig.drbd.state import DrbdResourceState, DrbdStatus

STATUS_COLUMNS = ("RESOURCE", "VOL", "MINOR", "ROLE", "DISK", "PEER", "CONNECTION", "PEER-ROLE",
                  "REPLICATION", "PEER-DISK", "OUT-OF-SYNC")


def _show(value: object) -> str:
    """A value as printed: unknown is '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def _role(resource: DrbdResourceState) -> str:
    role = _show(resource.role)
    if resource.suspended:
        role += "(suspended)"
    elif resource.suspended is None:
        role += "(suspended?)"
    return role


def _disk(disk: Optional[str], quorum: Optional[bool]) -> str:
    return _show(disk) + ("(no quorum)" if quorum is False else "")


def status_rows(status: DrbdStatus) -> List[List[str]]:
    """One row per local volume and peer (a volume without peers gets one row)."""
    rows: List[List[str]] = []
    for res in status.resources:
        for vol in res.volumes or ():
            local = [_show(res.name), _show(vol.volume), _show(vol.minor), _role(res), _disk(vol.disk, vol.quorum)]
            peers = res.peers or ()
            if not peers:
                rows.append(local + ["-"] * 6)
            for peer in peers:
                matches = [pv for pv in peer.volumes
                           if (pv.volume is not None and pv.volume == vol.volume)
                           or (pv.minor is not None and pv.minor == vol.minor)]
                pv = matches[0] if len(matches) == 1 else None
                rows.append(local + [
                    _show(peer.name), _show(peer.connection), _show(peer.role),
                    _show(pv.replication if pv else None), _show(pv.disk if pv else None),
                    f"{pv.out_of_sync_kib} KiB" if pv and pv.out_of_sync_kib is not None else "-",
                ])
        if not res.volumes:
            rows.append([_show(res.name), "-", "-", _role(res), "-"] + ["-"] * 6)
    return rows


def status_table(status: DrbdStatus) -> str:
    heading = f"DRBD {_show(status.drbd_version)}\n"
    if not status.resources:
        return heading + "no DRBD resources are up on this node\n"
    return heading + format_table(STATUS_COLUMNS, status_rows(status))
