"""heartbeat's copy-on-write disk (``backingfile``, ``stateless``, ``copyindirs``) and ``sync_config_on_stop``.

What ocf:heartbeat:VirtualDomain does with them (resource-agents 4.12, heartbeat/VirtualDomain),
and so what this module does:

- The overlay is ``${config%%.*}.qcow2``: the ``config`` path cut at its first dot (anywhere in
  the path, a directory's name included) plus ``.qcow2``; ``/etc/libvirt/qemu/vm1.xml`` gives
  ``/etc/libvirt/qemu/vm1.qcow2``. The domain XML is not rewritten: its disk must already name
  that file (validate-all warns when no disk of the config does).
- start with ``backingfile`` set: when ``stateless`` is true, or the overlay is missing or empty,
  ``qemu-img create -f qcow2 -b <backingfile> <overlay>`` makes a fresh overlay (over the old
  one: qemu-img writes the same file); otherwise the existing overlay is used as it is. Only a
  start that creates the domain does this: not one that finds it running already, nor one that
  restores a ``snapshot`` state (heartbeat restores before it looks at ``backingfile``).
- ``copyindirs`` (a blank-separated list, which heartbeat's shell also expands as file name
  patterns) is copied into the guest's root with ``virt-copy-in`` right after an overlay was
  created, before the domain starts; it is ignored when no overlay is created.
- ``stateless`` without ``backingfile`` is a configuration error (code 6).
- ``sync_config_on_stop`` sets ``save_config_on_stop``; after the config file has been saved,
  ``csync2 -x <config>`` runs, and its failure is a warning only. csync2 missing is code 5 for
  validate-all (and start): heartbeat checks it on every action.

Where livemig differs, and why:

- ``qemu-img create`` gets ``-F <format of the backing file>`` (read with ``qemu-img info``):
  QEMU 6.1 and later refuse ``-b`` without it, and libvirt 6.0 and later refuse to start a
  domain on an overlay that does not record its backing file's format, so heartbeat's command
  fails on Debian 12 and RHEL 9.
- ``virt-copy-in`` opens the overlay itself (``--format=qcow2 -a <overlay>``), not the domain
  (``-d <name>``): livemig starts transient domains and defines none, and libguestfs' ``-d``
  needs a defined one. The guest's filesystems are found on the overlay.
- An overlay that did not exist (or was empty) before this start is removed again when its
  creation or the copy fails, so that the next start creates it again instead of running from
  an overlay without the copied files (heartbeat would reuse it with ``stateless=false``).
- ``csync2`` gets at most a quarter of what is left of the operation, at most 30 s: it runs
  before the domain is shut down, and a peer that does not answer must not cost the stop.
- Relative ``copyindirs`` entries are a configuration error (heartbeat's would be looked up in
  the directory Pacemaker runs agents in); a ``backingfile`` that is the overlay or the config
  file itself is one too (qemu-img would overwrite the image it reads).

Every command runs by argv through the injected :class:`~livemig.run.CommandRunner`, bounded by
the deadline; no parameter reaches a shell.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import TYPE_CHECKING, Any, List, Mapping, MutableMapping, Optional, Sequence

from livemig.bounded import CallTimeout, bounded_call
from livemig.files import FileUnreadable, stat_file
from livemig.ocf.errors import ConfigurationError, GenericError, NotInstalledError
from livemig.ocf.logs import get_logger
from livemig.run import CommandError, CommandNotFound, CommandOutputTooLarge, CommandResult, CommandTimeout

if TYPE_CHECKING:
    import logging

    from livemig.domain_xml import DomainDisk
    from livemig.ocf.deadline import Deadline
    from livemig.run import CommandRunner

_log = get_logger(__name__)

QEMU_IMG = "qemu-img"
VIRT_COPY_IN = "virt-copy-in"
CSYNC2 = "csync2"
#: the most one stat, glob or unlink may take (a hung NFS mount must not hold the start)
FS_BOUND = 5.0
#: csync2's share of what is left of the operation, and its cap in seconds
SYNC_SHARE = 0.25
SYNC_CAP = 30.0
_FORMAT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_GLOB = re.compile(r"[*?\[]")


# -- the parameters ---------------------------------------------------------------------------


def backing_file(values: Mapping[str, Any]) -> str:
    """``backingfile`` as set; blanks count as unset (heartbeat would fail on them)."""
    return str(values.get("backingfile") or "").strip()


def overlay_path(config: str) -> str:
    """heartbeat's ``${config%%.*}.qcow2``: ``config`` cut at its first dot, plus ``.qcow2``."""
    return config.split(".", 1)[0] + ".qcow2"


