"""``livemig check`` and ``livemig config``: argument parsing and printing only.

The checks are :mod:`livemig.check`; this module reads the files named on the
command line, calls :func:`livemig.check.readiness.check_vm` or the command
builders, and turns the result into text, JSON and an exit status.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TextIO

from livemig.check.host import HostPaths
from livemig.check.model import MAINTENANCE_REMINDER
from livemig.cli.inputs import (
    MAX_INPUT_BYTES,
    InputError,
    bounded_stat,
    check_regular_file,
    peer_names_option,
    read_text,
)
from livemig.domain_xml import domain_name
from livemig.ocf.deadline import Deadline
from livemig.run import CommandRunner

if TYPE_CHECKING:
    from livemig.ocf.metadata import Action

# The checks and the command builders (lxml) are imported by the command that runs them:
# the argument parser, and so `livemig --help`, needs no lxml.

EXIT_USAGE = 2
DEFAULT_TIMEOUT = 60.0

CHECK_EPILOG = f"""\
layers checked:
  domain        every disk on DRBD (by-res path, DRBD minor, LVM or file system on DRBD);
                the agent's drbd_resources, when set, names all of them
  drbd-config   allow-two-primaries (8.3 flag, 8.4 yes, DRBD 9 per connection), protocol C,
                fencing resource-and-stonith, crm-fence-peer / crm-unfence-peer handlers,
                become-primary-on both only with two primaries, after-sb policies
  drbd-runtime  the migration guard: both Primary, Connected, UpToDate (skip: --skip-runtime)
  pacemaker     promotable clone, promoted-max=2 as Pacemaker reads it (over master-max;
                deprecated <master>, master-max, Master/Slave roles: a warning), notify=true,
                a migration-capable agent with allow-migrate=true, colocation with the
                Promoted role, order promote then start, fencing on with a device, no
                drbd-fence-by-handler constraint, no maintenance (cluster, node, resources)
  libvirt       the target's libvirtd reachable at the URI migrate_to uses (one bounded connection;
                skip: --skip-libvirt);
                the config file on the target is not checked (a warning says how)
  host          this node's systemd: Pacemaker ordered to stop before libvirt's daemons,
                libvirt-guests and the guests' scopes at node shutdown; libvirt-guests
                enabled with ON_BOOT=start or an ON_SHUTDOWN action (skip: --skip-host)

with drbd_two_primaries=migration on the VM (DRBD 9, two primaries only while a migration runs):
  drbd-config   DRBD 9, allow-two-primaries no (yes fails), become-primary-on unset, auto-promote,
                quorum (majority with 3+ nodes; 2 nodes warn), on-no-quorum io-error, protocol C (warn)
  pacemaker     no promotable clone of the DRBD resource (two owners of the role), the VM kept off
                every diskless node by a -INFINITY location
  drbd-runtime  DRBD 9 loaded, no runtime allow-two-primaries while no migration runs
  host          /etc/libvirt/hooks/qemu.d/livemig installed, executable, older than libvirtd/virtqemud

exit status:
  0  nothing fails (warnings may remain)
  1  something fails: each FAIL line shows its fix
  2  could not check (an input unreadable: '??' lines), or bad usage

{MAINTENANCE_REMINDER}
"""

CONFIG_EPILOG = """\
The commands create, for each DRBD resource, an ocf:linbit:drbd primitive drbd_<RES> in a
promotable clone ms_drbd_<RES> (promoted-max=2, notify=true), the VM as ocf:livemig:VirtualDomain
with allow-migrate=true and the operation timeouts from the agent's meta-data, a colocation
with the Promoted role and an order promote-then-start. Fencing stays enabled: a fencing
device for every node must exist (it is site-specific and not printed).

