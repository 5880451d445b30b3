"""A DRBD world for the guard's mutation fuzz: what the guard reads, as data.

A :class:`World` is one node's view: the ``/proc/drbd`` text, the answer of
every command the guard may run (argv -> exit code and output, or a hang),
the udev ``/dev/drbd/by-res`` links, and how the guard is asked (resources,
target node, mode, node-name mapping). Both the guard (through a scripted
runner, a temporary ``/proc/drbd`` file and by-res directory) and the
independent oracle (``guard_oracle``) read the same World, so a mutation of
the World is seen the same way by both.

Scenarios (:class:`Scenario8`, :class:`Scenario9`) describe a consistent
DRBD set-up (resources, their minors or volumes, the hosts, the states, the
CIB's fence constraints) and render it in the formats the real tools print:
``/proc/drbd`` of 8.0, 8.3 and 8.4 (as in tests/fixtures/drbd), drbdsetup
9's ``status --json --verbose --statistics`` and ``show --json`` (the
printf layout of drbd-utils' drbdsetup.c, in the key set of 9.6.0 or of
current drbd-utils), ``drbdadm sh-resource``/``sh-minor``/``-v dump-xml``
(as drbd-utils prints them; dump-xml in the shape of
tests/fixtures/drbd/check/check-8[34]-good.dump-xml.txt) and the CIB
(tests/fixtures/drbd/cib-synthetic-*.xml). :func:`baselines` are healthy
worlds whose DRBD state is the real fixtures with the roles made dual-primary.

This module imports nothing from livemig, so the oracle can use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "drbd"

Argv = Tuple[str, ...]

STATUS9: Argv = ("drbdsetup", "status", "all", "--json", "--verbose", "--statistics")
SHOW9: Argv = ("drbdsetup", "show", "all", "--json", "--show-defaults")
CIB_QUERY: Argv = ("cibadmin", "--query")
UNAME: Argv = ("uname", "-n")

MODES = ("dual-primary", "auto-promote")

#: This node, as drbdadm picks its ``on`` section: ``$__DRBD_NODE__``, else ``uname -n``.
LOCAL_NODE = os.environ.get("__DRBD_NODE__") or os.uname().nodename


def sh_resource(minor: int) -> Argv:
    return ("drbdadm", "sh-resource", f"minor-{minor}")


def sh_minor(resource: str) -> Argv:
    return ("drbdadm", "sh-minor", resource)


def dump_xml(resource: str) -> Argv:
    return ("drbdadm", "-v", "dump-xml", resource)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def short(name: str) -> str:
    return name.split(".", 1)[0]


# -- the world --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a command does: exits ``code`` with this output, hangs (``timeout``), or is not installed."""

    code: int = 0
    stdout: str = ""
    stderr: str = ""
    timeout: bool = False
    missing: bool = False

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timeout and not self.missing


def ok(stdout: str) -> Answer:
    return Answer(0, stdout)


@dataclass(frozen=True)
class ByRes:
    """One entry under ``/dev/drbd/by-res``: ``("r0",)`` (8.3) or ``("r0", "0")`` (8.4).

    ``kind`` is ``link`` (to ``target``) or ``file`` (something that is no link).
    """

    path: Tuple[str, ...]
    kind: str = "link"
    target: str = ""