def copy_in_words(values: Mapping[str, Any]) -> List[str]:
    """``copyindirs`` split on blanks, as heartbeat's shell splits it (before pattern expansion)."""
    return str(values.get("copyindirs") or "").split()


def backing_path(values: Mapping[str, Any]) -> str:
    """Where the backing file is: a relative ``backingfile`` is relative to the overlay, as qemu-img reads it."""
    backing = backing_file(values)
    if os.path.isabs(backing):
        return backing
    return os.path.join(os.path.dirname(overlay_path(str(values["config"]))), backing)


def apply_implied(values: MutableMapping[str, Any]) -> None:
    """``sync_config_on_stop`` implies ``save_config_on_stop`` (heartbeat sets it at load time)."""
    if values.get("sync_config_on_stop"):
        values["save_config_on_stop"] = True


def check_parameters(values: Mapping[str, Any], log: Optional[logging.Logger] = None) -> None:
    """The combinations heartbeat refuses and the ones that would destroy an image: code 6. No I/O."""
    log = log or _log
    backing = backing_file(values)
    if values.get("stateless") and not backing:
        raise ConfigurationError("stateless=true needs backingfile (the image the domain's qcow2 overlay is "
                                 "created on): set backingfile, or set stateless=false")
    if not backing:
        if copy_in_words(values):
            log.warning("copyindirs is ignored without backingfile (files are copied only into a new overlay)")
        return
    config = str(values["config"])
    overlay = overlay_path(config)
    resolved = os.path.normpath(backing_path(values))
    if resolved == os.path.normpath(overlay):
        raise ConfigurationError(f"backingfile={backing!r} is the overlay itself ({overlay}, from config "
                                 f"{config}): qemu-img would overwrite it; use another backing image")
    if resolved == os.path.normpath(config) or os.path.normpath(overlay) == os.path.normpath(config):
        raise ConfigurationError(f"backingfile={backing!r} with config {config}: the overlay {overlay}, the "
                                 "backing file and the config file must be three different files")
    for word in copy_in_words(values):
        if not os.path.isabs(word):
            raise ConfigurationError(f"copyindirs entry {word!r} must be an absolute path")


# -- what this node must have -------------------------------------------------------------------


def _bound(deadline: Deadline) -> float:
    return deadline.bound(min(FS_BOUND, max(0.5, deadline.remaining() * 0.2)))


def _stat(path: str, deadline: Deadline) -> Optional[os.stat_result]:
    try:
        return stat_file(path, _bound(deadline))
    except FileUnreadable as exc:
        raise GenericError(str(exc)) from None


def _realpath(path: str, deadline: Deadline) -> str:
    try:
        return str(bounded_call(f"realpath {path}", _bound(deadline), os.path.realpath, path))
    except CallTimeout as exc:
        raise GenericError(f"{path}: {exc}") from None


def expand_copy_in(values: Mapping[str, Any], deadline: Deadline) -> List[str]:
    """The ``copyindirs`` paths, file name patterns expanded as sh does (sorted; no match: the word itself)."""
    import glob

    def expand(words: Sequence[str]) -> List[str]:
        out: List[str] = []
        for word in words:
            matches = sorted(glob.glob(word)) if _GLOB.search(word) else []
            out.extend(matches or [word])
        return out

    words = copy_in_words(values)
    if not any(_GLOB.search(w) for w in words):
        return words
    try:
        return bounded_call("expand copyindirs", _bound(deadline), expand, words)
    except CallTimeout as exc:
        raise GenericError(f"copyindirs: {exc}") from None


