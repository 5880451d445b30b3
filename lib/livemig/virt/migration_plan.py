"""Migration planning: where a migration goes and how, from the agent's parameters. Pure functions.

:func:`plan_migration` turns the agent's typed parameters (as
:meth:`livemig.ocf.metadata.Metadata.parse_params` gives them) into a
:class:`MigrationPlan`: the target libvirtd's URI and the migration stream's
(:mod:`livemig.virt.migration_uri`), the virDomainMigrateToURI3 flags and
parameters (:mod:`livemig.virt.migrate_options`), the downtime limit and the
convergence policy. It talks to nothing: migrate_to runs it before anything
moves, validate-all with a placeholder target, and ``livemig check`` to test
exactly the URI the agent migrates to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from livemig.virt import migrate_options as mo
from livemig.virt.errors import InvalidSetting
from livemig.virt.migration_uri import migration_stream_uri, remote_uri

#: the values of migration_convergence
CONVERGENCE_POLICIES = ("none", "auto-converge", "postcopy-after")
#: ... and the policy virsh's ``--timeout N`` (``--timeout-suspend``) means: suspend the guest
SUSPEND_AFTER = "suspend-after"


@dataclass
class MigrationPlan:
    domain: str
    target: str
    dest_uri: str
    flags: int
    params: Dict[str, Union[int, str]] = field(default_factory=dict)
    downtime_ms: int = 0
    convergence: str = "none"
    progress_interval: float = 5.0
    #: when the convergence policy acts, in seconds into the migration (None: at half its time)
    escalate_after: Optional[float] = None
    #: post-copy once the first pass over memory is done (virsh's --postcopy-after-precopy)
    postcopy_after_pass: bool = False

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return (f"to {self.dest_uri}" + (f" ({extra})" if extra else "")
                + f", flags {self.flags:#x}, convergence {self.convergence}"
                + (f" at {self.escalate_after:g}s" if self.escalate_after is not None else "")
                + (", post-copy after the first pass over memory" if self.postcopy_after_pass else ""))


def plan_migration(domain: str, target: str, values: Mapping[str, Any], local_uri: str,
                   persistent: bool) -> MigrationPlan:
    """The plan from the agent's parameters (InvalidSetting on anything unusable)."""
    options = mo.parse_migrate_options(values.get("migrate_options") or "")
    suffix = values.get("migration_network_suffix") or ""
    dest = remote_uri(local_uri, target, remoteuri=values.get("remoteuri") or "",
                      transport=values.get("migration_transport") or "",
                      user=values.get("migration_user") or "", suffix=suffix)
    stream = migration_stream_uri(target, migrateuri=values.get("migrateuri") or "",
                                  option_uri=options.migrate_uri or "", suffix=suffix,
                                  port=values.get("migrateport") or None)
    params: Dict[str, Union[int, str]] = dict(options.params)
    params.pop("migrate_uri", None)
    if stream:
        params["migrate_uri"] = stream
    speed = int(values.get("migration_speed") or 0)
    if speed and "bandwidth" not in params:
        params["bandwidth"] = speed
    flags = mo.LIVE | mo.PEER2PEER | options.flags
    if values.get("migration_tls"):
        flags |= mo.TLS
    convergence, escalate_after = _convergence(values.get("migration_convergence") or "none", options)
    if convergence == "auto-converge":
        flags |= mo.AUTO_CONVERGE
    elif convergence == "postcopy-after":
        if flags & mo.TUNNELLED:
            raise InvalidSetting("migration_convergence=postcopy-after cannot be used with --tunnelled")
        flags |= mo.POSTCOPY
    if persistent and not {"--persistent", "--undefinesource"} & set(options.given):
        # The domain ends up defined on the target exactly as it was on the source.
        flags |= mo.PERSIST_DEST | mo.UNDEFINE_SOURCE
    if flags & mo.TUNNELLED and "migrate_uri" in params:
        raise InvalidSetting("a migration URI (migrateuri, migrateport, migration_network_suffix) "
                                 "cannot be used with --tunnelled")
    return MigrationPlan(domain=domain, target=target, dest_uri=dest, flags=flags, params=params,
                         downtime_ms=int(values.get("migration_downtime") or 0), convergence=convergence,
                         progress_interval=float(values.get("migration_progress_interval") or 5),
                         escalate_after=escalate_after, postcopy_after_pass=options.postcopy_after_precopy)


def _convergence(policy: str, options: mo.MigrateOptions) -> Tuple[str, Optional[float]]:
    """(the convergence policy, when it acts): migration_convergence, or virsh's options for it."""
    if policy not in CONVERGENCE_POLICIES:
        choices = ", ".join(CONVERGENCE_POLICIES)
        raise InvalidSetting(f"migration_convergence={policy!r} is not one of {choices}")
    if options.timeout is None and not options.postcopy_after_precopy:
        return policy, None
    if policy != "none":
        given = " ".join(o for o in options.given if o in mo.POLICY_OPTIONS)
        raise InvalidSetting(f"migrate_options {given} and migration_convergence={policy}: keep one of them "
                             "(both say what to do when a migration does not converge)")
    if options.timeout is None:
        return "none", None  # --postcopy-after-precopy alone: post-copy after the first pass, else as none
    return (SUSPEND_AFTER if options.timeout_action == "suspend" else "postcopy-after"), float(options.timeout)
