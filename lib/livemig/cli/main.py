"""The ``livemig`` command: argument parsing and printing only.

Everything it reports comes from the library (:mod:`livemig.drbd`,
:mod:`livemig.pacemaker`); this module turns arguments into calls and
results into text, JSON and exit codes. Bad input is reported on stderr with
exit code 2, never with a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, TextIO

from livemig import __version__
from livemig.cli import check_commands
from livemig.cli.inputs import InputError, check_regular_file, peer_names_option, read_text
from livemig.cli.tables import status_table
from livemig.drbd.modes import ALL_MODES
from livemig.drbd.state import DrbdStateError, DrbdStatus, status_as_json
from livemig.ocf.deadline import Deadline
from livemig.run import CommandRunner

if TYPE_CHECKING:
    from livemig.drbd.guard import GuardVerdict

# What needs lxml (the CIB, the guard, the DRBD readers) is imported by the command
# that uses it: `livemig --help` works without lxml (tests/unit/cli/test_cli_imports.py).

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNDECIDED = 2
EXIT_USAGE = 2

DEFAULT_TIMEOUT = 30.0
MAX_DOMAIN_XML_BYTES = 4 * 1024 * 1024

DESCRIPTION = """\
livemig: check and drive live migration of libvirt VMs on DRBD under Pacemaker.

The ocf:livemig:VirtualDomain resource agent live-migrates libvirt VMs whose disks
are DRBD resources in dual-primary mode; livemig shows DRBD state as the agent reads
it, runs the agent's migration guard, checks what a VM's live migration depends on,
and prints the commands that set a VM up.
"""

GUARD_EPILOG = """\
checks (mode dual-primary), for every resource:
  local role Primary and I/O not suspended; every local volume UpToDate (DRBD 9:
  quorum held); the connection to the peer Connected (DRBD 8: cs:Connected exactly);
  the peer Primary; every peer volume UpToDate, replication Established (DRBD 9),
  out-of-sync 0 where reported; no drbd-fence-by-handler-<res>-* constraint in the CIB.
  Mode auto-promote (DRBD 9 only) accepts a Secondary peer when the connection allows
  two primaries at runtime and auto-promote is on.

exit status:
  0  allowed: every check passed
  1  refused: a check failed (the reasons are printed, one per line)
  2  could not decide (state unreadable, a tool failed or hung) or bad usage: refused

environment:
  LIVEMIG_PROC_DRBD  read this file instead of /proc/drbd
  CIB_file           cibadmin reads this file instead of the live CIB (as --cib does)
"""

STATUS_EPILOG = """\
DRBD 9 is read with "drbdsetup status --json --verbose --statistics" (or its text form,
where drbd-utils has no --json); DRBD 8.x from /proc/drbd, where each configured minor
is one resource with one unnamed peer. A RESOURCE named is found by its minors in DRBD's
configuration ("drbdadm sh-minor"); minors listed without names are named from
/dev/drbd/by-res, "drbdadm sh-resource" or "drbdadm -v dump-xml all" when possible.