def check_node(values: Mapping[str, Any], runner: CommandRunner, deadline: Deadline,
               disks: Optional[Sequence[DomainDisk]] = None, log: Optional[logging.Logger] = None) -> None:
    """validate-all and start: the tools and files these parameters need here (code 5), or nothing.

    ``disks`` (the config's): a warning when none of them is the overlay, which the domain then
    does not run from.
    """
    log = log or _log
    if values.get("sync_config_on_stop") and runner.which(CSYNC2) is None:
        raise NotInstalledError("sync_config_on_stop=true needs csync2, which is not installed on this node: "
                                "install and configure csync2, or set sync_config_on_stop=false")
    backing = backing_file(values)
    if not backing:
        return
    if runner.which(QEMU_IMG) is None:
        raise NotInstalledError("backingfile is set but qemu-img is not installed on this node: install "
                                "qemu-utils (Debian) or qemu-img (RHEL)")
    if copy_in_words(values) and runner.which(VIRT_COPY_IN) is None:
        raise NotInstalledError("copyindirs is set but virt-copy-in is not installed on this node: install "
                                "libguestfs-tools (Debian) or guestfs-tools (RHEL)")
    st = _stat(backing_path(values), deadline)
    if st is None:
        raise NotInstalledError(f"backingfile {backing_path(values)} does not exist on this node")
    if stat.S_ISDIR(st.st_mode):
        raise NotInstalledError(f"backingfile {backing_path(values)} is a directory, not a disk image")
    overlay = overlay_path(str(values["config"]))
    directory = os.path.dirname(overlay)
    dir_st = _stat(directory, deadline)
    if dir_st is None or not stat.S_ISDIR(dir_st.st_mode):
        raise NotInstalledError(f"directory {directory} of the overlay {overlay} does not exist on this node")
    over_st = _stat(overlay, deadline)
    if over_st is not None and stat.S_ISDIR(over_st.st_mode):
        raise NotInstalledError(f"the overlay {overlay} is a directory: remove it or rename the config file")
    if _realpath(overlay, deadline) == _realpath(backing_path(values), deadline):
        raise ConfigurationError(f"backingfile {backing} is the overlay {overlay} (through a link): qemu-img "
                                 "would overwrite it; use another backing image")
    for path in expand_copy_in(values, deadline):
        if _stat(path, deadline) is None:
            raise NotInstalledError(f"copyindirs: {path} does not exist on this node")
    if disks is not None and not any(disk.path and os.path.normpath(disk.path) == overlay for disk in disks):
        log.warning("backingfile is set but no disk of %s is the overlay %s that start creates: the domain "
                    "will not run from it (heartbeat names it so: config cut at its first dot, + .qcow2)",
                    values["config"], overlay)


# -- start ----------------------------------------------------------------------------------


def _run(runner: CommandRunner, argv: List[str], deadline: Deadline, what: str,
         timeout: Optional[float] = None) -> CommandResult:
    """``argv`` within the deadline; code 5 when the tool is missing, 1 when it hangs or floods."""
    if deadline.expired():
        raise GenericError(f"{what}: no time left before the operation deadline")
    try:
        return runner.run(argv, timeout=deadline.bound(deadline.remaining() if timeout is None else timeout))
    except CommandNotFound as exc:
        raise NotInstalledError(f"{what}: {exc}") from None
    except CommandTimeout as exc:
        raise GenericError(f"{what}: {exc} (the operation deadline): raise the operation's timeout") from None
    except (CommandOutputTooLarge, CommandError) as exc:
        raise GenericError(f"{what}: {exc}") from None


