"""DRBD runtime checks: the migration guard's verdict, as check rows.

The runtime layer is exactly what the agent's ``migrate_to`` would decide now
(:func:`livemig.drbd.guard.evaluate_guard`); ``livemig check`` only adds how to
fix each failed condition. The guard's own fence-constraint check is left out:
the Pacemaker layer reports it, with its fix.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

from livemig.check.model import LAYER_DRBD_RUNTIME, CheckResult, Fix, fail, ok, unknown
from livemig.drbd.guard import MODE_DUAL_PRIMARY, evaluate_guard
from livemig.drbd.tools import DrbdReader
from livemig.ocf.deadline import Deadline
from livemig.run import CommandRunner

_UNREADABLE = ("drbd-state", "drbd-settings")

_FIXES: Dict[str, str] = {
    "present": "the clone brings it up: crm resource start {clone} (by hand: drbdadm up {res})",
    "local-role": "Pacemaker promotes it: look for failed promote actions in crm_mon -1, "
                  "then crm resource cleanup {clone}",
    "peer-role": "Pacemaker promotes it on the peer once promoted-max=2: look for failed promote actions "
                 "in crm_mon -1, then crm resource cleanup {clone}",
    "local-io": "I/O is suspended (fencing under way, or quorum lost): see drbdsetup status {res} --verbose "
                "and the fence-peer handler's messages in the system log",
    "local-disk": "wait for the resync to finish (livemig drbd status {res}); a Diskless/Failed disk needs "
                  "drbdadm attach {res}",
    "local-quorum": "restore the connections to the other nodes (drbdadm status {res})",
    "connection": "drbdadm connect {res} on both nodes (after a split brain, resolve it first: see "
                  "drbdadm status {res})",
    "peer": "name the target node with --peer NODE, and --peer-name NODE=HOST where DRBD names it differently",
    "peer-disk": "wait for the resync to finish (livemig drbd status {res})",
    "replication": "wait for the resync to finish (livemig drbd status {res})",
    "out-of-sync": "wait for the resync to finish; if it does not start: drbdadm verify {res}",
    "allow-two-primaries": "fix the configuration (see the drbd-config rows), then drbdadm adjust {res}",
    "auto-promote": "options { auto-promote yes; } in the resource, then drbdadm adjust {res}",
    "mode": "set drbd_guard=dual-primary on the VM resource",
    "drbd-state": "check that DRBD is loaded and that livemig drbd status works on this node",
    "drbd-settings": "check that drbdsetup show works on this node",
}


def check_runtime(resources: Sequence[str], peer: str, *, runner: CommandRunner, deadline: Deadline,
                  cib_xml: str, clones: Mapping[str, str], mode: str = MODE_DUAL_PRIMARY,
                  peer_names: Optional[Mapping[str, str]] = None,
                  reader: Optional[DrbdReader] = None) -> List[CheckResult]:
    """Rows for the DRBD state of ``resources`` towards node ``peer``; ``clones`` maps resource -> clone id."""
    verdict = evaluate_guard(resources, peer, mode, runner=runner, deadline=deadline, peer_names=peer_names,
                             cib_reader=lambda _deadline: cib_xml, reader=reader)
    results: List[CheckResult] = []
    checks = [c for c in verdict.checks if c.check != "fence-constraint"]
    for res in resources:
        mine = [c for c in checks if c.resource == res]
        bad = [c for c in mine if not c.ok]
        if mine and not bad:
            results.append(ok(LAYER_DRBD_RUNTIME, "drbd-state",
                              f"{res}: {len(mine)} runtime checks passed (both Primary, Connected, UpToDate)"
                              if mode == MODE_DUAL_PRIMARY else f"{res}: {len(mine)} runtime checks passed", res))
        for check in bad:
            template = _FIXES.get(check.check, "see livemig drbd status {res}")
            fix = Fix(template.format(res=res, clone=clones.get(res, f"the clone of {res}")))
            if check.check in _UNREADABLE:
                results.append(unknown(LAYER_DRBD_RUNTIME, check.check, check.detail, fix, res))
            else:
                results.append(fail(LAYER_DRBD_RUNTIME, check.check, check.detail, fix, res))
    return results
