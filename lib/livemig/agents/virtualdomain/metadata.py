"""ocf:livemig:VirtualDomain: its declared parameters and actions.

Parameter names, meanings and defaults are those of ocf:heartbeat:VirtualDomain,
so that switching an existing resource to livemig is a one-word change.
"""

from __future__ import annotations

from livemig import __version__
from livemig.ocf.metadata import Action, AgentMetadata, Parameter

SHUTDOWN_MODES = ("acpi", "agent", "initctl", "signal", "paravirt")

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
    _p("sync_config_on_stop", "Save the config file on stop and synchronize it with csync2",
       "Implies save_config_on_stop. After the configuration has been saved to the config file, run "
       "csync2 -x <config> to push it to the other nodes (csync2 must be set up for that file). A "
       "failed sync is logged as a warning and never fails the stop; csync2 missing on the node is "
       "code 5 for validate-all and start.", type="boolean", default="false"),
    _p("snapshot", "Directory for the domain's saved RAM state",
       "When set, stop saves the domain's memory state to <snapshot>/<domain name>.state "
       "instead of shutting it down, and start restores from that file when it exists "
       "(then removes it). Incompatible with force_stop.", default=""),
    _p("backingfile", "Backing file for copy-on-write mode",
       "Absolute path of the image the domain's disk is a copy-on-write overlay of; it is only read. "
       "The overlay is the config path cut at its first dot plus .qcow2 (config /etc/libvirt/qemu/vm1.xml: "
       "/etc/libvirt/qemu/vm1.qcow2), and a disk of the domain XML must name it. start creates it with "
       "qemu-img create -f qcow2 -F <backing format> -b <backingfile> when it is missing or empty, or on "
       "every start with stateless=true.", default=""),
    _p("stateless", "Recreate the qcow2 overlay from backingfile on each start",
       "true: every start creates a new overlay (<config without extension>.qcow2) on backingfile, so the "
       "domain starts from the backing image each time. false: an existing overlay is used as it is, and "
       "only the first start creates it. Needs backingfile (code 6 without it).",
       type="boolean", default="false"),
    _p("copyindirs", "Paths to copy into the guest when its overlay is created",
       "Blank-separated absolute paths (file name patterns are expanded) copied into the guest's / with "
       "virt-copy-in (libguestfs) each time start creates the overlay, before the domain starts. Used "
       "only with backingfile.", default=""),
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
    _p("drbd_two_primaries", "When both nodes may be DRBD Primary",
       "always: both nodes are Primary all the time (a promotable DRBD clone with promoted-max=2 and "
       "allow-two-primaries in DRBD's configuration), checked by the guard. migration (DRBD 9 only): "
       "DRBD's configuration keeps allow-two-primaries no and Pacemaker manages no DRBD clone; this "
       "agent makes the node that runs the VM Primary, and migrate_to allows two primaries on the one "
       "connection to the target for the length of the migration only (the target is promoted by "
       "livemig's libvirt hook, /etc/libvirt/hooks/qemu.d/livemig, which must be installed on every "
       "node). Not with post-copy.",
       default="always", choices=("always", "migration")),
    _p("drbd_allow_diskless_target", "Allow migrating to a diskless DRBD node",
       "DRBD 9: let the guard allow a target whose DRBD volumes are diskless (it reads and writes "
       "through its UpToDate peers), as long as this node is UpToDate and the target Connected.",
       type="boolean", default="false"),
    _p("drbd_allow_two_node_quorum", "Allow migrating with DRBD quorum on two nodes only",
       "DRBD 9 with quorum configured: the guard refuses a migration that would leave the source "
       "without quorum if the link to the target broke (a two-node resource has no tiebreaker). "
       "true accepts that risk.",
       type="boolean", default="false"),
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
       "Transport used to reach the target's libvirtd while migrating (tcp, ssh, tls, ...): added to "
       "the scheme of the hypervisor URI, e.g. qemu:///system becomes qemu+ssh://<target>/system. "
       "Unset: libvirt's default transport.", default=""),
    _p("migration_user", "Remote user name for the target's URI",
       "User name put in the target's libvirt URI (user@target) while migrating."),
    _p("migration_downtime", "Live migration maximum downtime (ms)",
       "Maximum downtime tolerated at the switch-over, in milliseconds, applied as soon as the "
       "migration job exists; 0 keeps libvirt's default.", type="integer", default="0", minimum=0),
    _p("migration_speed", "Live migration bandwidth (MiB/s)",
       "Bandwidth limit of the migration in MiB/s (libvirt's bandwidth parameter); 0 keeps libvirt's "
       "default (unlimited).", type="integer", default="0", minimum=0),
    _p("migration_network_suffix", "Migration network host name suffix",
       "Suffix inserted after the first label of the target node's name to reach it over a dedicated "
       "migration network: node2.example.com with -mig becomes node2-mig.example.com, used for the "
       "target's URI and for the migration stream (tcp://node2-mig.example.com[:migrateport]).",
       default=""),
    _p("migrateuri", "Custom URI for the migration stream",
       "URI the migration data goes to, e.g. tcp://%n-mig:49152; %n stands for the target node name. "
       "Unset: derived from migration_network_suffix and migrateport, else libvirt's default."),
    _p("migrateport", "Port of the migration stream",
       "Port for the migration stream URI; unset: libvirt picks one from its range.",
       type="integer", minimum=1, maximum=65535),
    _p("migrate_options", "Live migration options",
       "virsh migrate options, mapped to libvirt flags and parameters: --p2p, --tunnelled, "
       "--compressed, --auto-converge, --postcopy, --tls, --persistent, --undefinesource, --unsafe, "
       "--abort-on-error, --parallel, --parallel-connections N, --bandwidth MiB/s, --migrateuri URI, "
       "--listen-address ADDR, --comp-methods, --auto-converge-initial/-increment, "
       "--postcopy-bandwidth, --tls-destination, --verbose; and virsh's convergence policies, "
       "carried out as virsh does: --timeout N suspends the guest N seconds into the migration "
       "(--timeout-suspend) or switches to post-copy (--timeout-postcopy, with --postcopy); "
       "--postcopy-after-precopy (with --postcopy) switches to post-copy when libvirt's iteration "
       "event says the first pass over memory is done (a migration completing as that pass ends "
       "completes in pre-copy). Options that cannot work under Pacemaker (--offline, "
       "--copy-storage-*, --dname, ...) and unknown ones are a configuration error, never ignored."),
    _p("remoteuri", "Custom URI of the target's libvirtd",
       "libvirt URI of the target's hypervisor; %n stands for the target node name. When set, "
       "migration_transport, migration_user and migration_network_suffix do not change it."),
    _p("migration_tls", "Encrypt the migration stream with TLS",
       "Migrate over libvirt's native TLS (VIR_MIGRATE_TLS); both nodes need the migration TLS "
       "certificates configured in qemu.conf.", type="boolean", default="false"),
    _p("migration_convergence", "What to do when a migration does not converge",
       "none: let it run until the deadline, then abort (the VM stays on the source). auto-converge: "
       "QEMU throttles the guest's vCPUs when memory is dirtied faster than it is sent, and at half "
       "of the migration's time the downtime limit is doubled (at least 600 ms). postcopy-after: at "
       "half of the migration's time switch to post-copy (the VM then runs on the target and pulls "
       "its remaining memory; if the target or the network is lost during post-copy the VM is "
       "lost, so only choose it knowingly). migrate_options' --timeout and --postcopy-after-precopy "
       "say the same with virsh's words: set one or the other.", default="none",
       choices=("none", "auto-converge", "postcopy-after")),
    _p("migration_progress_interval", "Seconds between migration progress lines",
       "How often migrate_to logs the migration's progress (processed and remaining MiB, dirty "
       "rate, iteration, expected downtime).", type="integer", default="5", minimum=1, maximum=600),
]

ACTIONS = [
    Action("start", timeout=90),
    Action("stop", timeout=90),
    Action("monitor", timeout=30, interval=10, depth=0),
    Action("status", timeout=30, interval=10, depth=0),
    Action("migrate_to", timeout=120),
    Action("migrate_from", timeout=60),
    Action("validate-all", timeout=10),
    Action("meta-data", timeout=5),
]  # no usage: the agent answers it, but advertised pcs writes <op name="usage"> into the CIB

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
