"""The one-line answers of 8.x ``drbdadm role|cstate|dstate <res>``.

``role`` and ``dstate`` print ``local/peer`` (``Primary/Secondary``,
``UpToDate/UpToDate``), ``cstate`` a single state; a resource with several
volumes gets one line per volume. For diagnosis and tests: the guard reads
the same facts from ``/proc/drbd``.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

Pair = Tuple[Optional[str], Optional[str]]


def parse_pairs(text: str) -> List[Pair]:
    """``local/peer`` lines (role, dstate), one per volume; a half that is missing is ``None``."""
    pairs: List[Pair] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        local, sep, peer = line.partition("/")
        pairs.append((local or None, (peer or None) if sep else None))
    return pairs


def parse_cstates(text: str) -> List[str]:
    """``cstate`` lines, one per volume."""
    return [line.strip() for line in text.splitlines() if line.strip()]
