"""ocf:livemig:VirtualDomain: its declared parameters and actions.

Parameter names, meanings and defaults are those of ocf:heartbeat:VirtualDomain,
so that switching an existing resource to livemig is a one-word change.
"""

from __future__ import annotations

from livemig import __version__
from livemig.ocf.metadata import Action, AgentMetadata, Parameter

SHUTDOWN_MODES = ("acpi", "agent", "initctl", "signal", "paravirt")

#: heartbeat parameters accepted but not implemented yet: a non-default value is
#: a configuration error (code 6), never silently ignored. Maps name -> default.
NOT_YET_SUPPORTED = {
    "migration_transport": "",
    "migration_user": "",
    "migration_downtime": "0",
    "migration_speed": "0",
    "migration_network_suffix": "",
    "migrateuri": "",
    "migrateport": "",
    "migrate_options": "",
    "remoteuri": "",
    "sync_config_on_stop": "false",
    "backingfile": "",
    "stateless": "false",
    "copyindirs": "",
}

_NOT_YET = " Not supported by this version of ocf:livemig:VirtualDomain: leave it unset."


def _p(name: str, short: str, long: str, **kw: object) -> Parameter:
    return Parameter(name=name, shortdesc=short, longdesc=long, **kw)  # type: ignore[arg-type]


