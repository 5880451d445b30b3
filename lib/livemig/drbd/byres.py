"""udev's ``/dev/drbd/by-res`` links: which resource (and volume) each DRBD minor's device is named for.

``/dev/drbd/by-res/<resource>/<volume>`` (8.4, 9) or ``/dev/drbd/by-res/<resource>``
(8.3) points to ``/dev/drbdN``. The links are udev's, not DRBD's: what they
say is for display and naming, and decisions check it against DRBD's
configuration (:meth:`livemig.drbd.tools.DrbdReader.read_resources`).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

BY_RES_DIR = "/dev/drbd/by-res"

#: a by-res path: the resource, and the volume (None: the 8.3 form)
BY_RES_PATH = re.compile(r"^/dev/drbd/by-res/([^/]+)(?:/(\d+))?/?$")
#: a DRBD device node: its minor
DRBD_DEVICE = re.compile(r"^/dev/drbd([0-9]+)$")
_VOLUME_NAME = re.compile(r"^[0-9]+$")


class ByResLink(NamedTuple):
    """One udev link ``/dev/drbd/by-res/<resource>[/<volume>]`` and the minor it points to."""

    minor: int
    resource: str
    volume: Optional[int]  # None: the 8.3 form by-res/<resource>

    @property
    def path(self) -> str:
        return f"{BY_RES_DIR}/{self.resource}" + ("" if self.volume is None else f"/{self.volume}")


def scan_by_res_links(by_res_dir: str = BY_RES_DIR) -> List[ByResLink]:
    """Every udev ``/dev/drbd/by-res`` link to a DRBD minor, in name order ([] if absent).

    Links that contradict each other (two resources or volumes for one minor)
    are all kept: the caller decides what a contradiction means.
    """
    found: List[ByResLink] = []
    try:
        resources = sorted(os.listdir(by_res_dir))
    except OSError:
        return found
    for resource in resources:
        entry = os.path.join(by_res_dir, resource)
        if os.path.islink(entry):  # 8.3: by-res/<res> -> ../../drbdN
            minor = _minor_of_link(entry)
            if minor is not None:
                found.append(ByResLink(minor, resource, None))
            continue
        try:
            volumes = sorted(os.listdir(entry))
        except OSError:
            continue
        for volume in volumes:
            minor = _minor_of_link(os.path.join(entry, volume))
            if minor is not None and _VOLUME_NAME.match(volume):
                found.append(ByResLink(minor, resource, int(volume)))
    return found


def scan_by_res(by_res_dir: str = BY_RES_DIR) -> Dict[int, Tuple[str, Optional[int]]]:
    """minor -> (resource, volume) from udev's ``/dev/drbd/by-res`` links ({} if absent).

    For display and naming only (where links disagree, the last in name order
    wins); decisions check the links against DRBD's configuration
    (:meth:`livemig.drbd.tools.DrbdReader.read_resources`).
    """
    return {link.minor: (link.resource, link.volume) for link in scan_by_res_links(by_res_dir)}


def _minor_of_link(path: str) -> Optional[int]:
    named = DRBD_DEVICE.match(os.path.realpath(path))
    return int(named.group(1)) if named else None
