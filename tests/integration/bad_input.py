"""The bad-input table: one row per wrong configuration, the code and exit reason the agent gives.

Each row runs the agent once per listed action (test_virtualdomain_bad_input.py).
Parameters start from a valid configuration (``config`` = a valid domain XML,
``hypervisor`` = the session's libvirtd) and the row overrides them; ``None``
removes a parameter. Placeholders in values and in ``reason``:

    {config:KIND}  a file prepared by the test, KIND one of CONFIG_KINDS
    {config}       the path the row's ``config`` resolves to
    {uri}          the session libvirtd's URI
    {dead_uri}     a URI whose socket does not exist (libvirtd unreachable)

``reason`` is a case-insensitive substring the ``ocf-exit-reason:`` must contain
('' = any non-empty reason; None = no reason required).

Codes follow OCF/Pacemaker semantics (5 = not installed: this node lacks
something, Pacemaker tries another node; 6 = not configured: the resource's
configuration is wrong, Pacemaker stops trying anywhere). Rows marked
``guess=True`` are the test author's reading of those semantics and of
ocf:heartbeat:VirtualDomain, to be confirmed with the agent's author; rows
with ``guess=False`` are stated by the issue. :func:`markdown` renders the
table for docs/testing.md (a test fails when the two differ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

OK, GENERIC, NOT_INSTALLED, NOT_CONFIGURED, NOT_RUNNING = 0, 1, 5, 6, 7

#: config files the test prepares (see test_virtualdomain_bad_input.py)
CONFIG_KINDS = (
    "valid", "missing", "dangling-symlink", "directory", "empty", "not-xml",
    "no-name", "empty-name", "not-a-domain", "xxe", "billion-laughs", "huge",
)

BOTH = ("validate-all", "start")


@dataclass(frozen=True)
class BadInput:
    case: str
    params: Dict[str, Optional[str]]
    expected: int
    reason: Optional[str]
    actions: Tuple[str, ...] = BOTH
    probe: bool = False
    env: Dict[str, str] = field(default_factory=dict)
    guess: bool = True
    note: str = ""


TABLE = [
    # --- the config parameter and its file ------------------------------------------------
    BadInput("config-unset", {"config": None}, NOT_CONFIGURED, "config",
             actions=("validate-all", "start", "monitor"),
             note="required parameter missing"),
    BadInput("config-empty", {"config": ""}, NOT_CONFIGURED, "config",
             note="an empty value is the same as unset"),
    BadInput("config-relative", {"config": "guest.xml"}, NOT_CONFIGURED, "absolute",
             note="a relative path depends on the agent's working directory"),
    BadInput("config-missing", {"config": "{config:missing}"}, NOT_INSTALLED, "{config}",
             note="5, as heartbeat: the file may live on storage this node lacks; another node may have it"),
    BadInput("config-missing-probe", {"config": "{config:missing}"}, NOT_RUNNING, None,
             actions=("monitor",), probe=True,
             note="a probe on a node without the file: nothing can run here (heartbeat does the same)"),
    BadInput("config-dangling-symlink", {"config": "{config:dangling-symlink}"}, NOT_INSTALLED, "{config}"),
    BadInput("config-unreadable", {"config": "{config:directory}"}, NOT_INSTALLED, "{config}",
             note="root reads any mode-000 file, so a directory stands for 'unreadable'"),
    BadInput("config-empty-file", {"config": "{config:empty}"}, NOT_CONFIGURED, "{config}"),
    BadInput("config-not-xml", {"config": "{config:not-xml}"}, NOT_CONFIGURED, "xml"),
    BadInput("config-no-name", {"config": "{config:no-name}"}, NOT_CONFIGURED, "name"),
    BadInput("config-empty-name", {"config": "{config:empty-name}"}, NOT_CONFIGURED, "name"),
    BadInput("config-not-a-domain", {"config": "{config:not-a-domain}"}, NOT_CONFIGURED, "domain"),
    BadInput("config-xxe", {"config": "{config:xxe}"}, NOT_CONFIGURED, "DOCTYPE", guess=False,
             note="an external entity naming a local file: refused, the file is never opened"),
    BadInput("config-billion-laughs", {"config": "{config:billion-laughs}"}, NOT_CONFIGURED, "DOCTYPE", guess=False,
             note="nested entities: refused before any expansion"),
    BadInput("config-huge", {"config": "{config:huge}"}, NOT_CONFIGURED, "larger than", guess=False,
             note="over 4 MiB: a configuration error everywhere, not a node-local one"),
    # --- parameter types ------------------------------------------------------------------
    BadInput("force_stop-not-boolean", {"force_stop": "maybe"}, NOT_CONFIGURED, "force_stop"),
    BadInput("autoset_utilization_cpu-not-boolean", {"autoset_utilization_cpu": "perhaps"},
             NOT_CONFIGURED, "autoset_utilization_cpu"),
    BadInput("save_config_on_stop-not-boolean", {"save_config_on_stop": "xyz"},
             NOT_CONFIGURED, "save_config_on_stop"),
    BadInput("migration_downtime-not-integer", {"migration_downtime": "abc"}, NOT_CONFIGURED, "migration_downtime"),
    BadInput("migration_downtime-double-minus", {"migration_downtime": "--5"}, NOT_CONFIGURED, "migration_downtime",
             note="int() would raise: was an internal error (1)"),
    BadInput("migrateport-non-ascii-digit", {"migrateport": "\u00b2"}, NOT_CONFIGURED, "migrateport",
             note="str.isdigit() accepts it, int() does not: was an internal error (1)"),
    BadInput("migrateport-out-of-range", {"migrateport": "70000"}, NOT_CONFIGURED, "maximum"),
    BadInput("remoteuri-percent-abuse", {"remoteuri": "qemu+tcp://%n/system%s"}, NOT_CONFIGURED, "only %n"),
    BadInput("migrateuri-traversal", {"migrateuri": "unix:///run/../etc/x"}, NOT_CONFIGURED, "'..'"),
    BadInput("remoteuri-not-a-uri", {"remoteuri": "../../etc/shadow"}, NOT_CONFIGURED, "not a URI"),
    BadInput("drbd_resources-option-injection", {"drbd_resources": "-c"}, NOT_CONFIGURED, "drbd_resources",
             note="a leading '-' would be an option of drbdadm"),
    BadInput("shutdown_mode-shell", {"shutdown_mode": "acpi;reboot"}, NOT_CONFIGURED, "shutdown_mode",
             note="no shell ever sees a value"),
    # --- values and combinations ---------------------------------------------------------------
    BadInput("shutdown_mode-unknown", {"shutdown_mode": "reboot"}, NOT_CONFIGURED, "shutdown_mode"),
    BadInput("shutdown_mode-one-unknown", {"shutdown_mode": "acpi,bogus"}, NOT_CONFIGURED, "bogus"),
    BadInput("monitor_scripts-missing", {"monitor_scripts": "/nonexistent/livemig-check"}, NOT_INSTALLED,
             "/nonexistent/livemig-check"),
    BadInput("snapshot-dir-missing", {"snapshot": "/nonexistent/livemig-snapshots"}, NOT_INSTALLED,
             "/nonexistent/livemig-snapshots"),
    BadInput("snapshot-with-force_stop", {"snapshot": "/tmp", "force_stop": "true"}, NOT_CONFIGURED, "force_stop",
             note="heartbeat refuses this combination too"),
    # --- heartbeat's copy-on-write parameters (agents/virtualdomain/images.py) -------------------
    BadInput("stateless-without-backingfile", {"stateless": "true"}, NOT_CONFIGURED, "needs backingfile",
             guess=False, note="heartbeat refuses this combination too"),
    BadInput("backingfile-missing", {"backingfile": "/nonexistent/livemig-base.qcow2"}, NOT_INSTALLED,
             "/nonexistent/livemig-base.qcow2", note="this node lacks the image; another node may have it"),
    BadInput("copyindirs-relative", {"backingfile": "/nonexistent/livemig-base.qcow2", "copyindirs": "etc/livemig"},
             NOT_CONFIGURED, "absolute path",
             note="heartbeat's would be looked up in the directory Pacemaker runs agents in"),
    # --- the hypervisor --------------------------------------------------------------------------
    BadInput("hypervisor-not-a-uri", {"hypervisor": "not a uri"}, NOT_CONFIGURED, "hypervisor"),
    BadInput("hypervisor-unreachable-start", {"hypervisor": "{dead_uri}"}, GENERIC, "",
             actions=("start",), note="libvirtd down on this node: a local, transient failure"),
    BadInput("hypervisor-unreachable-probe", {"hypervisor": "{dead_uri}"}, NOT_RUNNING, None,
             actions=("monitor",), probe=True,
             note="libvirtd down and no QEMU of the domain in /proc: not running (the /proc fallback)"),
    BadInput("hypervisor-unreachable-stop", {"hypervisor": "{dead_uri}"}, OK, None,
             actions=("stop",), note="nothing runs (no QEMU in /proc): stopping a stopped resource succeeds"),
]


def markdown() -> str:
    """The table as it appears in docs/testing.md (a test keeps the two in sync)."""
    names = {0: "0 success", 1: "1 generic error", 5: "5 not installed", 6: "6 not configured", 7: "7 not running"}
    lines = [
        "| case | parameters | action(s) | code | exit reason contains | source |",
        "|---|---|---|---|---|---|",
    ]
    for row in TABLE:
        params = ", ".join(f"`{k}` unset" if v is None else f"`{k}={v}`" for k, v in row.params.items())
        actions = ", ".join(a + (" (probe)" if row.probe and a == "monitor" else "") for a in row.actions)
        reason = "-" if row.reason is None else ("(any)" if row.reason == "" else f"`{row.reason}`")
        source = "guess" if row.guess else "issue"
        if row.note:
            source += f": {row.note}"
        lines.append(f"| {row.case} | {params} | {actions} | {names[row.expected]} | {reason} | {source} |")
    return "\n".join(lines) + "\n"