@dataclass(frozen=True, repr=False)
class World:
    label: str
    resources: Tuple[str, ...]
    target: str
    mode: str = "dual-primary"
    local_node: str = LOCAL_NODE
    peer_names: Tuple[Tuple[str, str], ...] = ()
    proc: Optional[str] = None
    answers: Mapping[Argv, Answer] = field(default_factory=dict)
    by_res: Optional[Tuple[ByRes, ...]] = None
    history: Tuple[str, ...] = ()

    def answer(self, argv: Sequence[str]) -> Optional[Answer]:
        return self.answers.get(tuple(argv))

    def with_answer(self, argv: Argv, answer: Optional[Answer]) -> World:
        answers = dict(self.answers)
        if answer is None:
            answers.pop(argv, None)
        else:
            answers[argv] = answer
        return replace(self, answers=answers)

    def noted(self, what: str) -> World:
        return replace(self, history=self.history + (what,))

    def __repr__(self) -> str:
        return f"<World {self.label!r} mutations={list(self.history)!r}>"

    def describe(self) -> str:
        """Everything the guard reads, for a failure message."""
        parts = [f"world {self.label}: resources={list(self.resources)} target={self.target!r} "
                 f"mode={self.mode} local={self.local_node!r} peer_names={dict(self.peer_names)}",
                 f"mutations: {list(self.history)}",
                 f"/proc/drbd: {self.proc!r}"]
        for argv, answer in sorted(self.answers.items()):
            shown = answer.stdout if len(answer.stdout) <= 300 else answer.stdout[:300] + "..."
            state = "hangs" if answer.timeout else "not installed" if answer.missing else f"exit {answer.code}"
            parts.append(f"{' '.join(argv)} -> {state}: {shown!r}")
        parts.append(f"by-res: {self.by_res!r}")
        return "\n".join(parts)


def normalized_by_res(entries: Sequence[ByRes]) -> Tuple[ByRes, ...]:
    """The entries that can exist together on a file system (first one wins), in a stable order."""
    kept: List[ByRes] = []
    taken: Dict[Tuple[str, ...], str] = {}
    for entry in entries:
        if not entry.path or any(not _file_name_ok(part) for part in entry.path) or len(entry.path) > 2:
            continue
        if entry.path in taken:
            continue
        if len(entry.path) == 2 and taken.get(entry.path[:1], "dir") != "dir":
            continue  # by-res/<res> is already a link or a file
        if len(entry.path) == 1 and any(p[:1] == entry.path for p in taken if len(p) == 2):
            continue  # by-res/<res> is already a directory
        if entry.kind == "link" and (not entry.target or "\0" in entry.target):
            continue
        kept.append(entry)
        taken[entry.path] = entry.kind
        if len(entry.path) == 2:
            taken.setdefault(entry.path[:1], "dir")
    return tuple(sorted(kept, key=lambda e: e.path))


