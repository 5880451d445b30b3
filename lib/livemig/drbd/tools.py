"""Reading DRBD state through the DRBD tools, every call bounded by a deadline.

:class:`DrbdReader` is the one place that runs ``drbdsetup`` and ``drbdadm``.
It goes through an injected :class:`~livemig.run.CommandRunner` (argv only,
never a shell) and turns every failure (tool missing, non-zero exit, timeout,
output not understood) into :class:`~livemig.drbd.state.DrbdStateError`.

The generation is told from ``/proc/drbd``: 8.x lists its minors there and is
read from that file; 9 prints only its version there and is read with
``drbdsetup status --json --verbose --statistics``.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from livemig.drbd.config import DrbdResourceConfig, parse_dump_xml
from livemig.drbd.mapping import BY_RES_DIR, scan_by_res
from livemig.drbd.proc import ProcDrbd, proc_drbd_path, read_proc_drbd
from livemig.drbd.state import DrbdResourceState, DrbdStateError, DrbdStatus
from livemig.drbd.status9 import ShowResource, parse_show_json, parse_status_json
from livemig.ocf.deadline import Deadline
from livemig.ocf.logs import get_logger
from livemig.run import CommandError, CommandRunner

log = get_logger(__name__)

#: No single DRBD tool call may take longer than this (and never past the deadline).
DEFAULT_CALL_TIMEOUT = 10.0


class DrbdReader:
    """Reads DRBD state and configuration on this node."""

    def __init__(
        self,
        runner: CommandRunner,
        deadline: Deadline,
        *,
        proc_path: Optional[str] = None,
        by_res_dir: str = BY_RES_DIR,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        self._runner = runner
        self._deadline = deadline
        self._proc_path = proc_path or proc_drbd_path()
        self._by_res_dir = by_res_dir
        self._call_timeout = call_timeout

    # -- running the tools ------------------------------------------------
    def run_tool(self, argv: Sequence[str]) -> str:
        """stdout of ``argv``; :class:`DrbdStateError` unless it exits 0 in time."""
        command = " ".join(argv)
        if self._deadline.expired():
            raise DrbdStateError(f"{command}: not run, the operation deadline has passed")
        try:
            result = self._runner.run(list(argv), timeout=self._deadline.bound(self._call_timeout))
        except CommandError as exc:
            raise DrbdStateError(f"{command}: {exc}") from exc
        if not result.ok:
            raise DrbdStateError(result.describe())
        return result.stdout

    # -- state ---------------------------------------------------------------
    def read_proc(self) -> Optional[ProcDrbd]:
        return read_proc_drbd(self._proc_path)

    def read_status(self) -> DrbdStatus:
        """The state of every resource that is up on this node."""
        proc = self.read_proc()
        if proc is None:
            raise DrbdStateError(f"DRBD is not loaded: {self._proc_path} does not exist")
        generation = proc.generation
        if generation == 8:
            minors = [m.minor for m in proc.configured_minors()]
            by_res = scan_by_res(self._by_res_dir)
            names = self.names_for_minors(minors, by_res=by_res)
            volumes = {minor: vol for minor, (_res, vol) in by_res.items() if vol is not None}
            return proc.to_status(names, volumes)
        if generation == 9:
            return DrbdStatus(drbd_version=proc.version, generation=9, resources=self.status9())
        raise DrbdStateError(f"cannot tell the DRBD version from {self._proc_path}")

    def status9(self) -> Tuple[DrbdResourceState, ...]:
        """DRBD 9: ``drbdsetup status all --json --verbose --statistics``."""
        out = self.run_tool(["drbdsetup", "status", "all", "--json", "--verbose", "--statistics"])
        return parse_status_json(out)

    def show9(self) -> Tuple[ShowResource, ...]:
        """DRBD 9 runtime settings: ``drbdsetup show all --json --show-defaults``."""
        return parse_show_json(self.run_tool(["drbdsetup", "show", "all", "--json", "--show-defaults"]))

    # -- names -----------------------------------------------------------------
    def names_for_minors(
        self,
        minors: Iterable[int],
        by_res: Optional[Dict[int, Tuple[str, Optional[int]]]] = None,
    ) -> Dict[int, str]:
        """minor -> resource for the minors that can be named (8.x).

        From udev's by-res links first, else ``drbdadm sh-resource minor-N``.
        A minor that cannot be named is left out (a failure is logged).
        """
        links = scan_by_res(self._by_res_dir) if by_res is None else by_res
        names: Dict[int, str] = {}
        for minor in minors:
            if minor in links:
                names[minor] = links[minor][0]
                continue
            try:
                out = self.run_tool(["drbdadm", "sh-resource", f"minor-{minor}"])
            except DrbdStateError as exc:
                log.debug("no resource name for minor %d: %s", minor, exc)
                continue
            words = out.split()
            if len(words) == 1:
                names[minor] = words[0]
        return names

    def names_for_minors9(self, minors: Iterable[int]) -> Dict[int, Tuple[str, Optional[int]]]:
        """DRBD 9: minor -> (resource, volume) from ``drbdsetup status``."""
        wanted = set(minors)
        found: Dict[int, Tuple[str, Optional[int]]] = {}
        for resource in self.status9():
            for volume in resource.volumes:
                if volume.minor in wanted and resource.name is not None:
                    found[volume.minor] = (resource.name, volume.volume)
        return found

    # -- configuration --------------------------------------------------------
    def dump_xml(self, resource: str) -> List[DrbdResourceConfig]:
        """``drbdadm -v dump-xml <resource>`` (``-v`` folds ``common`` in)."""
        if not resource or resource.startswith("-"):
            # From a /dev/drbd/by-res/<name> path in the domain XML: never an option.
            raise DrbdStateError(f"{resource!r} is not a DRBD resource name")
        return list(parse_dump_xml(self.run_tool(["drbdadm", "-v", "dump-xml", resource])))