With --two-primaries migration (DRBD 9; the agent's drbd_two_primaries=migration): no DRBD
primitive or clone (the agent promotes DRBD where the VM runs and allows two primaries only
during a live migration), the VM with drbd_two_primaries=migration, a -INFINITY location per
--diskless node, and, as comments, the DRBD resource file's settings (net { protocol C;
allow-two-primaries no; } options { auto-promote yes; quorum majority; on-no-quorum io-error; }),
drbd@RES.target to bring DRBD up at boot, and the libvirt hook every node needs.
"""

Seconds = Callable[[str], float]


def add_parsers(commands: Any, seconds: Seconds) -> None:
    """Add ``check`` and ``config`` to the ``livemig`` subcommands."""
    check = commands.add_parser(
        "check", help="can this VM be live-migrated safely? what fixes it if not",
        description="Check every layer a live migration of VM on DRBD dual-primary depends on, "
                    "and print the fix for each problem. VM is the Pacemaker resource id or the domain name.",
        epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("vm", metavar="VM", help="the Pacemaker resource id, or the libvirt domain name")
    check.add_argument("--cib", metavar="FILE", help="read the CIB from FILE instead of the live cluster")
    check.add_argument("--drbd-xml", metavar="FILE",
                       help="DRBD configuration as `drbdadm -v dump-xml` prints it, instead of running it")
    check.add_argument("--domain-xml", metavar="FILE",
                       help="the domain XML, instead of the file the resource's config parameter names")
    check.add_argument("--peer", metavar="NODE", help="the migration target (default: the other node of two)")
    check.add_argument("--peer-name", dest="peer_names", action="append", default=[], metavar="NODE=HOST",
                       help="the DRBD host name of a Pacemaker node, where they differ (repeatable)")
    check.add_argument("--peer-uri", metavar="URI",
                       help="libvirt URI of the target, %%n standing for its node name (default: the URI "
                            "migrate_to uses, planned from the resource's parameters as the agent plans it)")
    check.add_argument("--skip-runtime", action="store_true", help="do not read DRBD runtime state")
    check.add_argument("--skip-libvirt", action="store_true", help="do not connect to the target's libvirtd")
    check.add_argument("--skip-host", action="store_true",
                       help="do not read this node's systemd units and libvirt-guests settings")
    check.add_argument("--pcs", action="store_true", help="write fixes as pcs commands instead of crmsh")
    check.add_argument("--problems", action="store_true", help="list only the lines that are not ok")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help=f"give up after SECONDS in all (default: {DEFAULT_TIMEOUT:.0f})")
    check.set_defaults(handler=cmd_check)

    config = commands.add_parser(
        "config", help="print the crmsh (or pcs) commands that set a VM up for live migration",
        description="Print the crmsh (or, with --pcs, pcs) commands that create the DRBD promotable clone, "
                    "the VM primitive and the constraints live migration needs.",
        epilog=CONFIG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_argument("vm", metavar="VM", help="the Pacemaker resource id to create")
    config.add_argument("--domain-xml", required=True, metavar="FILE", help="the domain's XML file")
    config.add_argument("--drbd-resource", dest="drbd_resources", action="append", required=True,
                        metavar="RES", help="a DRBD resource behind the VM's disks (repeatable)")
    config.add_argument("--config-path", metavar="PATH",
                        help="the config parameter: where the XML lives on every node (default: FILE's "
                             "absolute path)")
    config.add_argument("--hypervisor", default="qemu:///system", metavar="URI",
                        help="the hypervisor parameter (default: qemu:///system)")
    config.add_argument("--two-primaries", choices=("always", "migration"), default="always",
                        help="always (default): both nodes Primary, in a promotable clone; migration (DRBD 9): "
                             "two primaries only while a live migration runs, no clone")
    config.add_argument("--diskless", action="append", default=[], metavar="NODE",
                        help="a diskless DRBD node (quorum tiebreaker) the VM must never run on "
                             "(repeatable; with --two-primaries migration)")
    config.add_argument("--pcs", action="store_true", help="print pcs commands instead of crmsh")
    config.set_defaults(handler=cmd_config)


def _read(path: str, option: str, err: TextIO, deadline: Optional[Deadline] = None) -> Optional[str]:
    """The text of the file ``path`` (bounded, FIFO-safe: :mod:`livemig.cli.inputs`); None once reported."""
    try:
        return read_text(path, option, max_bytes=MAX_INPUT_BYTES, deadline=deadline)
    except InputError as exc:
        err.write(f"livemig: {exc}\n")
        return None


def cmd_check(args: argparse.Namespace, runner: CommandRunner, out: TextIO, err: TextIO) -> int:
    from livemig.check.readiness import CheckOptions, check_vm
    from livemig.check.report import format_json, format_report

    deadline = Deadline(args.timeout)
    options = CheckOptions(cib_file=args.cib, peer=args.peer, peer_uri=args.peer_uri,
                           runtime=not args.skip_runtime, libvirt=not args.skip_libvirt,
                           host=None if args.skip_host else HostPaths())
    if args.cib is not None:
        try:  # cibadmin reads it (CIB_file): a FIFO or a device must not block it either
            check_regular_file(args.cib, "--cib", max_bytes=MAX_INPUT_BYTES, deadline=deadline)
        except InputError as exc:
            err.write(f"livemig: {exc}\n")
            return EXIT_USAGE
    if args.drbd_xml is not None:
        options.drbd_xml = _read(args.drbd_xml, "--drbd-xml", err, deadline)
        if options.drbd_xml is None:
            return EXIT_USAGE
    if args.domain_xml is not None:
        options.domain_xml = _read(args.domain_xml, "--domain-xml", err, deadline)
        if options.domain_xml is None:
            return EXIT_USAGE
    options.peer_names = peer_names_option(args.peer_names)
    report = check_vm(args.vm, options, runner=runner, deadline=deadline, stat=bounded_stat(deadline))
    out.write(format_json(report) if args.json else format_report(report, pcs=args.pcs,
                                                                  problems_only=args.problems))
    return report.exit_code


def vm_actions() -> Sequence[Action]:
    """The agent's declared actions (its meta-data), for operation timeouts."""
    from livemig.agents.virtualdomain.metadata import METADATA

    return list(METADATA.actions)