PARAMETERS = [
    _p("config", "Virtual domain configuration file",
       "Absolute path to the libvirt configuration file (domain XML) for this virtual domain. "
       "The domain is started from it as a transient domain.",
       required=True, unique=True),
    _p("hypervisor", "Hypervisor URI",
       "Hypervisor URI to connect to, such as qemu:///system. When unset, libvirt's default URI "
       "applies (LIBVIRT_DEFAULT_URI or uri_default in libvirt.conf)."),
    _p("force_stop", "Always force shutdown on stop",
       "Always forcefully shut down (destroy) the domain on stop. By default a graceful shutdown "
       "is tried first and destroy is used only when it does not finish in time. Incompatible "
       "with snapshot.", type="boolean", default="false"),
    _p("shutdown_mode", "Graceful shutdown method",
       "How libvirt asks the guest to shut down: a comma-separated list of acpi, agent, initctl, "
       "signal, paravirt (libvirt tries them in its own order). Empty: the hypervisor's default.",
       default=""),
    _p("monitor_scripts", "Space-separated list of monitor scripts",
       "Absolute paths of scripts that check services inside the domain. Each runs on every "
       "recurring monitor while the domain runs; a non-zero exit is a monitor failure. start "
       "completes only once all of them pass, so size the start timeout accordingly.",
       default=""),
    _p("autoset_utilization_cpu", "Set the cpu utilization from the domain",
       "Put the domain's number of vCPUs into the resource's cpu utilization attribute when "
       "the monitor runs (written only when it changes).", type="boolean", default="true"),
    _p("autoset_utilization_host_memory", "Set the host_memory utilization from the domain",
       "Put the domain's maximum memory (MiB) into the resource's host_memory utilization "
       "attribute when the monitor runs (written only when it changes).",
       type="boolean", default="true"),
    _p("autoset_utilization_hv_memory", "Set the hv_memory utilization from the domain",
       "Put the domain's maximum memory (MiB) into the resource's hv_memory utilization "
       "attribute when the monitor runs (written only when it changes).",
       type="boolean", default="true"),
    _p("unset_utilization_cpu", "Remove the cpu utilization attribute",
       "Remove the resource's cpu utilization attribute when the monitor runs.",
       type="boolean", default="false"),
    _p("unset_utilization_host_memory", "Remove the host_memory utilization attribute",
       "Remove the resource's host_memory utilization attribute when the monitor runs.",
       type="boolean", default="false"),
    _p("unset_utilization_hv_memory", "Remove the hv_memory utilization attribute",
       "Remove the resource's hv_memory utilization attribute when the monitor runs.",
       type="boolean", default="false"),
    _p("save_config_on_stop", "Save the running domain's configuration on stop",
       "Before stopping, write the domain's current (inactive) definition back to the config "
       "file, so changes made while it ran are kept.", type="boolean", default="false"),
    _p("sync_config_on_stop", "Synchronize the config file with csync2 on stop",
       "Implies save_config_on_stop and then runs csync2 -x." + _NOT_YET,
       type="boolean", default="false"),
    _p("snapshot", "Directory for the domain's saved RAM state",
       "When set, stop saves the domain's memory state to <snapshot>/<domain name>.state "
       "instead of shutting it down, and start restores from that file when it exists "
       "(then removes it). Incompatible with force_stop.", default=""),
    _p("backingfile", "Backing file for copy-on-write mode", "Backing file for a stateless "
       "copy-on-write domain." + _NOT_YET, default=""),
    _p("stateless", "Recreate the disk from the backing file on each start",
       "Recreate the domain's qcow2 disk from backingfile on every start." + _NOT_YET,
       type="boolean", default="false"),
    _p("copyindirs", "Directories to copy into a stateless domain",
       "Directories to copy into the domain's disk before a stateless start." + _NOT_YET, default=""),
    _p("start_resources", "Start the storage pools and networks the domain uses",
       "Before starting the domain, start the libvirt networks (<interface type='network'>) and "
       "storage pools (<disk type='volume'>) named in its configuration, if they are inactive.",
       type="boolean", default="false"),
    _p("drbd_guard", "DRBD safety check before live migration",
       "auto: dual-primary when any disk of the domain is on DRBD, else off. dual-primary: before a "
       "live migration every DRBD resource behind the domain must be Primary on both nodes, "
       "Connected and UpToDate on both sides, with no fence constraint in the CIB; start requires "
       "the resources Primary on this node. auto-promote (DRBD 9): the target may be Secondary if "
       "allow-two-primaries and auto-promote are on. off: no check (not recommended with DRBD).",
       default="auto", choices=("auto", "dual-primary", "auto-promote", "off")),
    _p("drbd_resources", "DRBD resources behind the domain",
       "Space- or comma-separated DRBD resource names to check instead of detecting them from the "
       "domain's disks.", default=""),
    _p("drbd_peer_names", "Pacemaker node name to DRBD host name",
       "Where Pacemaker node names differ from DRBD's connection (host) names: "
       "node1=drbdhost1 node2=drbdhost2.", default=""),
    _p("drbd_wait", "Seconds to wait for transitional DRBD states",
       "Before refusing a migration, wait up to this many seconds (never past the operation timeout) "
       "while the only problems are transitional: the target still promoting, a resync finishing.",
       type="integer", default="0", minimum=0, maximum=3600),
    _p("migration_transport", "Remote hypervisor transport",
       "Transport used to reach the peer's hypervisor while migrating." + _NOT_YET, default=""),
    _p("migration_user", "Remote username for the remote URI",
       "User name in the peer's hypervisor URI while migrating." + _NOT_YET),
    _p("migration_downtime", "Live migration maximum downtime (ms)",
       "Maximum downtime tolerated at the end of a live migration, in milliseconds; 0 keeps "
       "libvirt's default." + _NOT_YET, type="integer", default="0"),
    _p("migration_speed", "Live migration bandwidth (MiB/s)",
       "Bandwidth limit for live migration in MiB/s; 0 keeps libvirt's default." + _NOT_YET,
       type="integer", default="0"),
    _p("migration_network_suffix", "Migration network host name suffix",
       "Suffix appended to the target node name to form the migration host name." + _NOT_YET,
       default=""),
    _p("migrateuri", "Custom migrate URI for the migration stream",
       "URI the migration data stream goes to (e.g. tcp://host)." + _NOT_YET),
    _p("migrateport", "Port for the migrate URI",
       "Port of the migration data stream." + _NOT_YET, type="integer"),
    _p("migrate_options", "Live migration options",
       "Extra virsh-style migrate options." + _NOT_YET),
    _p("remoteuri", "Custom URI of the peer's hypervisor",
       "URI of the target's hypervisor; %n stands for the target node name." + _NOT_YET),
]

ACTIONS = [
    Action("start", timeout=90),
    Action("stop", timeout=90),
    Action("monitor", timeout=30, interval=10, depth=0),
    Action("status", timeout=30, interval=10, depth=0),
    Action("validate-all", timeout=10),
    Action("meta-data", timeout=5),
    Action("usage", timeout=5),
]

METADATA = AgentMetadata(
    name="VirtualDomain",
    version=__version__,
    shortdesc="Manages a libvirt virtual domain (livemig)",
    longdesc=(
        "Resource agent for a libvirt virtual domain, a drop-in replacement for "
        "ocf:heartbeat:VirtualDomain with the same parameters. It talks to libvirt through its "
        "API (no virsh processes), bounds every action by its Pacemaker timeout, and reports "
        "precise exit reasons. Part of livemig, which guards live migrations of domains on "
        "DRBD dual-primary storage."
    ),
    parameters=PARAMETERS,
    actions=ACTIONS,
)
