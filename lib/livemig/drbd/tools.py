"""Reading DRBD state through the DRBD tools, every call bounded by a deadline.

:class:`DrbdReader` is the one place that runs ``drbdsetup`` and ``drbdadm`` (the
changes of :mod:`livemig.drbd.window` too, through :meth:`DrbdReader.change`).
It goes through an injected :class:`~livemig.run.CommandRunner` (argv only,
never a shell) and turns every failure (tool missing, non-zero exit, timeout,
output not understood) into :class:`~livemig.drbd.state.DrbdStateError`.

The generation is told from ``/proc/drbd``: 8.x lists its minors there and is
read from that file; 9 prints only its version there and is read with
``drbdsetup status --json --verbose --statistics`` (its text form where
drbdsetup has no ``--json``).

Two readings:

- :meth:`DrbdReader.read_status`: everything that is up (``livemig drbd
  status``); 8.x minors are named where udev's by-res links or ``drbdadm
  sh-resource`` can name them.
- :meth:`DrbdReader.read_resources`: the resources a VM uses, which is what
  every decision reads. On 8.x each resource's minors come from DRBD's
  configuration (:meth:`DrbdReader.minors8`, ``drbdadm sh-minor RES``), so a
  minor missing from ``/proc/drbd`` or ``Unconfigured`` there is reported as
  absent, never skipped; the peer's host name (which ``/proc/drbd`` does not
  show) comes from ``drbdadm -v dump-xml RES`` (:meth:`DrbdReader.peer8`).
"""

from __future__ import annotations

import os
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from livemig.drbd.byres import BY_RES_DIR, ByResLink, scan_by_res, scan_by_res_links
from livemig.drbd.config import DrbdResourceConfig, parse_dump_xml
from livemig.drbd.proc import ProcDrbd, minor_as_resource, proc_drbd_path, read_proc_drbd
from livemig.drbd.state import DrbdResourceState, DrbdStateError, DrbdStatus, VolumeState
from livemig.drbd.status9 import ShowResource, parse_show_json, parse_status_json
from livemig.drbd.status_text import parse_status_text
from livemig.ocf.deadline import Deadline
from livemig.ocf.logs import get_logger
from livemig.run import CommandError, CommandResult, CommandRunner

log = get_logger(__name__)

#: No single DRBD tool call may take longer than this (and never past the deadline).
DEFAULT_CALL_TIMEOUT = 10.0
#: drbdadm pretends to be the node this names (as drbdadm itself does).
DRBD_NODE_ENV = "__DRBD_NODE__"

_MINOR_LINE = re.compile(r"^[0-9]{1,7}$")


def this_node_name(environ: Optional[Mapping[str, str]] = None) -> str:
    """The host name drbdadm picks its ``on`` section by: ``$__DRBD_NODE__``, else ``uname -n``."""
    env = os.environ if environ is None else environ
    return env.get(DRBD_NODE_ENV) or os.uname().nodename


