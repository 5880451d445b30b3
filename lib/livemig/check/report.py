"""``livemig check`` output: a table for people, a JSON document for scripts."""

from __future__ import annotations

import json
import textwrap
from typing import List, Sequence

from livemig.check.model import FAIL, MAINTENANCE_REMINDER, OK, UNKNOWN, WARN, CheckReport, CheckResult

COLUMNS = ("STATUS", "LAYER", "CHECK", "SUBJECT", "FOUND")
_SHOWN = {OK: "ok", WARN: "WARN", FAIL: "FAIL", UNKNOWN: "??"}
FOUND_WIDTH = 90


def _verdict(report: CheckReport) -> str:
    code = report.exit_code
    if code == 0:
        return "nothing prevents a safe live migration"
    if code == 1:
        return "live migration is NOT safe: fix the FAIL lines"
    return "could not check everything (?? lines): safety is not shown"


def format_report(report: CheckReport, *, pcs: bool = False, problems_only: bool = False) -> str:
    """The table: one line per check; under each warning or failure, its fix."""
    title = f"livemig check {report.vm}"
    facts = []
    if report.domain:
        facts.append(f"domain {report.domain}")
    if report.drbd_resources:
        facts.append(f"DRBD {', '.join(report.drbd_resources)}")
    if report.peer:
        facts.append(f"target {report.peer}")
    lines = [title + (f" ({'; '.join(facts)})" if facts else "")]
    rows: Sequence[CheckResult] = [r for r in report.results if not problems_only or r.status != OK]
    cells = [[_SHOWN[r.status], r.layer, r.name, r.subject or "-"] for r in rows]
    widths = [max([len(COLUMNS[i])] + [len(c[i]) for c in cells]) for i in range(4)]
    indent = sum(widths) + 2 * 4

    def row(values: Sequence[str], found: str) -> List[str]:
        head = "  ".join(v.ljust(widths[i]) for i, v in enumerate(values))
        wrapped = textwrap.wrap(found, FOUND_WIDTH) or [""]
        out = [f"{head}  {wrapped[0]}".rstrip()]
        out += [" " * indent + more for more in wrapped[1:]]
        return out

    lines += row(COLUMNS[:4], COLUMNS[4])
    for result, values in zip(rows, cells):
        lines += row(values, result.found)
        fix = result.fix.render(pcs=pcs)
        if result.status != OK and fix:
            # Never wrapped: a command broken over lines cannot be pasted.
            lines.append(" " * indent + f"fix: {fix}")
    counts = report.counts()
    lines.append("")
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail, {counts[UNKNOWN]} not checkable: "
                 f"{_verdict(report)} (exit {report.exit_code})")
    lines.append(textwrap.fill(f"Reminder: {MAINTENANCE_REMINDER}", FOUND_WIDTH + 20))
    return "\n".join(lines) + "\n"


def format_json(report: CheckReport) -> str:
    return json.dumps(report.as_json(), indent=2) + "\n"