def cmd_config(args: argparse.Namespace, runner: CommandRunner, out: TextIO, err: TextIO) -> int:
    from livemig.pacemaker.config_generator import ConfigError, VmSetup, crmsh_commands, pcs_commands

    text = _read(args.domain_xml, "--domain-xml", err)
    if text is None:
        return EXIT_USAGE
    if domain_name(text) is None:
        err.write(f"livemig config: --domain-xml {args.domain_xml}: not a libvirt domain XML with a <name>\n")
        return EXIT_USAGE
    resources = list(dict.fromkeys(args.drbd_resources))
    _warn_unnamed_resources(text, resources, err)
    setup = VmSetup(vm_id=args.vm, config_path=args.config_path or os.path.abspath(args.domain_xml),
                    drbd_resources=resources, actions=vm_actions(), hypervisor=args.hypervisor,
                    two_primaries=args.two_primaries, diskless=list(dict.fromkeys(args.diskless)))
    try:
        out.write(pcs_commands(setup) if args.pcs else crmsh_commands(setup))
    except ConfigError as exc:
        err.write(f"livemig config: {exc}\n")
        return EXIT_USAGE
    return 0


def _warn_unnamed_resources(xml_text: str, resources: Sequence[str], err: TextIO) -> None:
    """Say so when the domain's by-res disks name DRBD resources not given with --drbd-resource."""
    from livemig.check.domain import unnamed_drbd_resources

    for disk, resource in unnamed_drbd_resources(xml_text, resources):
        err.write(f"livemig config: warning: disk {disk} is on DRBD resource {resource}, "
                  "which no --drbd-resource names\n")
