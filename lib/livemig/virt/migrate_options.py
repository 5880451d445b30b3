"""``migrate_options``: virsh-style migrate options mapped to libvirt flags and parameters.

Every option either maps to a flag or a typed parameter of
virDomainMigrateToURI3, to the convergence policy (virsh's own client-side
policies: ``--timeout N`` with ``--timeout-suspend`` or ``--timeout-postcopy``,
and ``--postcopy-after-precopy``), or is refused with code 6. None is
ignored: an option an operator wrote expecting an effect must either have it
or fail.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union

from livemig.virt.errors import InvalidSetting

# virDomainMigrateFlags (stable libvirt ABI).
LIVE = 1
PEER2PEER = 2
TUNNELLED = 4
PERSIST_DEST = 8
UNDEFINE_SOURCE = 16
PAUSED = 32
UNSAFE = 512
COMPRESSED = 2048
ABORT_ON_ERROR = 4096
AUTO_CONVERGE = 8192
RDMA_PIN_ALL = 16384
POSTCOPY = 32768
TLS = 65536
PARALLEL = 131072
ZEROCOPY = 1048576

FLAG_OPTIONS: Dict[str, int] = {
    "--live": LIVE,
    "--p2p": PEER2PEER,
    "--tunnelled": TUNNELLED,
    "--persistent": PERSIST_DEST,
    "--undefinesource": UNDEFINE_SOURCE,
    "--suspend": PAUSED,
    "--unsafe": UNSAFE,
    "--compressed": COMPRESSED,
    "--abort-on-error": ABORT_ON_ERROR,
    "--auto-converge": AUTO_CONVERGE,
    "--rdma-pin-all": RDMA_PIN_ALL,
    "--postcopy": POSTCOPY,
    "--tls": TLS,
    "--parallel": PARALLEL,
    "--zerocopy": ZEROCOPY,
}

Converter = Callable[[str, str], Union[int, str]]


def _uint(option: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 12:  # int() refuses "\u00b2"
        raise InvalidSetting(f"migrate_options {option}={value!r}: needs a non-negative integer")
    return int(value)


def _text(option: str, value: str) -> str:
    if not value or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidSetting(f"migrate_options {option}={value!r}: needs a value without white space")
    return value


#: options with a value -> (typed migration parameter, converter)
VALUE_OPTIONS: Dict[str, tuple[str, Converter]] = {
    "--bandwidth": ("bandwidth", _uint),
    "--postcopy-bandwidth": ("bandwidth.postcopy", _uint),
    "--migrateuri": ("migrate_uri", _text),
    "--listen-address": ("listen_address", _text),
    "--graphicsuri": ("graphics_uri", _text),
    "--parallel-connections": ("parallel.connections", _uint),
    "--comp-methods": ("compression", _text),
    "--comp-mt-level": ("compression.mt.level", _uint),
    "--comp-mt-threads": ("compression.mt.threads", _uint),
    "--comp-mt-dthreads": ("compression.mt.dthreads", _uint),
    "--comp-xbzrle-cache": ("compression.xbzrle.cache", _uint),
    "--auto-converge-initial": ("auto_converge.initial", _uint),
    "--auto-converge-increment": ("auto_converge.increment", _uint),
    "--tls-destination": ("tls.destination", _text),
}

#: options that cannot work for a cluster-managed live migration, with why
REFUSED_OPTIONS: Dict[str, str] = {
    "--direct": "livemig always migrates peer-to-peer (--p2p); direct migration is not supported",
    "--offline": "an offline migration does not move a running VM",
    "--copy-storage-all": "copying storage makes no sense for disks replicated by DRBD",
    "--copy-storage-inc": "copying storage makes no sense for disks replicated by DRBD",
    "--copy-storage-synchronous-writes": "copying storage makes no sense for disks replicated by DRBD",
    "--migrate-disks": "copying storage makes no sense for disks replicated by DRBD",
    "--disks-port": "copying storage makes no sense for disks replicated by DRBD",
    "--disks-uri": "copying storage makes no sense for disks replicated by DRBD",
    "--dname": "renaming the domain on the target would hide it from the agent",
    "--xml": "a different destination XML is not supported; change the config file instead",
    "--persistent-xml": "a different persistent XML is not supported; change the config file instead",
    "--change-protection": "livemig holds the migration job itself",
    "--postcopy-resume": "resuming a failed post-copy migration needs an operator, not the agent",
    "--desturi": "the target comes from Pacemaker (and remoteuri)",
    "--domain": "the domain comes from the config file",
    "--async": "livemig always follows the migration job itself",
}

#: accepted and meaningless here (livemig logs progress itself)
NO_OP_OPTIONS = {"--verbose"}

#: virsh's client-side convergence policies (what virsh does while it follows the job), which the
#: migration loop carries out as virsh does: at ``--timeout N`` seconds suspend the guest (the
#: default, or ``--timeout-suspend``) or switch to post-copy (``--timeout-postcopy``);
#: ``--postcopy-after-precopy``: switch to post-copy when libvirt's migration-iteration event says
#: the first pass over memory is done (:mod:`livemig.virt.postcopy`)
POLICY_FLAGS = {"--timeout-suspend", "--timeout-postcopy", "--postcopy-after-precopy"}
POLICY_OPTIONS = {"--timeout", *POLICY_FLAGS}


@dataclass
class MigrateOptions:
    flags: int = 0
    params: Dict[str, Union[int, str]] = field(default_factory=dict)
    given: List[str] = field(default_factory=list)
    #: ``--timeout N``: seconds into the migration when the policy acts (None: not given)
    timeout: Optional[int] = None
    #: what happens at ``--timeout``: "suspend" (virsh's default) or "postcopy"
    timeout_action: str = "suspend"
    #: ``--postcopy-after-precopy``
    postcopy_after_precopy: bool = False

    @property
    def migrate_uri(self) -> Optional[str]:
        value = self.params.get("migrate_uri")
        return str(value) if value is not None else None


def parse_migrate_options(text: str) -> MigrateOptions:
    """Parse ``migrate_options``; InvalidSetting for anything unknown or refused."""
    try:
        words = shlex.split(text or "", comments=False, posix=True)
    except ValueError as exc:
        raise InvalidSetting(f"migrate_options: {exc}") from None
    result = MigrateOptions()
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, inline = word.partition("=")
        if name in VALUE_OPTIONS or name == "--timeout":
            if eq:
                value = inline
            elif i < len(words):
                value = words[i]
                i += 1
            else:
                raise InvalidSetting(f"migrate_options {name} needs a value")
            if name == "--timeout":
                result.timeout = _uint(name, value)
                if result.timeout < 1:
                    raise InvalidSetting("migrate_options --timeout must be at least 1 (seconds)")
            else:
                key, convert = VALUE_OPTIONS[name]
                result.params[key] = convert(name, value)
        elif eq and name in (*FLAG_OPTIONS, *NO_OP_OPTIONS, *POLICY_FLAGS):
            raise InvalidSetting(f"migrate_options {name} takes no value ({word!r})")
        elif name in FLAG_OPTIONS:
            result.flags |= FLAG_OPTIONS[name]
        elif name == "--postcopy-after-precopy":
            result.postcopy_after_precopy = True
        elif name in POLICY_FLAGS:
            result.timeout_action = name[len("--timeout-"):]
        elif name in NO_OP_OPTIONS:
            pass
        elif name in REFUSED_OPTIONS:
            raise InvalidSetting(f"migrate_options {name} is not supported: {REFUSED_OPTIONS[name]}")
        else:
            raise InvalidSetting(f"migrate_options: unknown option {word!r}")
        result.given.append(name)
    if result.flags & POSTCOPY and result.flags & TUNNELLED:
        raise InvalidSetting("migrate_options: --postcopy cannot be combined with --tunnelled")
    if result.flags & PARALLEL and result.flags & TUNNELLED:
        raise InvalidSetting("migrate_options: --parallel cannot be combined with --tunnelled")
    if "parallel.connections" in result.params and not result.flags & PARALLEL:
        raise InvalidSetting("migrate_options: --parallel-connections needs --parallel")
    _check_policy(result)
    return result


def _check_policy(result: MigrateOptions) -> None:
    """virsh's rules for its convergence options, with virsh's meaning."""
    given = set(result.given)
    if {"--timeout-suspend", "--timeout-postcopy"} <= given:
        raise InvalidSetting("migrate_options: --timeout-suspend and --timeout-postcopy are mutually exclusive")
    for option in ("--timeout-suspend", "--timeout-postcopy"):
        if option in given and result.timeout is None:
            raise InvalidSetting(f"migrate_options: {option} needs --timeout N")
    for option in ("--timeout-postcopy", "--postcopy-after-precopy"):  # virsh: VSH_REQUIRE_OPTION(..., "postcopy")
        if option in given and not result.flags & POSTCOPY:
            raise InvalidSetting(f"migrate_options: {option} needs --postcopy (post-copy must be enabled "
                                 "when the migration starts)")