def _tail(result: CommandResult) -> str:
    lines = [line for line in (result.stderr.strip() or result.stdout.strip()).splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""


def backing_format(values: Mapping[str, Any], runner: CommandRunner, deadline: Deadline) -> str:
    """The backing file's format (``raw``, ``qcow2``, ...) as ``qemu-img info`` reads it."""
    path = backing_path(values)
    result = _run(runner, [QEMU_IMG, "info", "--output=json", path], deadline, f"qemu-img info {path}")
    if not result.ok:
        raise GenericError(f"cannot read the backing file {path} with qemu-img info (exit {result.returncode})"
                           f"{_tail(result)}")
    try:
        info = json.loads(result.stdout)
        fmt = info.get("format") if isinstance(info, dict) else None
    except ValueError:
        fmt = None
    if not isinstance(fmt, str) or not _FORMAT.match(fmt):
        raise GenericError(f"qemu-img info {path} did not say the backing file's format")
    return fmt


def _reusable(overlay: str, deadline: Deadline) -> bool:
    """heartbeat's ``[ -s overlay ]``: it exists and is not empty."""
    st = _stat(overlay, deadline)
    return st is not None and st.st_size > 0


def _discard(overlay: str, deadline: Deadline, log: logging.Logger) -> None:
    try:
        bounded_call(f"unlink {overlay}", _bound(deadline), os.unlink, overlay)
    except FileNotFoundError:
        return
    except (OSError, CallTimeout) as exc:
        log.warning("could not remove the incomplete overlay %s (%s): remove it before the next start", overlay, exc)
        return
    log.info("removed the incomplete overlay %s: the next start creates it again", overlay)


def prepare_disk(values: Mapping[str, Any], domain_name: str, runner: CommandRunner, deadline: Deadline,
                 log: Optional[logging.Logger] = None) -> Optional[str]:
    """Before the domain is created: its overlay made from ``backingfile`` and ``copyindirs`` copied in.

    Returns the overlay's path when one was created, None when there is nothing to do
    (``backingfile`` unset) or the existing overlay is kept (``stateless=false``).
    """
    log = log or _log
    backing = backing_file(values)
    if not backing:
        return None
    overlay = overlay_path(str(values["config"]))
    if deadline.expired():
        raise GenericError(f"no time left before the start deadline to prepare the overlay {overlay}")
    stateless = bool(values.get("stateless"))
    reusable = _reusable(overlay, deadline)
    if reusable and not stateless:
        log.info("using the existing overlay %s of %s (stateless=false)", overlay, domain_name)
        return None
    fmt = backing_format(values, runner, deadline)
    argv = [QEMU_IMG, "create", "-f", "qcow2", "-F", fmt, "-b", backing, overlay]
    log.info("%s the overlay %s of %s on %s (%s)", "recreating" if reusable else "creating", overlay, domain_name,
             backing, fmt)
    try:
        result = _run(runner, argv, deadline, f"qemu-img create {overlay}")
        if not result.ok:
            raise GenericError(f"qemu-img could not create the overlay {overlay} of {domain_name} on {backing} "
                               f"(exit {result.returncode}){_tail(result)}")
        paths = expand_copy_in(values, deadline)
        if paths:
            _copy_in(runner, overlay, paths, domain_name, deadline, log)
    except BaseException:
        if not reusable:
            _discard(overlay, deadline, log)
        raise
    return overlay


def _copy_in(runner: CommandRunner, overlay: str, paths: List[str], domain_name: str, deadline: Deadline,
             log: logging.Logger) -> None:
    argv = [VIRT_COPY_IN, "--format=qcow2", "-a", overlay, *paths, "/"]
    log.info("copying %s into %s (overlay %s)", " ".join(paths), domain_name, overlay)
    result = _run(runner, argv, deadline, f"virt-copy-in into {overlay}")
    if not result.ok:
        raise GenericError(f"virt-copy-in could not copy copyindirs into {domain_name}'s overlay {overlay} "
                           f"(exit {result.returncode}){_tail(result)}")


# -- stop -----------------------------------------------------------------------------------


def sync_config(values: Mapping[str, Any], runner: CommandRunner, deadline: Deadline,
                log: Optional[logging.Logger] = None) -> bool:
    """After the config file was saved: ``csync2 -x <config>``. True when it succeeded.

    Never raises: heartbeat only warns when the sync fails, and a stop must not fail on it.
    """
    log = log or _log
    if not values.get("sync_config_on_stop"):
        return False
    config = str(values["config"])
    argv = [CSYNC2, "-x", config]
    seconds = deadline.bound(min(SYNC_CAP, deadline.remaining() * SYNC_SHARE))
    if seconds <= 0:
        log.warning("no time left to synchronize %s with csync2: the peers keep their copy", config)
        return False
    try:
        result = runner.run(argv, timeout=seconds)
    except CommandError as exc:
        log.warning("could not synchronize %s with csync2 (%s): the peers keep their copy", config, exc)
        return False
    if not result.ok:
        log.warning("csync2 -x %s failed (exit %d)%s: the peers keep their copy", config, result.returncode,
                    _tail(result))
        return False
    log.info("synchronized %s to the peers with csync2 -x", config)
    return True