exit status:
  0  state read (and every RESOURCE named was found)
  1  a RESOURCE named is not up on this node
  2  the state could not be read (for a RESOURCE named: nor its minors told), or bad usage
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livemig", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"livemig {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what is run and waited for on stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    drbd = commands.add_parser("drbd", help="show DRBD state as livemig reads it",
                               description="Show DRBD state as livemig reads it.")
    drbd_commands = drbd.add_subparsers(dest="drbd_command", metavar="SUBCOMMAND")
    drbd_commands.required = True
    status = drbd_commands.add_parser(
        "status", help="the state of DRBD resources on this node",
        description="The state of DRBD resources on this node: roles, disk, connection and "
                    "replication states, out-of-sync amounts. Unknown values print as '-' (null in JSON).",
        epilog=STATUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("resources", nargs="*", metavar="RESOURCE",
                        help="only these resources (default: all that are up)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_timeout(status)
    status.set_defaults(handler=_cmd_drbd_status)

    guard = commands.add_parser(
        "guard", help="is a live migration to a node safe for these DRBD resources?",
        description="Decide whether live-migrating a VM to node NODE is safe for the DRBD "
                    "resources behind its disks, exactly as the resource agent's migrate_to does.",
        epilog=GUARD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    guard.add_argument("--peer", required=True, metavar="NODE",
                       help="the migration target: its Pacemaker node name")
    what = guard.add_mutually_exclusive_group(required=True)
    what.add_argument("--resource", dest="resources", action="append", nargs="+", metavar="RES",
                      help="DRBD resource(s) to check (repeatable)")
    what.add_argument("--domain-xml", metavar="FILE",
                      help="a libvirt domain XML ('-' for stdin): check the DRBD resources behind its disks")
    guard.add_argument("--mode", choices=ALL_MODES, default=ALL_MODES[0],
                       help="dual-primary (default): the peer must be Primary; auto-promote (DRBD 9): "
                            "the peer may be Secondary if two primaries are allowed and auto-promote is on; "
                            "migration-window (DRBD 9): the peer must be Secondary, two primaries not yet "
                            "allowed, quorum kept without the peer")
    guard.add_argument("--cib", metavar="FILE",
                       help="read the CIB from FILE (via cibadmin and CIB_file) instead of the live cluster")
    guard.add_argument("--peer-name", dest="peer_names", action="append", default=[], metavar="NODE=HOST",
                       help="the DRBD host name of a Pacemaker node, where they differ (repeatable)")
    guard.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                       help="wait up to SECONDS for transitional states (peer promoting, resync "
                            "finishing) to clear (default: 0)")
    guard.add_argument("--json", action="store_true",
                       help='print {"allowed": ..., "checks": [...]} instead of text')
    _add_timeout(guard)
    guard.set_defaults(handler=_cmd_guard)
    check_commands.add_parsers(commands, _seconds)
    return parser


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"give up (and refuse) after SECONDS in all (default: {DEFAULT_TIMEOUT:.0f})")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


class UsageError(Exception):
    """Bad input found after argument parsing (a resource name that cannot be one)."""


Handler = Callable[[argparse.Namespace, CommandRunner, TextIO, TextIO], int]


def main(argv: Optional[Sequence[str]] = None, *, runner: Optional[CommandRunner] = None,
         stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None, stdin_fd: Optional[int] = None) -> int:
    """Run the ``livemig`` command; returns the exit status.

    ``stdin_fd``: where ``-`` is read from (default: standard input).
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _setup_logging(args.verbose, err)
    args.stdin_fd = stdin_fd
    handler: Handler = args.handler
    try:
        return handler(args, runner or CommandRunner(), out, err)
    except (UsageError, InputError) as exc:
        err.write(f"livemig {args.command}: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("livemig: interrupted\n")
        return 130


def _setup_logging(verbose: bool, stream: TextIO) -> None:
    logger = logging.getLogger("livemig")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("livemig: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


def _cmd_drbd_status(args: argparse.Namespace, runner: CommandRunner, out: TextIO, err: TextIO) -> int:
    from livemig.drbd.tools import DrbdReader

    deadline = Deadline(args.timeout)
    wanted: List[str] = list(dict.fromkeys(args.resources))
    bad = [name for name in wanted if not name or name.startswith("-") or "/" in name or name.split() != [name]]
    if bad:
        raise UsageError(f"not a DRBD resource name: {bad[0]!r}")
    reader = DrbdReader(runner, deadline)
    try:
        # Named resources are read as every decision reads them: on 8.x their minors come from
        # DRBD's configuration (drbdadm sh-minor), so minors /proc/drbd leaves unnamed are found.
        status = reader.read_resources(wanted) if wanted else reader.read_status()
    except DrbdStateError as exc:
        err.write(f"livemig drbd status: could not read DRBD state: {exc}\n")
        return EXIT_UNDECIDED
    code = EXIT_OK
    if wanted:
        entries = [r for r in status.resources if r.name in wanted]
        for name in wanted:
            mine = [r for r in entries if r.name == name]
            for entry in mine:
                if entry.unreadable:
                    err.write(f"livemig drbd status: could not read resource {name}: {entry.unreadable}\n")
                    code = EXIT_UNDECIDED
                elif entry.absent:
                    err.write(f"livemig drbd status: resource {name} is not up on this node: {entry.absent}\n")
                    code = max(code, EXIT_REFUSED)
            if not mine:
                err.write(f"livemig drbd status: resource {name} is not up on this node\n")
                code = max(code, EXIT_REFUSED)
        status = DrbdStatus(drbd_version=status.drbd_version, generation=status.generation,
                            resources=tuple(r for r in entries if not r.unreadable and not r.absent))
    if args.json:
        out.write(json.dumps(status_as_json(status), indent=2) + "\n")
    else:
        out.write(status_table(status))
    return code


def _cmd_guard(args: argparse.Namespace, runner: CommandRunner, out: TextIO, err: TextIO) -> int:
    from livemig.drbd.guard import GuardCheck, GuardVerdict, evaluate_guard
    from livemig.drbd.mapping import resources_from_domain_xml
    from livemig.pacemaker.cib import read_cib_xml

    deadline = Deadline(args.timeout)
    peer_names = peer_names_option(args.peer_names)
    cib_file: Optional[str] = args.cib
    if cib_file is not None:
        check_regular_file(cib_file, "--cib", deadline=deadline)
    if args.domain_xml is not None:
        xml_text = read_text(args.domain_xml, "--domain-xml", max_bytes=MAX_DOMAIN_XML_BYTES, deadline=deadline,
                             stdin_fd=_stdin_fd(args) if args.domain_xml == "-" else None)
        try:
            resources = resources_from_domain_xml(xml_text, runner, deadline)
        except DrbdStateError as exc:
            verdict = GuardVerdict(checks=(GuardCheck("(domain)", "domain-disks", False, str(exc)),),
                                   decided=False)
            return _print_verdict(verdict, args, out)
    else:
        resources = [name for group in args.resources for name in group]
        bad = [name for name in resources if not name or name.startswith("-") or "/" in name]
        if bad:
            raise UsageError(f"not a DRBD resource name: {bad[0]!r}")
    verdict = evaluate_guard(
        resources, args.peer, args.mode, runner=runner, deadline=deadline, peer_names=peer_names,
        cib_reader=lambda d: read_cib_xml(runner, d, cib_file=cib_file), wait=args.wait)
    return _print_verdict(verdict, args, out, resources)


def _print_verdict(verdict: GuardVerdict, args: argparse.Namespace, out: TextIO,
                   resources: Sequence[str] = ()) -> int:
    code = EXIT_OK if verdict.allowed else (EXIT_REFUSED if verdict.decided else EXIT_UNDECIDED)
    if args.json:
        out.write(json.dumps(verdict.as_json(), indent=2) + "\n")
        return code
    if verdict.allowed:
        out.write(f"allowed: migrating {', '.join(resources)} to {args.peer} is safe "
                  f"({len(verdict.checks)} checks passed)\n")
    elif verdict.decided:
        out.write(f"refused: migrating to {args.peer} is not safe\n")
    else:
        out.write(f"refused: could not decide whether migrating to {args.peer} is safe\n")
    for line in verdict.reasons():
        out.write(f"{line}\n")
    return code


def _stdin_fd(args: argparse.Namespace) -> int:
    if args.stdin_fd is not None:
        return int(args.stdin_fd)
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # no standard input (closed, or replaced)
        raise UsageError("standard input is not available to read '-' from") from None