def _file_name_ok(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name and len(name) < 200


# -- DRBD 8.x -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Volume8:
    """One minor of an 8.x resource, and what ``/proc/drbd`` says about it."""

    minor: int
    volume: int = 0
    cs: str = "Connected"
    role: str = "Primary"
    peer_role: str = "Primary"
    disk: str = "UpToDate"
    peer_disk: str = "UpToDate"
    protocol: str = "C"
    io: str = "r"          # first I/O flag: r running, s suspended
    flags_rest: str = ""   # the other flags ("" = all "-" for the version)
    oos: int = 0
    shown: str = "yes"     # "yes": in /proc/drbd; "unconfigured": cs:Unconfigured; "no": absent


@dataclass(frozen=True)
class Resource8:
    name: str
    peer_host: str
    volumes: Tuple[Volume8, ...]
    local_host: str = LOCAL_NODE


@dataclass(frozen=True)
class Scenario8:
    version: str                           # one of VERSIONS8
    resources: Tuple[Resource8, ...]       # every resource configured on this node
    asked: Tuple[str, ...]
    target: str
    peer_names: Tuple[Tuple[str, str], ...] = ()
    by_res: bool = True
    fences: Tuple[Tuple[str, str], ...] = ()   # (resource, "new" | "old")
    extra_unconfigured: Tuple[int, ...] = ()
    blank_lines: bool = False
    nul_flags: bool = False                # 8.3.1: the fifth flag printed as a NUL byte
    mode: str = "dual-primary"


VERSIONS8 = ("8.0.12", "8.3.1", "8.3.11", "8.4.2", "8.4.11-1")

_HEADERS8 = {
    "8.0.12": "version: 8.0.12 (api:86/proto:86)\n"
              "GIT-hash: 5c9f89594553e32adb87d9638dce591782f947e3 build by XXX\n",
    "8.3.1": "version: 8.3.1 (api:88/proto:86-89)\n"
             "GIT-hash: fd40f4a8f9104941537d1afc8521e584a6d3003c build by phil@fat-tyre, 2009-03-27 12:19:49\n",
    "8.3.11": "version: 8.3.11 (api:88/proto:86-96)\nsrcversion: 2D876214BAAD53B31ADC1D6\n",
    "8.4.2": "version: 8.4.2 (api:1/proto:86-101)\n"
             "GIT-hash: 7ad5f850d711223713d6dcadc3dd48860321070c build by root@example.com, 2013-04-10 07:45:25\n",
    "8.4.11-1": "version: 8.4.11-1 (api:1/proto:86-101)\n"
                "GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by mockbuild@, 2018-04-26 12:10:42\n\n",
}
_FLAG_COUNT8 = {"8.0.12": 4, "8.3.1": 5, "8.3.11": 6, "8.4.2": 6, "8.4.11-1": 6}
SYNC_STATES8 = ("SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT")


def proc8_minor(version: str, vol: Volume8, nul_flags: bool = False) -> str:
    """A minor's lines in ``/proc/drbd`` as DRBD ``version`` prints them."""
    if vol.shown == "unconfigured":
        return f"{vol.minor:2d}: cs:Unconfigured\n"
    count = _FLAG_COUNT8[version]
    rest = (vol.flags_rest + "-" * count)[:count - 1]
    flags = vol.io + rest
    if nul_flags and version == "8.3.1":
        flags = flags[:4] + "\0"
    protocol = " " if vol.cs == "StandAlone" else vol.protocol
    roles = "st" if version.startswith("8.0") else "ro"
    line = (f"{vol.minor:2d}: cs:{vol.cs} {roles}:{vol.role}/{vol.peer_role} "
            f"ds:{vol.disk}/{vol.peer_disk} {protocol} {flags}\n")
    if version.startswith("8.0"):
        line += ("    ns:4375577 nr:0 dw:4446279 dr:674 al:1067 bm:69 lo:0 pe:0 ua:0 ap:0\n"
                 "\tresync: used:0/61 hits:0 misses:0 starving:0 dirty:0 changed:0\n"
                 "\tact_log: used:0/257 hits:793749 misses:1067 starving:0 dirty:0 changed:1067\n")
    else:
        line += f"    ns:524236 nr:0 dw:0 dr:526364 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:{vol.oos}\n"
    if vol.cs in SYNC_STATES8:
        line += ("\t[=======>............] sync'ed: 44.4% (588416/1048576)K\n"
                 "\tfinish: 0:00:08 speed: 65,736 (65,736) want: 61,440 K/sec\n")
    return line


def render_proc8(s: Scenario8) -> str:
    minors: Dict[int, str] = {}
    for res in s.resources:
        for vol in res.volumes:
            if vol.shown != "no":
                minors[vol.minor] = proc8_minor(s.version, vol, s.nul_flags)
    for minor in s.extra_unconfigured:
        minors.setdefault(minor, f"{minor:2d}: cs:Unconfigured\n")
    gap = "\n" if s.blank_lines else ""
    return _HEADERS8[s.version] + gap.join(minors[m] for m in sorted(minors))


def render_dump_xml8(version: str, res: Resource8) -> str:
    """``drbdadm -v dump-xml RES``, shaped like check-83-good / check-84-good.dump-xml.txt."""
    hosts = []
    addresses = {res.local_host: "10.0.0.1", res.peer_host: "10.0.0.2"}
    for host in (res.local_host, res.peer_host):
        if version.startswith("8.4"):
            body = "".join(
                f'        <volume vnr="{v.volume}">\n'
                f'            <section name="disk">\n'
                f'                <option name="fencing" value="resource-and-stonith"/>\n'
                f'            </section>\n'
                f'            <device minor="{v.minor}">/dev/drbd{v.minor}</device>\n'
                f'            <disk>/dev/vg/{res.name}-{v.volume}</disk>\n'
                f'            <meta-disk>internal</meta-disk>\n'
                f'        </volume>\n' for v in res.volumes)
            body += f'        <address family="ipv4" port="7788">{addresses[host]}</address>\n'
        else:
            v = res.volumes[0]
            body = (f'        <device minor="{v.minor}">/dev/drbd{v.minor}</device>\n'
                    f'        <disk>/dev/vg/{res.name}</disk>\n'
                    f'        <address family="ipv4" port="7788">{addresses[host]}</address>\n'
                    f'        <meta-disk>internal</meta-disk>\n')
        hosts.append(f'    <host name="{host}">\n{body}    </host>\n')
    if version.startswith("8.4"):
        head = f'<resource name="{res.name}" conf-file-line="/etc/drbd.d/{res.name}.res:1">\n'
        net = ('    <section name="net">\n'
               '        <option name="protocol" value="C"/>\n'
               '        <option name="allow-two-primaries" value="yes"/>\n')
    else:
        head = f'<resource name="{res.name}" protocol="C">\n'
        net = ('    <section name="net">\n'
               '        <option name="allow-two-primaries"/>\n')
    tail = (net + '        <option name="after-sb-0pri" value="discard-zero-changes"/>\n'
            '        <option name="after-sb-1pri" value="disconnect"/>\n'
            '        <option name="after-sb-2pri" value="disconnect"/>\n'
            '    </section>\n'
            '    <section name="disk">\n'
            '        <option name="fencing" value="resource-and-stonith"/>\n'
            '    </section>\n'
            '    <section name="handlers">\n'
            '        <option name="fence-peer" value="/usr/lib/drbd/crm-fence-peer.sh"/>\n'
            '        <option name="after-resync-target" value="/usr/lib/drbd/crm-unfence-peer.sh"/>\n'
            '    </section>\n'
            '</resource>\n')
    return head + "".join(hosts) + tail


def not_defined(what: str) -> Answer:
    return Answer(10, "", f"'{what}' not defined in your config (for this host).\n")


def render8(s: Scenario8, label: str, proc: Optional[str] = None) -> World:
    """The world of an 8.x scenario (``proc`` replaces the rendered ``/proc/drbd`` text)."""
    answers: Dict[Argv, Answer] = {UNAME: ok(LOCAL_NODE + "\n")}
    links: List[ByRes] = []
    for res in s.resources:
        answers[sh_minor(res.name)] = ok("".join(f"{v.minor}\n" for v in res.volumes))
        answers[dump_xml(res.name)] = ok(render_dump_xml8(s.version, res))
        for vol in res.volumes:
            answers[sh_resource(vol.minor)] = ok(res.name + "\n")
            if s.version.startswith("8.4"):
                links.append(ByRes((res.name, str(vol.volume)), "link", f"/dev/drbd{vol.minor}"))
            else:
                links.append(ByRes((res.name,), "link", f"/dev/drbd{vol.minor}"))
    known = {res.name for res in s.resources}
    for name in s.asked:
        if name not in known:
            answers[sh_minor(name)] = not_defined(name)
            answers[dump_xml(name)] = not_defined(name)
    for minor in s.extra_unconfigured:
        answers.setdefault(sh_resource(minor), not_defined(f"minor-{minor}"))
    answers[CIB_QUERY] = ok(render_cib([r.name for r in s.resources], s.fences, s.target))
    return World(label=label, resources=s.asked, target=s.target, mode=s.mode, peer_names=s.peer_names,
                 proc=render_proc8(s) if proc is None else proc, answers=answers,
                 by_res=normalized_by_res(links) if s.by_res else None)


# -- DRBD 9 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device9:
    volume: int
    minor: int
    disk: str = "UpToDate"
    quorum: bool = True


@dataclass(frozen=True)
class PeerDevice9:
    volume: int
    replication: str = "Established"
    peer_disk: str = "UpToDate"
    oos: int = 0


@dataclass(frozen=True)
class Connection9:
    node_id: int
    name: str
    cstate: str = "Connected"
    peer_role: str = "Primary"
    peer_devices: Tuple[PeerDevice9, ...] = ()
    allow_two_primaries: bool = True


@dataclass(frozen=True)
class Resource9:
    name: str
    devices: Tuple[Device9, ...]
    connections: Tuple[Connection9, ...]
    role: str = "Primary"
    node_id: int = 1
    suspended_user: bool = False
    suspended_no_data: bool = False
    suspended_fencing: bool = False
    suspended_quorum: bool = False
    auto_promote: bool = True


@dataclass(frozen=True)
class Scenario9:
    resources: Tuple[Resource9, ...]
    asked: Tuple[str, ...]
    target: str
    layout: str = "9.6"        # "9.6": drbd-utils 9.6.0's keys (the salt sample); "9.2x": current drbd-utils
    mode: str = "dual-primary"
    peer_names: Tuple[Tuple[str, str], ...] = ()
    fences: Tuple[Tuple[str, str], ...] = ()


def _b(value: bool) -> str:
    return "true" if value else "false"


def _s(value: str) -> str:
    return json.dumps(value)


def _device_json(d: Device9, layout: str) -> str:
    lines = [f'      "volume": {d.volume},', f'      "minor": {d.minor},', f'      "disk-state": {_s(d.disk)},',
             f'      "client": {_b(d.disk == "Diskless")},']
    if layout == "9.2x":
        lines.append('      "open": true,')
    lines += [f'      "quorum": {_b(d.quorum)},', '      "size": 307152,', '      "read": 0,', '      "written": 0,',
              '      "al-writes": 0,', '      "bm-writes": 0,', '      "upper-pending": 0,', '      "lower-pending": 0']
    return "    {\n" + "\n".join(lines) + "\n    }"


def _peer_device_json(p: PeerDevice9) -> str:
    in_sync = 100.0 if p.oos == 0 else 96.47
    lines = [f'          "volume": {p.volume},', f'          "replication-state": {_s(p.replication)},',
             f'          "peer-disk-state": {_s(p.peer_disk)},', '          "peer-client": false,',
             '          "resync-suspended": "no",', '          "received": 0,', '          "sent": 0,',
             f'          "out-of-sync": {p.oos},', '          "pending": 0,', '          "unacked": 0,',
             '          "has-sync-details": false,', '          "has-online-verify-details": false,',
             f'          "percent-in-sync": {in_sync:.2f}']
    return "        {\n" + "\n".join(lines) + "\n        }"


def _connection_json(c: Connection9, layout: str) -> str:
    space = " " if layout == "9.2x" else ""
    lines = [f'      "peer-node-id": {c.node_id},', f'      "name": {_s(c.name)},',
             f'      "connection-state": {_s(c.cstate)},{space}', '      "congested": false,',
             f'      "peer-role": {_s(c.peer_role)},']
    if layout == "9.2x":
        lines.append('      "tls": false,')
    lines += ['      "ap-in-flight": 0,', '      "rs-in-flight": 0,']
    if layout == "9.2x":
        lines.append('      "paths": [\n ],')
    pds = ",\n".join(_peer_device_json(p) for p in c.peer_devices)
    lines.append('      "peer_devices": [\n' + pds + " ]")
    return "    {\n" + "\n".join(lines) + "\n    }"


def _resource_json(r: Resource9, layout: str) -> str:
    suspended = r.suspended_user or r.suspended_no_data or r.suspended_fencing or r.suspended_quorum
    lines = [f'  "name": {_s(r.name)},', f'  "node-id": {r.node_id},', f'  "role": {_s(r.role)},',
             f'  "suspended": {_b(suspended)},']
    if layout == "9.2x":
        lines += [f'  "suspended-user": {_b(r.suspended_user)},',
                  f'  "suspended-no-data": {_b(r.suspended_no_data)},',
                  f'  "suspended-fencing": {_b(r.suspended_fencing)},',
                  f'  "suspended-quorum": {_b(r.suspended_quorum)},',
                  '  "force-io-failures": false,']
    lines.append('  "write-ordering": "flush",')
    lines.append('  "devices": [\n' + ",\n".join(_device_json(d, layout) for d in r.devices) + " ],")
    lines.append('  "connections": [\n' + ",\n".join(_connection_json(c, layout) for c in r.connections) + " ]")
    return "{\n" + "\n".join(lines) + "\n}"


def render_status9(resources: Sequence[Resource9], layout: str) -> str:
    """``drbdsetup status all --json --verbose --statistics`` in drbdsetup's printf layout."""
    return "[\n" + "\n,\n".join(_resource_json(r, layout) for r in resources) + "\n]\n\n"


def render_show9(resources: Sequence[Resource9]) -> str:
    """``drbdsetup show all --json --show-defaults``, shaped like drbd9-show-json-drbdutils-one-volume.txt."""
    docs = []
    for r in resources:
        docs.append({
            "resource": r.name,
            "options": {"auto-promote": r.auto_promote, "on-no-quorum": "suspend-io"},
            "_this_host": {"node-id": r.node_id, "volumes": [
                {"volume_nr": d.volume, "device_minor": d.minor, "backing-disk": f"/dev/vg/{r.name}-{d.volume}",
                 "meta-disk": "internal", "disk": {"al-extents": "1237", "read-balancing": "prefer-local"}}
                for d in r.devices]},
            "connections": [
                {"paths": [], "_cstate": c.cstate,
                 "net": {"ping-int": "10", "allow-two-primaries": c.allow_two_primaries},
                 "_peer_node_id": c.node_id}
                for c in r.connections],
        })
    return json.dumps(docs, indent=4) + "\n"


def render9(s: Scenario9, label: str, status: Optional[str] = None, show: Optional[str] = None) -> World:
    answers: Dict[Argv, Answer] = {
        UNAME: ok(LOCAL_NODE + "\n"),
        STATUS9: ok(render_status9(s.resources, s.layout) if status is None else status),
        SHOW9: ok(render_show9(s.resources) if show is None else show),
        CIB_QUERY: ok(render_cib([r.name for r in s.resources], s.fences, s.target)),
    }
    return World(label=label, resources=s.asked, target=s.target, mode=s.mode, peer_names=s.peer_names,
                 proc=fixture("drbd9-proc-synthetic-version-only.txt"), answers=answers, by_res=None)


# -- the CIB -------------------------------------------------------------------------------------


def clone_id(resource: str) -> str:
    return f"ms_drbd_{resource}"


def fence_constraint(resource: str, form: str, node: str = LOCAL_NODE) -> str:
    """The location constraint crm-fence-peer places: ``new`` (-<res>-<clone>) or ``old`` (-<clone>) id."""
    clone = clone_id(resource)
    stem = f"drbd-fence-by-handler-{resource}-" if form == "new" else "drbd-fence-by-handler-"
    return (f'      <rsc_location rsc="{clone}" id="{stem}{clone}">\n'
            f'        <rule role="Promoted" score="-INFINITY" id="{stem}rule-{clone}">\n'
            f'          <expression attribute="#uname" operation="ne" value="{node}" id="{stem}expr-1-{clone}"/>\n'
            f'        </rule>\n'
            f'      </rsc_location>\n')


def clone_xml(resource: str) -> str:
    clone = clone_id(resource)
    return (f'      <clone id="{clone}">\n'
            f'        <meta_attributes id="{clone}-meta_attributes">\n'
            f'          <nvpair id="{clone}-meta_attributes-promotable" name="promotable" value="true"/>\n'
            f'        </meta_attributes>\n'
            f'        <primitive id="drbd_{resource}" class="ocf" provider="linbit" type="drbd">\n'
            f'          <instance_attributes id="drbd_{resource}-instance_attributes">\n'
            f'            <nvpair id="drbd_{resource}-instance_attributes-drbd_resource" name="drbd_resource" '
            f'value="{resource}"/>\n'
            f'          </instance_attributes>\n'
            f'        </primitive>\n'
            f'      </clone>\n')


def render_cib(resources: Sequence[str], fences: Sequence[Tuple[str, str]], target: str) -> str:
    """cib-synthetic-empty.xml with a promotable clone per DRBD resource (as in cib-synthetic-fence-beijing.xml)."""
    text = fixture("cib-synthetic-empty.xml")
    text = text.replace('uname="salt-node1"', f'uname="{_attr(LOCAL_NODE)}"').replace(
        'uname="salt-node3"', f'uname="{_attr(target)}"')
    clones = "".join(clone_xml(r) for r in resources)
    text = text.replace("<resources/>", f"<resources>\n{clones}    </resources>" if clones else "<resources/>")
    constraints = "".join(fence_constraint(r, form) for r, form in fences)
    return text.replace("<constraints/>", f"<constraints>\n{constraints}    </constraints>"
                        if constraints else "<constraints/>")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# -- baselines from the real fixtures --------------------------------------------------------------


def _only(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


def baselines() -> List[World]:
    """Healthy worlds: the real samples with the roles made dual-primary (every one is safe)."""
    worlds = []

    # 8.4.11, the Pacemaker documentation's wwwdata on minor 1, made Primary/Primary.
    proc = _only(fixture("drbd84-proc-pacemaker-connected-primary-8.4.11.txt"),
                 "ro:Primary/Secondary", "ro:Primary/Primary")
    s8 = Scenario8("8.4.11-1", (Resource8("wwwdata", "pcmk-2", (Volume8(1),)),), ("wwwdata",), "pcmk-2")
    worlds.append(render8(s8, "8.4.11 pacemaker wwwdata", proc))

    # 8.4.2 (ganeti): minors 0 and 1 are the two volumes of r0; 4, 6, 8 are other, unhealthy resources.
    proc = fixture("drbd84-proc-ganeti-multi-minor.txt")
    proc = _only(proc, " 0: cs:Connected ro:Primary/Secondary", " 0: cs:Connected ro:Primary/Primary")
    proc = _only(proc, " 1: cs:Connected ro:Secondary/Primary", " 1: cs:Connected ro:Primary/Primary")
    others = (Resource8("r4", "beta", (Volume8(4, cs="WFConnection", peer_role="Unknown", peer_disk="DUnknown"),)),
              Resource8("r6", "beta", (Volume8(6, role="Secondary", disk="Diskless"),)),
              Resource8("r8", "beta", (Volume8(8, cs="StandAlone", role="Secondary", peer_role="Unknown",
                                               peer_disk="DUnknown"),)))
    s8 = Scenario8("8.4.2", (Resource8("r0", "beta", (Volume8(0, 0), Volume8(1, 1))),) + others, ("r0",),
                   "beta.example.com", extra_unconfigured=(2,))
    worlds.append(render8(s8, "8.4.2 ganeti r0 two volumes, target by full name", proc))

    # 8.3.1 (ganeti, NUL in the flags of minor 1): r0 on minor 0 and r1 on minor 1, the peer mapped by name.
    proc = fixture("drbd83-proc-ganeti-multi-minor.txt")
    proc = _only(proc, " 0: cs:Connected ro:Primary/Secondary", " 0: cs:Connected ro:Primary/Primary")
    proc = _only(proc, " 1: cs:Connected ro:Secondary/Primary", " 1: cs:Connected ro:Primary/Primary")
    others83 = tuple(Resource8(f"r{m}", "drbd-b", (Volume8(m),)) for m in (4, 5, 6, 7, 8))
    s8 = Scenario8("8.3.1", (Resource8("r0", "drbd-b", (Volume8(0),)), Resource8("r1", "drbd-b", (Volume8(1),)))
                   + others83, ("r0", "r1"), "node-b", peer_names=(("node-b", "drbd-b"),), by_res=False,
                   extra_unconfigured=(2,))
    worlds.append(render8(s8, "8.3.1 ganeti r0+r1, peer_names, no by-res", proc))

    # 8.3.1 with a resync on another resource (minor 3), 8.3 by-res links.
    proc = fixture("drbd83-proc-ganeti-synctarget.txt")
    proc = _only(proc, " 0: cs:Connected ro:Primary/Secondary", " 0: cs:Connected ro:Primary/Primary")
    proc = _only(proc, " 1: cs:Connected ro:Secondary/Primary", " 1: cs:Connected ro:Primary/Primary")
    s8 = Scenario8("8.3.1", (Resource8("r0", "beta", (Volume8(0),)), Resource8("r1", "beta", (Volume8(1),)),
                             Resource8("r3", "beta", (Volume8(3, cs="SyncTarget", disk="Inconsistent"),)),
                             Resource8("r4", "beta", (Volume8(4, cs="WFConnection"),))),
                   ("r1",), "beta", extra_unconfigured=(2,))
    worlds.append(render8(s8, "8.3.1 ganeti r1 beside a resync", proc))

    # 8.0.12 (ganeti, st: and no oos:), r0 on minor 0.
    proc = _only(fixture("drbd80-proc-ganeti-emptyline.txt"), "st:Primary/Secondary", "st:Primary/Primary")
    s8 = Scenario8("8.0.12", (Resource8("r0", "beta", (Volume8(0),)),), ("r0",), "beta", by_res=False,
                   extra_unconfigured=(1, 2, 5, 6))
    worlds.append(render8(s8, "8.0.12 ganeti r0", proc))

    # DRBD 9: the salt sample of beijing, the peer made Primary (the derived dual-primary fixture).
    beijing = Resource9("beijing", (Device9(0, 5),), (Connection9(2, "salt-node3", peer_devices=(PeerDevice9(0),)),))
    s9 = Scenario9((beijing,), ("beijing",), "salt-node3")
    two_primaries = fixture("drbd9-show-json-derived-beijing-two-primaries.txt")
    worlds.append(render9(s9, "9 salt beijing dual-primary",
                          status=fixture("drbd9-status-json-derived-dual-primary.txt"), show=two_primaries))

    # DRBD 9 auto-promote: the real salt sample (peer Secondary) with two primaries allowed at runtime.
    secondary = replace(beijing, connections=(replace(beijing.connections[0], peer_role="Secondary"),))
    s9 = Scenario9((secondary,), ("beijing",), "salt-node3.example.com", mode="auto-promote")
    worlds.append(render9(s9, "9 salt beijing auto-promote",
                          status=fixture("drbd9-status-json-salt-beijing-primary.txt"), show=two_primaries))

    # DRBD 9 in current drbd-utils' layout: two volumes, three nodes (the third peer down), two resources.
    r0 = Resource9("r0", (Device9(0, 1000), Device9(1, 1001)), (
        Connection9(1, "beta", peer_devices=(PeerDevice9(0), PeerDevice9(1))),
        Connection9(2, "gamma", cstate="Connecting", peer_role="Unknown",
                    peer_devices=(PeerDevice9(0, "Off", "DUnknown"), PeerDevice9(1, "Off", "DUnknown")))),
        node_id=0)
    r1 = Resource9("r1", (Device9(0, 1002),), (Connection9(1, "beta", peer_devices=(PeerDevice9(0),)),), node_id=0)
    s9 = Scenario9((r0, r1), ("r0", "r1"), "beta", layout="9.2x")
    worlds.append(render9(s9, "9 current drbd-utils r0 (2 volumes, 3 nodes) + r1"))
    return worlds
