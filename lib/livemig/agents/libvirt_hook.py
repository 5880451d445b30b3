"""livemig's libvirt QEMU hook (``/etc/libvirt/hooks/qemu.d/livemig``): the target's half of the window.

In ``drbd_two_primaries=migration`` the source's agent opens the window (it allows two
primaries on the connection to the target, :mod:`livemig.drbd.window`) but cannot make
the target Primary: only the target can, and it must be Primary before its QEMU opens
the device. Under libvirt's ``-blockdev`` the incoming QEMU opens it read-only first,
and DRBD 9 refuses a read-only open on a Secondary while a peer is Primary
(``EMEDIUMTYPE``, ``drbd_open``/``ro_open_cond``), whatever allow-two-primaries says.
libvirt runs this hook on the target, before that QEMU starts, with
``DOMAIN migrate begin -`` and the domain's XML on stdin, and after any QEMU of the
domain has ended with ``DOMAIN release end -``:

- ``migrate begin``: for each DRBD 9 resource behind the domain's disks where this
  node is Secondary and a Connected peer is Primary: if that connection allows two
  primaries at runtime (the source's window: DRBD copied its setting here), this node
  holds quorum and every volume is UpToDate or Diskless (DRBD refuses a Primary without
  access to UpToDate data itself), ``drbdsetup primary`` and a marker
  ``/run/livemig/hook/<resource>.json`` naming the domain. Otherwise the migration could
  not open the device: exit 1 with the reason, which libvirt reports as the migration's
  error; nothing has started. Resources already Primary here (``always`` mode), or with
  no Primary peer, are left alone. Disks not on DRBD, or DRBD not loaded: nothing to do.
- ``release end``: each resource whose marker names the domain is made Secondary again
  (the explicit Primary of ``migrate begin`` is not auto-demoted by DRBD), marker removed.
  Never fails.

Every other operation returns at once, before anything is imported. Bounded: 15 s a run.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, TYPE_CHECKING, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    from livemig.drbd.state import DrbdResourceState
    from livemig.drbd.status9 import ShowResource
    from livemig.ocf.deadline import Deadline
    from livemig.run import CommandRunner

#: the hook's own deadline (libvirt waits for it while it prepares the incoming domain)
HOOK_SECONDS = 15.0
MARKER_DIR = "/run/livemig/hook"
MAX_XML = 8 * 1024 * 1024


def main(argv: Optional[Sequence[str]] = None, stdin: Optional[IO[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or (args[1], args[2]) not in (("migrate", "begin"), ("release", "end")):
        return 0
    domain, operation = args[0], args[1]
    xml_text = (stdin or sys.stdin).read(MAX_XML)
    from livemig.ocf.deadline import Deadline
    from livemig.ocf.logs import get_logger
    from livemig.run import CommandRunner

    log = get_logger("livemig.hook")
    hook = Hook(CommandRunner(), Deadline(HOOK_SECONDS), os.environ.get("LIVEMIG_HOOK_DIR") or MARKER_DIR)
    try:
        if operation == "migrate":
            hook.incoming(domain, xml_text)
        else:
            hook.released(domain)
    except HookRefusal as exc:
        print(f"livemig: {exc}", file=sys.stderr)
        log.error("libvirt hook, %s of %s: %s", operation, domain, exc)
        return 1
    return 0


class HookRefusal(Exception):
    """The incoming migration cannot open its DRBD devices here: the reason."""


class Hook:
    def __init__(self, runner: CommandRunner, deadline: Deadline, marker_dir: str) -> None:
        from livemig.drbd.tools import DrbdReader
        from livemig.drbd.window import TwoPrimaries
        from livemig.ocf.logs import get_logger

        self.runner = runner
        self.deadline = deadline
        self.marker_dir = marker_dir
        self.reader = DrbdReader(runner, deadline)
        self.roles = TwoPrimaries(self.reader, deadline, get_logger("livemig.hook"))

    def incoming(self, domain: str, xml_text: str) -> None:
        from livemig.drbd.mapping import drbd_loaded, resources_from_domain_xml
        from livemig.drbd.state import DrbdStateError
        from livemig.drbd.window import WindowError

        if not drbd_loaded():
            return
        try:
            resources = resources_from_domain_xml(xml_text, self.runner, self.deadline, untraceable_ok=True)
            if not resources:
                return
            status = self.reader.read_resources(resources)
            if status.generation != 9:
                return
            shown = {r.name: r for r in self.reader.show9() if r.name is not None}
        except DrbdStateError as exc:
            raise HookRefusal(f"cannot read the DRBD state of {domain}'s disks: {exc}") from None
        wanted = _to_promote(resources, status.resources, shown)
        promoted: List[str] = []
        try:
            for name in wanted:
                self._write_marker(name, domain)
                self.roles.promote(name)
                promoted.append(name)
        except (WindowError, OSError) as exc:
            for name in promoted:
                self._demote(name)
            raise HookRefusal(str(exc)) from None

    def released(self, domain: str) -> None:
        try:
            names = sorted(os.listdir(self.marker_dir))
        except OSError:
            return
        for entry in names:
            if not entry.endswith(".json"):
                continue
            path = os.path.join(self.marker_dir, entry)
            try:
                with open(path, encoding="utf-8") as fh:
                    owner = json.loads(fh.read(4096)).get("domain")
            except (OSError, ValueError, AttributeError):
                continue
            if owner == domain:
                self._demote(entry[: -len(".json")])

    def _demote(self, name: str) -> None:
        from livemig.drbd.window import WindowError

        try:
            self.roles.demote(name)
        except WindowError as exc:
            print(f"livemig: {exc}", file=sys.stderr)
            return
        try:
            os.unlink(os.path.join(self.marker_dir, name + ".json"))
        except OSError:
            pass

    def _write_marker(self, name: str, domain: str) -> None:
        from livemig.files import replace_file

        os.makedirs(self.marker_dir, mode=0o700, exist_ok=True)
        replace_file(os.path.join(self.marker_dir, name + ".json"), json.dumps({"domain": domain}) + "\n")


def _to_promote(resources: Sequence[str], entries: Sequence[DrbdResourceState],
                shown: Dict[str, ShowResource]) -> List[str]:
    """The resources to make Primary here for the incoming domain; HookRefusal where its QEMU could not open them."""
    wanted = []
    by_name = {e.name: e for e in entries}
    for name in resources:
        entry = by_name.get(name)
        if entry is None:
            raise HookRefusal(f"{name}: not up on this node")
        if entry.role == "Primary":
            continue
        primaries = [p for p in entry.peers if p.role == "Primary" and p.connection == "Connected"]
        if not primaries:
            continue
        show = shown.get(name)
        for peer in primaries:
            conn = show.connection_to(peer.node_id) if show is not None else None
            if conn is None or conn.allow_two_primaries is not True:
                raise HookRefusal(f"{name}: {peer.name or 'a peer'} is Primary and the connection does not allow two "
                                  "primaries: this node's QEMU could not open the device (is the source's "
                                  "drbd_two_primaries=migration window open?)")
        for vol in entry.volumes:
            if vol.quorum is False:
                raise HookRefusal(f"{name}: no quorum on this node")
            if vol.disk not in ("UpToDate", "Diskless"):
                raise HookRefusal(f"{name}: volume {vol.volume} is {vol.disk} on this node, not UpToDate")
        wanted.append(name)
    return wanted