def short_name(name: str) -> str:
    return name.split(".", 1)[0]


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
        node_name: Optional[str] = None,
    ) -> None:
        self._runner = runner
        self._deadline = deadline
        self._proc_path = proc_path or proc_drbd_path()
        self._by_res_dir = by_res_dir
        self._call_timeout = call_timeout
        self._node_name = node_name

    @property
    def node_name(self) -> str:
        """This node's name as drbdadm sees it (which ``on`` section is this node's)."""
        return self._node_name or this_node_name()

    # -- running the tools ------------------------------------------------
    def run_tool(self, argv: Sequence[str]) -> str:
        """stdout of ``argv``; :class:`DrbdStateError` unless it exits 0 in time."""
        result = self._run(argv)
        if not result.ok:
            raise DrbdStateError(result.describe())
        return result.stdout

    # -- state ---------------------------------------------------------------
    def read_proc(self) -> Optional[ProcDrbd]:
        """``/proc/drbd`` (or the file ``LIVEMIG_PROC_DRBD`` names), read within the call timeout and the deadline."""
        if self._deadline.expired():
            raise DrbdStateError(f"{self._proc_path}: not read, the operation deadline has passed")
        return read_proc_drbd(self._proc_path, self._deadline.bound(self._call_timeout))

    def _loaded_proc(self) -> ProcDrbd:
        proc = self.read_proc()
        if proc is None:
            raise DrbdStateError(f"DRBD is not loaded: {self._proc_path} does not exist")
        if proc.generation not in (8, 9):
            raise DrbdStateError(f"cannot tell the DRBD version from {self._proc_path}")
        return proc

    def read_status(self) -> DrbdStatus:
        """The state of every resource that is up on this node (for display)."""
        proc = self._loaded_proc()
        generation = proc.generation
        if generation == 8:
            minors = [m.minor for m in proc.configured_minors()]
            by_res = scan_by_res(self._by_res_dir)
            names = self.names_for_minors(minors, by_res=by_res)
            volumes = {minor: vol for minor, (_res, vol) in by_res.items() if vol is not None}
            return proc.to_status(names, volumes)
        return DrbdStatus(drbd_version=proc.version, generation=9, resources=self.status9())

    def read_resources(self, names: Sequence[str], *, peers: bool = False) -> DrbdStatus:
        """The state of resources ``names`` on this node, every configured volume accounted for.

        DRBD 9: ``drbdsetup status`` (it names resources and volumes itself).
        8.x: for each resource, one entry per minor DRBD's configuration gives
        this node (:meth:`minors8`): the minor's line of ``/proc/drbd``, or an
        entry whose ``absent`` says that the minor is not there or
        ``Unconfigured``; if the minors cannot be told, or udev's by-res links
        contradict them (:func:`_volumes_from_links`), one entry whose
        ``unreadable`` says why. With ``peers`` the peer is named from the
        configuration (:meth:`peer8`); if it cannot be, the resource is
        unreadable. Raises :class:`DrbdStateError` only when nothing can be
        read (DRBD not loaded, ``drbdsetup status`` failing).
        """
        proc = self._loaded_proc()
        if proc.generation == 9:
            return DrbdStatus(drbd_version=proc.version, generation=9, resources=self.status9())
        links = scan_by_res_links(self._by_res_dir)
        entries: List[DrbdResourceState] = []
        for name in dict.fromkeys(names):
            entries.extend(self._resource8(proc, name, links, peers))
        return DrbdStatus(drbd_version=proc.version, generation=8, resources=tuple(entries))

    def _resource8(self, proc: ProcDrbd, name: str, links: Sequence[ByResLink],
                   peers: bool) -> List[DrbdResourceState]:
        try:
            minors = self.minors8(name)
        except DrbdStateError as exc:
            return [_unreadable(name, f"cannot tell which minors DRBD's configuration gives {name} on this node: "
                                      f"{exc}")]
        try:
            volumes = _volumes_from_links(name, minors, links, proc)
        except DrbdStateError as exc:
            return [_unreadable(name, str(exc))]
        peer_name: Optional[str] = None
        if peers:
            try:
                peer_name = self.peer8(name)
            except DrbdStateError as exc:
                return [_unreadable(name, f"cannot tell from DRBD's configuration which node is the peer of "
                                          f"{name} (/proc/drbd does not name it): {exc}")]
        entries = []
        for number in minors:
            minor = proc.minor(number)
            volume = volumes.get(number)
            if minor is None or not minor.configured:
                seen = "not in /proc/drbd" if minor is None else "Unconfigured in /proc/drbd"
                entries.append(DrbdResourceState(
                    name=name, role=None, suspended=None,
                    volumes=(VolumeState(volume=volume, minor=number, disk=None),),
                    absent=f"minor {number} is {seen}"))
            else:
                entries.append(minor_as_resource(minor, name, volume, peer_name))
        return entries

    def status9(self) -> Tuple[DrbdResourceState, ...]:
        """DRBD 9: ``drbdsetup status all --json --verbose --statistics``.

        A drbdsetup that refuses ``--json`` (it says "unrecognized option" about it) is
        read in its text form, ``drbdsetup status all --verbose --statistics``
        (:mod:`livemig.drbd.status_text`), which gives the same state."""
        argv = ["drbdsetup", "status", "all", "--json", "--verbose", "--statistics"]
        result = self._run(argv)
        if result.ok:
            return parse_status_json(result.stdout)
        if not _refuses_json(result.stderr):
            raise DrbdStateError(result.describe())
        log.debug("drbdsetup has no --json: reading its text status")
        return parse_status_text(self.run_tool(["drbdsetup", "status", "all", "--verbose", "--statistics"]))

    def change(self, argv: Sequence[str]) -> CommandResult:
        """Run a DRBD command that changes state; its result, exit status unchecked (the caller reads DRBD's code).

        :class:`DrbdStateError` if it cannot be run in time.
        """
        return self._run(argv)

    def _run(self, argv: Sequence[str]) -> CommandResult:
        """``argv``'s result, exit status unchecked; :class:`DrbdStateError` if it cannot be run in time."""
        command = " ".join(argv)
        if self._deadline.expired():
            raise DrbdStateError(f"{command}: not run, the operation deadline has passed")
        try:
            return self._runner.run(list(argv), timeout=self._deadline.bound(self._call_timeout))
        except CommandError as exc:
            raise DrbdStateError(f"{command}: {exc}") from exc

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
        A minor that cannot be named is left out (a failure is logged): the
        caller must take a missing minor as unknown (the disk mapping refuses
        it). Decisions never start from here: :meth:`read_resources` starts
        from each resource's configured minors.
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
        unnamed = [m for m in minors if m not in names]
        if unnamed:
            names.update({m: name for m, name in self.config_minor_names().items() if m in unnamed})
        return names

    def config_minor_names(self) -> Dict[int, str]:
        """minor -> resource of this node's ``on`` sections in ``drbdadm -v dump-xml all`` (8.x); {} if unreadable.

        A minor two resources claim for this node is left out (it cannot be named)."""
        try:
            configs = self.dump_xml("all")
        except DrbdStateError as exc:
            log.debug("no resource names from DRBD's configuration: %s", exc)
            return {}
        me = self.node_name
        found: Dict[int, str] = {}
        claimed: Dict[int, int] = {}
        for config in configs:
            hosts = [h.name for h in config.hosts if me in h.name.split()]
            if not hosts:
                hosts = [h.name for h in config.hosts if short_name(me) in {short_name(n) for n in h.name.split()}]
            for host in hosts:
                for minor in config.minors(host):
                    found[minor] = config.name
                    claimed[minor] = claimed.get(minor, 0) + 1
        return {minor: name for minor, name in found.items() if claimed[minor] == 1}

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
        return list(parse_dump_xml(self.run_tool(["drbdadm", "-v", "dump-xml", _resource_arg(resource)])))

    def minors8(self, resource: str) -> List[int]:
        """The minors of ``resource`` on this node, from DRBD's configuration (8.x).

        ``drbdadm sh-minor RES`` prints one minor per volume of this node's
        ``on`` section (8.3, 8.4, and drbd-utils 9 on an 8.4 kernel); it fails
        for a resource not defined for this host. Anything but a non-empty
        list of distinct minors is :class:`DrbdStateError`.
        """
        argv = ["drbdadm", "sh-minor", _resource_arg(resource)]
        out = self.run_tool(argv)
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if not lines or not all(_MINOR_LINE.match(line) for line in lines) or len(set(lines)) != len(lines):
            raise DrbdStateError(f"{' '.join(argv)}: expected one minor per line, got {out[:120]!r}")
        return [int(line) for line in lines]

    def peer8(self, resource: str) -> str:
        """The peer's host name of 8.x resource ``resource``, from ``drbdadm -v dump-xml``.

        This node's ``on`` section is the one naming this node (exactly, else
        by short name, as :attr:`node_name`); the peer is the one other
        section. Anything else (no section or several for this node, a
        floating section, no peer or several) is :class:`DrbdStateError`.
        """
        configs = [c for c in self.dump_xml(resource) if c.name == resource]
        if len(configs) != 1:
            raise DrbdStateError(f"drbdadm -v dump-xml {resource} describes {len(configs)} resources named "
                                 f"{resource}; needs exactly one")
        hosts = [tuple(h.name.split()) for h in configs[0].hosts]
        if any(not names for names in hosts):
            raise DrbdStateError(f"the configuration of {resource} has a host section without a name "
                                 "(floating): cannot tell which node the peer is")
        me = self.node_name
        mine = [i for i, names in enumerate(hosts) if me in names]
        if not mine:
            mine = [i for i, names in enumerate(hosts) if short_name(me) in {short_name(n) for n in names}]
        listed = ", ".join(" ".join(names) for names in hosts) or "none"
        if len(mine) != 1:
            raise DrbdStateError(f"the configuration of {resource} has {len(mine)} host sections for this node "
                                 f"({me}); hosts: {listed}")
        others = [names for i, names in enumerate(hosts) if i != mine[0]]
        if len(others) != 1:
            raise DrbdStateError(f"the configuration of {resource} names {len(others)} peer hosts besides this "
                                 f"node ({me}); hosts: {listed}; needs exactly one")
        return others[0][0]


_NO_JSON = re.compile(r"(unrecognized|unknown|invalid) option.{0,8}--json", re.I)


def _refuses_json(stderr: str) -> bool:
    """drbdsetup's getopt complaint about ``--json`` (``status: unrecognized option '--json'``)."""
    return bool(_NO_JSON.search(stderr))


def _resource_arg(resource: str) -> str:
    if not resource or resource.startswith("-") or any(ch.isspace() for ch in resource):
        # From a /dev/drbd/by-res/<name> path in the domain XML: never an option.
        raise DrbdStateError(f"{resource!r} is not a DRBD resource name")
    return resource


def _volumes_from_links(name: str, minors: Sequence[int], links: Sequence[ByResLink],
                        proc: ProcDrbd) -> Dict[int, int]:
    """minor -> volume of resource ``name`` from udev's by-res links, checked against ``drbdadm sh-minor``.

    ``sh-minor`` is the configuration's word. A link that names another
    resource for one of ``minors``, two links giving one minor two volumes, or
    a link naming ``name`` for a minor in ``/proc/drbd`` that ``sh-minor`` does
    not list, contradict it: :class:`DrbdStateError`, naming both.
    """
    listed = ", ".join(str(m) for m in minors)
    volumes: Dict[int, int] = {}
    seen: Dict[int, ByResLink] = {}
    for link in links:
        if link.minor in minors:
            if link.resource != name:
                raise DrbdStateError(f"udev's link {link.path} names minor {link.minor} resource {link.resource}, "
                                     f"but drbdadm sh-minor {name} lists minor {link.minor} for {name}")
            before = seen.setdefault(link.minor, link)
            if before.volume != link.volume:
                raise DrbdStateError(f"udev's links {before.path} and {link.path} both name minor {link.minor} of "
                                     f"{name}: which volume it is cannot be told")
            if link.volume is not None:
                volumes[link.minor] = link.volume
        elif link.resource == name:
            shown = proc.minor(link.minor)
            if shown is not None and shown.configured:
                raise DrbdStateError(f"udev's link {link.path} names minor {link.minor} {name}, but drbdadm "
                                     f"sh-minor {name} lists {listed} for {name}")
    return volumes


def _unreadable(name: str, why: str) -> DrbdResourceState:
    return DrbdResourceState(name=name, role=None, suspended=None, unreadable=why)
