#!/usr/bin/python3
"""A DRBD simulator for the lab: fake ``drbdadm`` and ``drbdsetup`` sharing one state store.

Purpose: a DRBD resource with state and rules that several nodes change and see, for the lab's
nodes (their /usr/sbin/drbdadm, drbdsetup, drbdsim) and the lab tests (tests/lab, tests/e2e,
tests/faults/test_lab_*); tests/lab/test_lab_drbdsim.py checks it against the real samples. Tests
that need one fixed answer per call, without a lab, use tests/fakes/drbd (see its README.md).

There is no DRBD kernel module on the lab machine.  Each node's /usr/sbin/drbdadm and
/usr/sbin/drbdsetup run this file (``drbdsim.py drbdadm ARGS``).  All nodes share one JSON
state store (``LIVEMIG_DRBDSIM_STORE``, default /run/livemig-lab/shared/drbd/state.json),
locked with flock, so a role change on one node is seen by its peers as on a real
connected group of N nodes.  The local node is ``LIVEMIG_LAB_NODE`` or the hostname.

Output formats are DRBD's: DRBD 9 ``drbdsetup status [--json]``, ``drbdsetup show [--json]
[--show-defaults]``, ``drbdadm status``/``role``/``cstate``/``dstate``/``sh-minor``/``sh-resource``;
in 8.4 mode (``drbdsim mode 8.4``) ``role``/``dstate`` print ``local/peer``, ``drbdadm [-v]
dump-xml`` prints the configuration as drbdadm-84 does, and a /proc/drbd-style text is kept up to
date in each node's ``LIVEMIG_PROC_DRBD`` file.  drbdadm refuses a resource it does not know as
drbdadm does: ``'RES' not defined in your config (for this host).``, exit 1.

DRBD 9's model, as far as issue 17 needs it (docs/two-primaries.md findings 1-6):

* N nodes; a node may be an intentional diskless client (``init_store(diskless=...)``);
* resource options per node: ``auto-promote`` (default yes), ``quorum`` (off|majority|all|N),
  quorum computed per node by DRBD's rule (``calc_quorum`` in drbd_state.c: voters, majority,
  the diskless tiebreaker that only keeps a quorum already held);
* net options per connection AND per side (protocol, allow-two-primaries, on-congestion);
  the resource's ``net`` is the configuration file's value, copied to every connection at
  ``up``; ``drbdsetup net-options RES PEER_ID [--set-defaults] --opt=val`` validates in the
  kernel's order and, while Connected, copies protocol and allow-two-primaries to the peer's
  side (P_PROTOCOL_UPDATE);
* at connect (``connect``, ``adjust``, ``up``, ``drbdsim link ... up``) both sides' settings
  are compared: a mismatch leaves the connection StandAlone on both nodes and logs
  ``incompatible <what> settings`` in each node's log (``drbdsim log NODE``);
* a promotion checks both sides' settings for every Connected Primary peer; ``drbdsetup
  primary`` sets the explicit-primary flag, ``secondary`` clears it;
* opens (``drbdsim open/close``, or what ``drbdsim kernel`` sees in /proc): a write open on a
  Secondary auto-promotes (refused: ``Auto-promote failed: ...``, EROFS), a read-only open on a
  Secondary while a peer is Primary is EMEDIUMTYPE, the last writer's close demotes a node that
  was auto-promoted;
* every role change, net-option change, connection change, refusal and open is appended to the
  record (``drbdsim record``; :func:`read_records`, :func:`primaries_intervals`).

Not modelled: the waits of ``auto-promote-timeout`` (a refusal is immediate: the store is locked
while a command runs, so no peer could change meanwhile), after-sb policies, fencing,
data-integrity-alg, quorum-minimum-redundancy, more than one volume. ``drbdadm net-options RES``
changes every connection of the node; ``drbdadm adjust`` is :func:`adjust`. ``drbdsim kernel``
must run inside the node whose opens it models (each lab node has its own PID namespace and
/proc, so /proc/*/fd shows that node's processes only; from the host every node's processes
would look alike): ``nsenter ... env LIVEMIG_LAB_NODE=NODE drbdsim kernel --for=S``.

DRBD's rules are enforced with its messages and exit codes (drbdsetup: ``<obj>: State change
failed: (<SS code>) <text>`` exit 11, or 17 for SS_NO_UP_TO_DATE_DISK; ``<obj>: Failure:
(<ERR code>) <text>`` exit 10; drbdadm adds ``Command 'drbdsetup ...' terminated with exit
code N``):

* a second Primary without allow-two-primaries on both sides: (-1) Multiple primaries not
  allowed by config;
* allow-two-primaries without protocol C: (139) Protocol C required; on-congestion other than
  block without protocol A: (155); clearing allow-two-primaries while both are Primary: (164);
* promoting without UpToDate data reachable: (-2) Need access to UpToDate data (exit 17);
  without quorum: (-25) No quorum;
* demoting (or downing) a device held open for writing, e.g. by QEMU: (-12) Device is held
  open by someone;
* ``disconnect`` leaves the connection StandAlone until ``connect``/``adjust``/``up``.

Tests steer what a kernel would decide with the lab-only ``drbdsim`` command:
``drbdsim dump | mode 9|8.4 | disk RES NODE STATE | config RES [--protocol=P]
[--allow-two-primaries=yes|no] [--on-congestion=X] [--auto-promote=yes|no] [--quorum=off|majority]
| resync RES --target=NODE --done=PCT | resync-done RES | crash NODE | link RES A B up|down
| fail-net-options NODE on|off | adjust NODE RES | open NODE RES ro|rw | close NODE RES ro|rw
| kernel (--once | --for=S) [--interval=S] | log NODE | record [RES]``.
"""

import fcntl
import json
import os
import socket
import stat
import sys
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

DEFAULT_STORE = "/run/livemig-lab/shared/drbd/state.json"
VERSION_9 = "9.2.8"
VERSION_84 = "8.4.11-1"

DISK_STATES = ("Diskless", "Attaching", "Detaching", "Failed", "Negotiating", "Inconsistent",
               "Outdated", "DUnknown", "Consistent", "UpToDate")

SS_TWO_PRIMARIES = (-1, "Multiple primaries not allowed by config")
SS_NO_UP_TO_DATE_DISK = (-2, "Need access to UpToDate data")
SS_DEVICE_IN_USE = (-12, "Device is held open by someone")
SS_PRIMARY_READER = (-22, "Peer may not become primary while device is opened read-only")
SS_NO_QUORUM = (-25, "No quorum")
ERR_NOMEM = (122, "kmalloc() failed. Out of memory?")
ERR_NOT_PROTO_C = (139, "Protocol C required")
ERR_CONG_NOT_PROTO_A = (155, "on-congestion policy pull-ahead only with prot A allowed")
ERR_INVALID_REQUEST = (162, "Invalid configuration request")
ERR_NEED_ALLOW_TWO_PRI = (164, "Can not clear allow_two_primaries as long as\nthere a primaries on both sides")

#: net options the simulator models, with DRBD 9's defaults
NET_DEFAULTS: Dict[str, Any] = {"protocol": "C", "allow-two-primaries": False, "on-congestion": "block"}
NET_CHOICES = {"protocol": ("A", "B", "C"), "on-congestion": ("block", "pull-ahead", "disconnect")}
#: resource options the simulator models, with DRBD 9's defaults (auto-promote-timeout in 1/10 s)
RES_DEFAULTS: Dict[str, Any] = {"auto-promote": True, "quorum": "off", "auto-promote-timeout": 20}
#: errno names of a refused open, with strerror's text
ERRNO_TEXT = {"EROFS": "Read-only file system", "EMEDIUMTYPE": "Wrong medium type", "ENODATA": "No data available"}
LOG_KEEP = 400  # lines of each node's log kept in the store


class DrbdFailure(Exception):
    def __init__(self, text: str, code: int, ss: Optional[Tuple[int, str]] = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.ss = ss  # the DRBD result (code, text) behind it, if any
        self.reported = False  # already written to stderr


def store_path() -> str:
    return os.environ.get("LIVEMIG_DRBDSIM_STORE", DEFAULT_STORE)


def record_path(store: Optional[str] = None) -> str:
    return (store or store_path()) + ".record"


def local_node() -> str:
    return os.environ.get("LIVEMIG_LAB_NODE") or socket.gethostname()


@contextmanager
def locked_store(write: bool) -> Iterator[Dict[str, Any]]:
    path = store_path()
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        with open(path) as f:
            data = json.load(f)
        data["_records"] = []
        try:
            yield data
        finally:
            if write:
                for name, res in data["resources"].items():
                    settle(data, name, res)
                records = data.pop("_records", [])
                tmp = path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(data, f, indent=1)
                os.replace(tmp, path)
                if records:
                    with open(record_path(path), "a") as f:
                        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
                write_proc_files(data)


def init_store(path: str, res: str, minor: int, backing: str, nodes: Sequence[Tuple[str, str]],
               proc_paths: Optional[Dict[str, str]] = None, devices: bool = True, mode: str = "9",
               diskless: Sequence[str] = (), options: Optional[Dict[str, Any]] = None,
               net: Optional[Dict[str, Any]] = None) -> None:
    """Create a store: one resource, all nodes down, disks UpToDate (an initial sync is done).

    ``diskless`` names intentional diskless clients (disk Diskless, ``client``); ``options``
    and ``net`` are the configuration file's resource options (``auto-promote``, ``quorum``)
    and net section (``protocol``, ``allow-two-primaries``, ``on-congestion``; default: protocol
    C, allow-two-primaries yes, as the lab always had)."""
    file_net = {"protocol": "C", "allow-two-primaries": True}
    file_net.update(net or {})
    data = {
        "mode": mode,
        "devices": devices,
        "proc_paths": proc_paths or {},
        "resources": {
            res: {
                "minor": minor,
                "volume": 0,
                "backing": backing,
                "size_kib": 65536,
                "net": file_net,
                "options": dict(options or {}),
                "resync": None,
                "nodes": {
                    name: {"node-id": i, "address": addr, "up": False, "role": "Secondary",
                           "disk": "Diskless" if name in diskless else "UpToDate",
                           "client": name in diskless, "connect": True}
                    for i, (name, addr) in enumerate(nodes)
                },
            }
        },
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    open(path + ".lock", "a").close()
    with open(record_path(path), "w"):
        pass
    write_proc_files(data)


# --------------------------------------------------------------------------- the record and the log


def record(data: Dict[str, Any], event: str, **fields: Any) -> None:
    """Append one event to the record (written with the store)."""
    data["seq"] = int(data.get("seq", 0)) + 1
    entry = {"t": round(time.time(), 6), "seq": data["seq"], "event": event}
    entry.update(fields)
    data.setdefault("_records", []).append(entry)


def klog(data: Dict[str, Any], node: str, line: str) -> None:
    """A line in ``node``'s kernel log (``drbdsim log NODE``)."""
    logs = data.setdefault("logs", {}).setdefault(node, [])
    logs.append(time.strftime("%H:%M:%S ") + line)
    del logs[:-LOG_KEEP]


def read_records(store: Optional[str] = None, res: Optional[str] = None) -> List[Dict[str, Any]]:
    """The record, in time order (``drbdsim record``), optionally of one resource."""
    try:
        with open(record_path(store)) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [r for r in sorted(lines, key=lambda r: r["seq"]) if res is None or r.get("res") == res]


def roles_from_records(records: Iterable[Dict[str, Any]]) -> Dict[Tuple[str, str], str]:
    """(resource, node) -> role after the record's role changes (nodes never promoted: absent)."""
    roles: Dict[Tuple[str, str], str] = {}
    for r in records:
        if r["event"] == "role":
            roles[(r["res"], r["node"])] = r["to"]
    return roles


def primaries_intervals(records: Iterable[Dict[str, Any]], res: Optional[str] = None
                        ) -> List[Dict[str, Any]]:
    """The periods in which two or more nodes were Primary at once, from the record.

    Each period: ``{"res", "nodes" (sorted), "start", "end" (None: still open), "start_seq",
    "end_seq"}``; a new period starts whenever the set of Primaries (of two or more) changes."""
    primaries: Dict[str, Set[str]] = {}
    current: Dict[str, Dict[str, Any]] = {}
    out: List[Dict[str, Any]] = []
    for r in records:
        if r["event"] != "role" or (res is not None and r.get("res") != res):
            continue
        name = r["res"]
        now = primaries.setdefault(name, set())
        if r["to"] == "Primary":
            now.add(r["node"])
        else:
            now.discard(r["node"])
        open_one = current.pop(name, None)
        if open_one is not None:
            open_one["end"], open_one["end_seq"] = r["t"], r["seq"]
        if len(now) > 1:
            current[name] = {"res": name, "nodes": sorted(now), "start": r["t"], "start_seq": r["seq"],
                             "end": None, "end_seq": None}
            out.append(current[name])
    return out



def allowance_intervals(records: Iterable[Dict[str, Any]], res: Optional[str] = None) -> List[Dict[str, Any]]:
    """The periods in which a connection allowed two primaries on at least one side, from the
    record's net changes: ``{"res", "nodes" (the pair, sorted), "start", "end" (None: still
    open), "start_seq", "end_seq"}``. A store made with allow-two-primaries in its configuration
    has it from ``up`` on (the ``up`` events' connections are not in the record: use this with
    a configuration that says no, as ``drbd_two_primaries=migration`` has it)."""
    sides: Dict[Tuple[str, str, str], bool] = {}
    current: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    out: List[Dict[str, Any]] = []
    for r in records:
        if r["event"] != "net" or (res is not None and r.get("res") != res):
            continue
        a, b = sorted((r["node"], r["peer"]))
        key = (r["res"], a, b)
        sides[(r["res"], r["node"], r["peer"])] = bool(r["options"]["allow-two-primaries"])
        on = sides.get((r["res"], a, b), False) or sides.get((r["res"], b, a), False)
        if on and key not in current:
            current[key] = {"res": r["res"], "nodes": [a, b], "start": r["t"], "start_seq": r["seq"],
                            "end": None, "end_seq": None}
            out.append(current[key])
        elif not on and key in current:
            done = current.pop(key)
            done["end"], done["end_seq"] = r["t"], r["seq"]
    return out


# --------------------------------------------------------------------------- configuration


def file_net(res: Dict[str, Any]) -> Dict[str, Any]:
    """The configuration file's net section for every connection, defaults filled in."""
    conf = dict(NET_DEFAULTS)
    conf.update(res.get("net") or {})
    conf["allow-two-primaries"] = bool(conf["allow-two-primaries"])
    return conf


def file_options(res: Dict[str, Any]) -> Dict[str, Any]:
    conf = dict(RES_DEFAULTS)
    conf.update(res.get("options") or {})
    return conf


def node_options(res: Dict[str, Any], node: str) -> Dict[str, Any]:
    """The resource options in force on ``node`` (runtime, else the file's)."""
    conf = file_options(res)
    conf.update(res["nodes"][node].get("options") or {})
    return conf


def net_conf(res: Dict[str, Any], me: str, peer: str) -> Dict[str, Any]:
    """``me``'s runtime net conf for its connection to ``peer`` (the file's until changed)."""
    nets = res["nodes"][me].setdefault("net", {})
    if peer not in nets:
        nets[peer] = file_net(res)
    for key, value in NET_DEFAULTS.items():
        nets[peer].setdefault(key, value)
    return dict(nets[peer])


def set_net_conf(data: Dict[str, Any], name: str, me: str, peer: str, conf: Dict[str, Any], via: str) -> None:
    res = data["resources"][name]
    old = net_conf(res, me, peer)
    res["nodes"][me]["net"][peer] = dict(conf)
    if old != conf:
        record(data, "net", res=name, node=me, peer=peer, via=via,
               options={k: conf[k] for k in sorted(conf)},
               changed=sorted(k for k in conf if old.get(k) != conf[k]))


def peer_by_id(res: Dict[str, Any], me: str, peer_id: str) -> Optional[str]:
    for p in peers(res, me):
        if str(res["nodes"][p]["node-id"]) == peer_id:
            return p
    return None


# --------------------------------------------------------------------------- derived state


def _pair(a: str, b: str) -> List[str]:
    return sorted([a, b])


def link_up(res: Dict[str, Any], a: str, b: str) -> bool:
    return _pair(a, b) not in res.get("links_down", [])


def cstate(res: Dict[str, Any], me: str, peer: str, mode: str) -> str:
    """Connection state of ``me`` towards ``peer``."""
    a, b = res["nodes"][me], res["nodes"][peer]
    if not a["up"] or not a["connect"] or peer in a.get("standalone", []):
        return "StandAlone"
    if not (b["up"] and b["connect"]) or me in b.get("standalone", []) or not link_up(res, me, peer):
        return "Connecting" if mode == "9" else "WFConnection"
    return "Connected"


def connected(res: Dict[str, Any], me: str, peer: str) -> bool:
    return cstate(res, me, peer, "9") == "Connected"


def replication(res: Dict[str, Any], me: str, peer: str) -> str:
    if not connected(res, me, peer):
        return "Off"
    rs = res.get("resync")
    if rs:
        if rs["target"] == peer:
            return "SyncSource"
        if rs["target"] == me:
            return "SyncTarget"
    return "Established"


def disk_state(res: Dict[str, Any], node: str) -> str:
    rs = res.get("resync")
    n = res["nodes"][node]
    if not n["up"]:
        return "Diskless"
    if rs and rs["target"] == node and any(
            connected(res, node, p) for p in res["nodes"] if p != node):
        return "Inconsistent"
    return str(n["disk"])


def peer_disk(res: Dict[str, Any], me: str, peer: str) -> str:
    return disk_state(res, peer) if connected(res, me, peer) else "DUnknown"


def peer_role(res: Dict[str, Any], me: str, peer: str) -> str:
    return res["nodes"][peer]["role"] if connected(res, me, peer) else "Unknown"


def peers(res: Dict[str, Any], me: str) -> List[str]:
    return [p for p in sorted(res["nodes"], key=lambda n: res["nodes"][n]["node-id"]) if p != me]


def done_pct(res: Dict[str, Any]) -> float:
    rs = res.get("resync")
    return float(rs["done"]) if rs else 100.0


def is_client(res: Dict[str, Any], node: str) -> bool:
    return bool(res["nodes"][node].get("client"))


def data_accessible(res: Dict[str, Any], me: str) -> bool:
    """UpToDate data here or on a Connected peer (DRBD's drbd_data_accessible)."""
    return disk_state(res, me) == "UpToDate" or any(
        connected(res, me, p) and disk_state(res, p) == "UpToDate" for p in peers(res, me))


def primary_peer_present(res: Dict[str, Any], me: str) -> bool:
    return any(peer_role(res, me, p) == "Primary" for p in peers(res, me))


def quorum_counts(res: Dict[str, Any], me: str) -> Dict[str, int]:
    """The votes as DRBD's __calc_quorum_with_disk/__calc_quorum_no_disk count them."""
    c = {"up_to_date": 0, "present": 0, "outdated": 0, "diskless": 0, "missing_diskless": 0, "unknown": 0}
    mine = disk_state(res, me)
    if mine == "Diskless":
        c["diskless" if is_client(res, me) else "unknown"] += 1
    else:
        c["up_to_date" if mine == "UpToDate" else "present"] += 1
    for p in peers(res, me):
        if connected(res, me, p):
            pd = disk_state(res, p)
            if pd == "Diskless" and is_client(res, p):
                c["diskless"] += 1
            else:
                c["up_to_date" if pd == "UpToDate" else "present"] += 1
        elif is_client(res, p):
            c["missing_diskless"] += 1
        elif res["nodes"][p]["disk"] == "Outdated":
            c["outdated"] += 1
        else:
            c["unknown"] += 1
    return c


def _quorum_at(setting: Any, voters: int) -> int:
    if setting == "majority":
        return voters // 2 + 1
    if setting == "all":
        return voters
    return int(setting)


def calc_quorum(res: Dict[str, Any], me: str, had_quorum: bool) -> bool:
    """DRBD's calc_quorum for ``me``: a majority of the voters, or the diskless tiebreaker
    (an even number of voters, one vote short, a majority of the diskless nodes Connected,
    and quorum held before: the tiebreaker keeps a quorum, it never gains one)."""
    setting = node_options(res, me)["quorum"]
    if setting in ("off", 0, "0"):
        return True
    c = quorum_counts(res, me)
    if c["unknown"]:
        voters = c["outdated"] + c["unknown"] + c["up_to_date"] + c["present"]
    else:
        voters = c["up_to_date"] + c["present"]
    quorum_at = _quorum_at(setting, voters)
    votes = c["up_to_date"] + c["present"]
    if votes >= quorum_at:
        return True
    diskless_at = _quorum_at("majority", c["diskless"] + c["missing_diskless"])
    return (voters != 0 and voters % 2 == 0 and votes == quorum_at - 1
            and c["diskless"] >= diskless_at and had_quorum)


def has_quorum(res: Dict[str, Any], me: str) -> bool:
    """The quorum ``me`` holds now (kept up to date at every change of the store)."""
    if node_options(res, me)["quorum"] in ("off", 0, "0"):
        return True
    n = res["nodes"][me]
    if "quorum_now" in n:
        return bool(n["quorum_now"])
    return calc_quorum(res, me, False)


def handshake(res: Dict[str, Any], a: str, b: str) -> Optional[str]:
    """Why a connection coming up between ``a`` and ``b`` is dropped (receive_protocol), or None."""
    ca, cb = net_conf(res, a, b), net_conf(res, b, a)
    if ca["protocol"] != cb["protocol"]:
        return "incompatible protocol settings"
    if ca["allow-two-primaries"] != cb["allow-two-primaries"]:
        return "incompatible allow-two-primaries settings"
    both = res["nodes"][a]["role"] == "Primary" and res["nodes"][b]["role"] == "Primary"
    if both and not (ca["allow-two-primaries"] and cb["allow-two-primaries"]):
        return "Split-Brain detected but unresolved, dropping connection!"
    return None


def settle(data: Dict[str, Any], name: str, res: Dict[str, Any]) -> None:
    """After a change: handshakes of the connections coming up, losses, quorum; all recorded."""
    before = {tuple(p) for p in res.get("established", [])}
    now = set()
    names = sorted(res["nodes"])
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if connected(res, a, b):
                if (a, b) not in before:
                    problem = handshake(res, a, b)
                    if problem:
                        for x, y in ((a, b), (b, a)):
                            res["nodes"][x].setdefault("standalone", []).append(y)
                            klog(data, x, f"drbd {name} {y}: {problem}")
                            record(data, "connection", res=name, node=x, peer=y, state="StandAlone",
                                   reason=problem)
                        continue
                    for x, y in ((a, b), (b, a)):
                        klog(data, x, f"drbd {name} {y}: conn( Connecting -> Connected )")
                        record(data, "connection", res=name, node=x, peer=y, state="Connected")
                now.add((a, b))
            elif (a, b) in before:
                for x, y in ((a, b), (b, a)):
                    record(data, "connection", res=name, node=x, peer=y, state=cstate(res, x, y, "9"))
    res["established"] = sorted(list(p) for p in now)
    for node in names:
        n = res["nodes"][node]
        if not n["up"]:
            n.pop("quorum_now", None)
            continue
        had = bool(n.get("quorum_now", False))
        q = calc_quorum(res, node, had)
        if q != had or "quorum_now" not in n:
            if node_options(res, node)["quorum"] not in ("off", 0, "0"):
                klog(data, node, f"drbd {name}/0 drbd{res['minor']}: quorum( {'no' if had else 'yes'}"
                                 f" -> {'yes' if q else 'no'} )")
                record(data, "quorum", res=name, node=node, quorum=q)
        n["quorum_now"] = q


def rw_opens(res: Dict[str, Any], node: str) -> int:
    n = res["nodes"][node]
    return int((n.get("opens") or {}).get("rw", 0)) + sum(1 for m in (n.get("seen") or {}).values() if m == "rw")


def ro_opens(res: Dict[str, Any], node: str) -> int:
    n = res["nodes"][node]
    return int((n.get("opens") or {}).get("ro", 0)) + sum(1 for m in (n.get("seen") or {}).values() if m == "ro")


# --------------------------------------------------------------------------- outputs


def status_json(data: Dict[str, Any], me: str, names: Sequence[str]) -> str:
    out = []
    for name in names:
        res = data["resources"][name]
        n = res["nodes"][me]
        if not n["up"]:
            continue
        conns = []
        for p in peers(res, me):
            if cstate(res, me, p, "9") == "StandAlone":
                continue
            repl = replication(res, me, p)
            syncing = repl in ("SyncSource", "SyncTarget")
            oos = int(res["size_kib"] * (100 - done_pct(res)) / 100) if syncing else 0
            pd: Dict[str, Any] = {
                "volume": res["volume"], "replication-state": repl,
                "peer-disk-state": peer_disk(res, me, p),
                "peer-client": is_client(res, p) and connected(res, me, p),
                "resync-suspended": "no", "received": 0, "sent": 0, "out-of-sync": oos,
                "pending": 0, "unacked": 0, "has-sync-details": syncing,
                "has-online-verify-details": False,
                "percent-in-sync": round(done_pct(res) if syncing else 100.0, 2),
            }
            conns.append({
                "peer-node-id": res["nodes"][p]["node-id"], "name": p,
                "connection-state": cstate(res, me, p, "9"), "congested": False,
                "peer-role": peer_role(res, me, p), "ap-in-flight": 0, "rs-in-flight": 0,
                "peer_devices": [pd],
            })
        out.append({
            "name": name, "node-id": n["node-id"], "role": n["role"], "suspended": False,
            "write-ordering": "flush",
            "devices": [{
                "volume": res["volume"], "minor": res["minor"], "disk-state": disk_state(res, me),
                "client": is_client(res, me), "quorum": has_quorum(res, me), "size": res["size_kib"],
                "read": 0, "written": 0,
                "al-writes": 0, "bm-writes": 0, "upper-pending": 0, "lower-pending": 0,
            }],
            "connections": conns,
        })
    return json.dumps(out, indent=2) + "\n"


def _shown(conf: Dict[str, Any], defaults: Dict[str, Any], all_of_them: bool) -> Dict[str, Any]:
    """Options as drbdsetup show lists them: booleans true/false, other values strings."""
    out: Dict[str, Any] = {}
    for key in sorted(conf):
        if key not in defaults or (not all_of_them and conf[key] == defaults[key]):
            continue
        value = conf[key]
        out[key] = value if isinstance(value, bool) else str(value)
    return out


def _show_options(res: Dict[str, Any], me: str, all_of_them: bool) -> Dict[str, Any]:
    opts = _shown(node_options(res, me), RES_DEFAULTS, all_of_them)
    opts.setdefault("auto-promote", bool(node_options(res, me)["auto-promote"]))  # as the real samples print it
    return opts


def show_json(data: Dict[str, Any], me: str, names: Sequence[str], defaults: bool = False) -> str:
    out = []
    for name in names:
        res = data["resources"][name]
        n = res["nodes"][me]
        if not n["up"]:
            continue
        conns = []
        for p in peers(res, me):
            cs = cstate(res, me, p, "9")
            conn: Dict[str, Any] = {
                "paths": [{"_this_host": "ipv4 {}:7789".format(n["address"]),
                           "_remote_host": "ipv4 {}:7789".format(res["nodes"][p]["address"])}],
                "_cstate": cs,
            }
            if cs == "StandAlone":
                conn["_is_standalone"] = True
            net = _shown(net_conf(res, me, p), NET_DEFAULTS, defaults)
            net["_name"] = p
            conn["net"] = net
            conn["volumes"] = [{"volume_nr": res["volume"], "disk": {}}]
            conn["_peer_node_id"] = res["nodes"][p]["node-id"]
            conns.append(conn)
        volume: Dict[str, Any] = {"volume_nr": res["volume"], "device_minor": res["minor"]}
        if is_client(res, me):
            volume["disk"] = {}
        else:
            volume.update({"backing-disk": res["backing"] or "/dev/null", "meta-disk": "internal", "disk": {}})
        out.append({
            "resource": name,
            "options": _show_options(res, me, defaults),
            "_this_host": {"node-id": n["node-id"], "volumes": [volume]},
            "connections": conns,
        })
    return json.dumps(out, indent=4) + "\n"


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def show_text(data: Dict[str, Any], me: str, names: Sequence[str], defaults: bool = False) -> str:
    """``drbdsetup show [--show-defaults]`` as drbd-utils 9 prints it (non-default options only)."""
    lines: List[str] = []
    for name in names:
        res = data["resources"][name]
        n = res["nodes"][me]
        if not n["up"]:
            continue
        lines.append(f'resource "{name}" {{')
        opts = _show_options(res, me, defaults)
        lines.append("    options {")
        lines += [f"        {k:<16}\t{_text_value(v)};" for k, v in opts.items()]
        lines.append("    }")
        lines += ["    _this_host {", f"        node-id\t\t\t{n['node-id']};", f"        volume {res['volume']} {{",
                  f"            device\t\t\tminor {res['minor']};"]
        if is_client(res, me):
            lines.append("            disk\t\t\tnone;")
        else:
            lines += [f'            disk\t\t\t"{res["backing"] or "/dev/null"}";',
                      "            meta-disk\t\t\tinternal;"]
        lines += ["        }", "    }"]
        for p in peers(res, me):
            lines += ["    connection {", f"        _peer_node_id {res['nodes'][p]['node-id']};", "        path {",
                      f"            _this_host ipv4 {n['address']}:7789;",
                      f"            _remote_host ipv4 {res['nodes'][p]['address']}:7789;", "        }",
                      "        net {"]
            net = _shown(net_conf(res, me, p), NET_DEFAULTS, defaults)
            lines += [f"            {k:<16}\t{_text_value(v)};" for k, v in net.items()]
            lines.append(f'            _name           \t"{p}";')
            lines += ["        }", "    }"]
        lines.append("}")
        lines.append("")
    return "\n".join(lines)


def status_text(data: Dict[str, Any], me: str, names: Sequence[str]) -> str:
    lines = []
    for name in names:
        res = data["resources"][name]
        n = res["nodes"][me]
        if not n["up"]:
            continue
        lines.append("{} role:{}".format(name, n["role"]))
        extra = "" if has_quorum(res, me) else " quorum:no"
        lines.append(f"  disk:{disk_state(res, me)}{' client:yes' if is_client(res, me) else ''}{extra}")
        for p in peers(res, me):
            cs = cstate(res, me, p, "9")
            if cs == "StandAlone":
                continue
            if cs != "Connected":
                lines.append(f"  {p} connection:{cs}")
                continue
            lines.append(f"  {p} role:{peer_role(res, me, p)}")
            repl = replication(res, me, p)
            extra = " peer-client:yes" if is_client(res, p) else ""
            extra += f" done:{done_pct(res):.2f}" if repl in ("SyncSource", "SyncTarget") else ""
            lines.append(f"    replication:{repl} peer-disk:{peer_disk(res, me, p)}{extra}")
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "")


def proc_drbd(data: Dict[str, Any], me: str) -> str:
    if data["mode"] == "9":
        return (f"version: {VERSION_9} (api:2/proto:86-122)\nGIT-hash: 0000000000000000000000000000000000000000"
                f" build by livemig-lab\nTransports (api:20): tcp ({VERSION_9})\n")
    lines = [f"version: {VERSION_84} (api:1/proto:86-101)",
             "GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by livemig-lab, 2018-04-26 12:10:42",
             ""]
    for name in sorted(data["resources"], key=lambda r: data["resources"][r]["minor"]):
        res = data["resources"][name]
        n = res["nodes"][me]
        if not n["up"]:
            lines.append(f"{res['minor']:2d}: cs:Unconfigured")
            continue
        p = peers(res, me)[0]
        cs = cstate(res, me, p, "8.4")
        repl = replication(res, me, p)
        if repl in ("SyncSource", "SyncTarget"):
            cs = repl
        proto = " " if cs == "StandAlone" else net_conf(res, me, p)["protocol"]
        lines.append(f"{res['minor']:2d}: cs:{cs} ro:{n['role']}/{peer_role(res, me, p)} "
                     f"ds:{disk_state(res, me)}/{peer_disk(res, me, p)} {proto} r-----")
        oos = int(res["size_kib"] * (100 - done_pct(res)) / 100)
        lines.append(f"    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:{oos}")
        if cs in ("SyncSource", "SyncTarget"):
            pct = done_pct(res)
            bar = int(pct / 5)
            done, todo = "=" * max(bar - 1, 0), "." * (20 - max(bar, 1))
            lines.append(f"\t[{done}>{todo}] sync'ed: {pct:.1f}% ({oos}/{res['size_kib']})K")
            lines.append("\tfinish: 0:00:05 speed: 64,800 (64,800) K/sec")
    return "\n".join(lines) + "\n"


def write_proc_files(data: Dict[str, Any]) -> None:
    for node, path in data.get("proc_paths", {}).items():
        try:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(proc_drbd(data, node))
            os.replace(tmp, path)
        except OSError:
            pass


# --------------------------------------------------------------------------- devices


def dev_paths(res_name: str, res: Dict[str, Any]) -> Tuple[str, str]:
    return f"/dev/drbd{res['minor']}", f"/dev/drbd/by-res/{res_name}/{res['volume']}"


def create_device(res_name: str, res: Dict[str, Any]) -> None:
    dev, link = dev_paths(res_name, res)
    rdev = os.stat(res["backing"]).st_rdev
    if not os.path.exists(dev):
        os.mknod(dev, 0o660 | stat.S_IFBLK, rdev)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.islink(link):
        os.symlink(f"../../../drbd{res['minor']}", link)


def remove_device(res_name: str, res: Dict[str, Any]) -> None:
    dev, link = dev_paths(res_name, res)
    for p in (link, dev):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _fd_mode(proc: str, pid: str, fd: str) -> str:
    """``rw`` if the descriptor was opened for writing (fdinfo's flags), else ``ro``."""
    try:
        with open(f"{proc}/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return "rw" if int(line.split()[1], 8) & os.O_ACCMODE else "ro"
    except (OSError, ValueError, IndexError):
        pass
    return "rw"  # unknown: the stricter reading


def scan_opens(res_name: str, res: Dict[str, Any], proc: str = "/proc") -> Dict[str, str]:
    """Every descriptor of a process in this /proc (this node: its PID namespace has its own /proc)
    open on the resource's device: ``"PID:FD" -> "ro"|"rw"``."""
    dev, link = dev_paths(res_name, res)
    try:
        rdev = os.stat(dev).st_rdev
    except OSError:
        return {}
    found: Dict[str, str] = {}
    for pid in os.listdir(proc):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            path = os.path.join(fd_dir, fd)
            try:
                target = os.readlink(path)
                if target not in (dev, link):
                    if not target.startswith("/dev/"):
                        continue
                    st = os.stat(path)
                    if not (stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev):
                        continue
            except OSError:
                continue
            found[f"{pid}:{fd}"] = _fd_mode(proc, pid, fd)
    return found


def device_open(res_name: str, res: Dict[str, Any]) -> bool:
    """Is the device held open by a process of this node (e.g. QEMU)?"""
    return bool(scan_opens(res_name, res))


# --------------------------------------------------------------------------- actions


def fail_state(obj: str, ss: Tuple[int, str]) -> DrbdFailure:
    code = 17 if ss == SS_NO_UP_TO_DATE_DISK else 11
    return DrbdFailure(f"{obj}: State change failed: ({ss[0]}) {ss[1]}", code, ss)


def fail_config(obj: str, err: Tuple[int, str]) -> DrbdFailure:
    return DrbdFailure(f"{obj}: Failure: ({err[0]}) {err[1]}", 10, err)


def objname(data: Dict[str, Any], name: str) -> str:
    return name if data["mode"] == "9" else str(data["resources"][name]["minor"])


def get_res(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    if name not in data["resources"]:
        raise DrbdFailure(f"'{name}' not defined in your config (for this host).", 10)
    res: Dict[str, Any] = data["resources"][name]
    return res


def need_up(data: Dict[str, Any], name: str, me: str) -> Dict[str, Any]:
    res = get_res(data, name)
    if not res["nodes"][me]["up"]:
        raise DrbdFailure(f"{name}: No such resource" if data["mode"] == "9"
                          else f"{objname(data, name)}: Failure: (127) Device minor not allocated", 10)
    return res


def refused(data: Dict[str, Any], name: str, node: str, cmd: str, exc: DrbdFailure, **fields: Any) -> DrbdFailure:
    """Record a refusal and hand the failure back (to raise)."""
    record(data, "refused", res=name, node=node, cmd=cmd, code=exc.ss[0] if exc.ss else None,
           text=exc.text, **fields)
    return exc


def set_role(data: Dict[str, Any], name: str, node: str, role: str, how: str) -> None:
    """Change ``node``'s role, recorded (``how``: explicit, auto, down, crash)."""
    n = data["resources"][name]["nodes"][node]
    old = n["role"]
    if role == "Secondary":
        n["explicit_primary"] = False
    elif how == "explicit":
        n["explicit_primary"] = True
    if old == role:
        return
    n["role"] = role
    klog(data, node, f"drbd {name}: role( {old} -> {role} ){' [auto]' if how == 'auto' else ''}")
    record(data, "role", res=name, node=node, **{"from": old, "to": role}, how=how)


def do_up(data: Dict[str, Any], name: str, me: str) -> None:
    res = get_res(data, name)
    n = res["nodes"][me]
    if not n["up"]:
        # a fresh start: the configuration file's settings, no opener, no leftover of before
        n["net"] = {p: file_net(res) for p in peers(res, me)}
        n["options"] = {}
        n["standalone"] = []
        n["opens"], n["seen"], n["explicit_primary"] = {"rw": 0, "ro": 0}, {}, False
        record(data, "up", res=name, node=me)
    n["up"] = True
    n["connect"] = True
    if data.get("devices"):
        create_device(name, res)


def held_open(data: Dict[str, Any], name: str, me: str, writers_only: bool) -> bool:
    """Held open on ``me``: the model's openers, and (with devices) the processes of this node
    (a demotion needs no writer, DRBD's open_rw_cnt; down needs no opener at all)."""
    res = data["resources"][name]
    if rw_opens(res, me) or (not writers_only and ro_opens(res, me)):
        return True
    if not data.get("devices"):
        return False
    modes = scan_opens(name, res).values()
    return "rw" in modes if writers_only else bool(modes)


def do_down(data: Dict[str, Any], name: str, me: str) -> None:
    res = get_res(data, name)
    n = res["nodes"][me]
    if not n["up"]:
        return
    if n["role"] == "Primary" and held_open(data, name, me, writers_only=False):
        raise refused(data, name, me, "down", fail_state(objname(data, name), SS_DEVICE_IN_USE))
    set_role(data, name, me, "Secondary", "down")
    n["up"] = False
    record(data, "down", res=name, node=me)
    if data.get("devices"):
        remove_device(name, res)


def promotion_refusal(res: Dict[str, Any], me: str, force: bool) -> Optional[Tuple[int, str]]:
    """Why DRBD refuses to make ``me`` Primary (__is_valid_soft_transition, both sides), or None."""
    for p in peers(res, me):
        if not connected(res, me, p):
            continue
        mine, theirs = net_conf(res, me, p), net_conf(res, p, me)
        if res["nodes"][p]["role"] == "Primary" and not (mine["allow-two-primaries"] and theirs["allow-two-primaries"]):
            return SS_TWO_PRIMARIES
    for p in peers(res, me):
        if connected(res, me, p) and ro_opens(res, p) and not net_conf(res, p, me)["allow-two-primaries"]:
            return SS_PRIMARY_READER
    if not force and not data_accessible(res, me):
        return SS_NO_UP_TO_DATE_DISK
    if not has_quorum(res, me):
        return SS_NO_QUORUM
    return None


def promote(data: Dict[str, Any], name: str, me: str, force: bool, how: str) -> None:
    res = need_up(data, name, me)
    n = res["nodes"][me]
    if n["role"] == "Primary":
        if how == "explicit":
            n["explicit_primary"] = True
        return
    why = promotion_refusal(res, me, force)
    if why is not None:
        raise fail_state(objname(data, name), why)
    if force:
        n["disk"] = "UpToDate" if not is_client(res, me) else n["disk"]
        if res.get("resync") and res["resync"]["target"] == me:
            res["resync"] = None
    set_role(data, name, me, "Primary", how)


def do_primary(data: Dict[str, Any], name: str, me: str, force: bool) -> None:
    try:
        promote(data, name, me, force, "explicit")
    except DrbdFailure as exc:
        raise refused(data, name, me, "primary", exc) from None


def do_secondary(data: Dict[str, Any], name: str, me: str) -> None:
    res = need_up(data, name, me)
    n = res["nodes"][me]
    if n["role"] == "Secondary":
        n["explicit_primary"] = False
        return
    if held_open(data, name, me, writers_only=True):
        raise refused(data, name, me, "secondary", fail_state(objname(data, name), SS_DEVICE_IN_USE))
    set_role(data, name, me, "Secondary", "explicit")


def _net_value(key: str, value: str) -> Any:
    if key == "allow-two-primaries":
        return yes_no(value)
    if value not in NET_CHOICES[key]:
        raise DrbdFailure(f"Error parsing --{key}={value}: unknown value", 20)
    return value


def net_options(data: Dict[str, Any], name: str, me: str, peer: str, opts: Dict[str, str],
                set_defaults: bool, via: str = "net-options", base: Optional[Dict[str, Any]] = None) -> None:
    """``drbdsetup net-options RES PEER``: the whole new conf checked in the kernel's order
    (_check_net_options: 164, 139, 155), installed, and sent to the peer while Connected."""
    res = need_up(data, name, me)
    obj = objname(data, name)
    if me in data.get("fail_net_options", []):
        raise refused(data, name, me, via, fail_config(obj, ERR_NOMEM), peer=peer)
    old = net_conf(res, me, peer)
    new = dict(NET_DEFAULTS) if set_defaults else dict(old)
    new.update(base or {})
    for key in NET_DEFAULTS:
        if key in opts:
            new[key] = _net_value(key, opts[key])
    both_primary = (res["nodes"][me]["role"] == "Primary" and peer_role(res, me, peer) == "Primary")
    why = None
    if old["allow-two-primaries"] and not new["allow-two-primaries"] and both_primary:
        why = ERR_NEED_ALLOW_TWO_PRI
    elif new["allow-two-primaries"] and new["protocol"] != "C":
        why = ERR_NOT_PROTO_C
    elif new["on-congestion"] != "block" and new["protocol"] != "A":
        why = ERR_CONG_NOT_PROTO_A
    if why is not None:
        raise refused(data, name, me, via, fail_config(obj, why), peer=peer)
    set_net_conf(data, name, me, peer, new, via)
    if connected(res, me, peer):  # P_PROTOCOL_UPDATE: the peer takes protocol and two_primaries
        theirs = net_conf(res, peer, me)
        theirs["protocol"], theirs["allow-two-primaries"] = new["protocol"], new["allow-two-primaries"]
        set_net_conf(data, name, peer, me, theirs, "protocol-update")


def adm_net_options(data: Dict[str, Any], name: str, me: str, opts: Dict[str, str]) -> None:
    """``drbdadm net-options RES``: every connection of this node."""
    need_up(data, name, me)
    for p in peers(data["resources"][name], me):
        net_options(data, name, me, p, opts, "set-defaults" in opts)


def adjust(data: Dict[str, Any], name: str, me: str) -> None:
    """What ``drbdadm adjust`` does here: up if down; net options that differ from the file put back
    with ``net-options --set-defaults`` and the file's values (per connection; 164 while both are
    Primary); the resource options back to the file's; StandAlone connections connected again."""
    res = get_res(data, name)
    if not res["nodes"][me]["up"]:
        do_up(data, name, me)
        return
    wanted = file_net(res)
    for p in peers(res, me):
        if net_conf(res, me, p) != wanted:
            net_options(data, name, me, p, {}, True, via="adjust", base=wanted)
    n = res["nodes"][me]
    n["options"] = {}
    n["standalone"] = []
    n["connect"] = True


def set_config(data: Dict[str, Any], name: str, opts: Dict[str, str]) -> None:
    """``drbdsim config``: the configuration file's values (used by up, adjust and connect)."""
    res = get_res(data, name)
    conf = file_net(res)
    for key in NET_DEFAULTS:
        if key in opts:
            conf[key] = _net_value(key, opts[key])
    if conf["allow-two-primaries"] and conf["protocol"] != "C":
        raise fail_config(name, ERR_NOT_PROTO_C)
    if conf["on-congestion"] != "block" and conf["protocol"] != "A":
        raise fail_config(name, ERR_CONG_NOT_PROTO_A)
    res["net"] = conf
    options = dict(res.get("options") or {})
    if "auto-promote" in opts:
        options["auto-promote"] = yes_no(opts["auto-promote"])
    if "quorum" in opts:
        q = opts["quorum"]
        if q not in ("off", "majority", "all") and not q.isdigit():
            raise DrbdFailure(f"Error parsing --quorum={q}", 20)
        options["quorum"] = q
    res["options"] = options


def resource_options(data: Dict[str, Any], name: str, me: str, opts: Dict[str, str]) -> None:
    """``drbdsetup resource-options RES --auto-promote=.. --quorum=..``: this node's runtime values."""
    res = need_up(data, name, me)
    n = res["nodes"][me]
    mine = dict(n.get("options") or {})
    if "set-defaults" in opts:
        mine = {k: v for k, v in RES_DEFAULTS.items()}
    if "auto-promote" in opts:
        mine["auto-promote"] = yes_no(opts["auto-promote"])
    if "quorum" in opts:
        mine["quorum"] = opts["quorum"]
    n["options"] = mine
    record(data, "options", res=name, node=me, options=node_options(res, me))


def do_connect(data: Dict[str, Any], name: str, me: str, peer: Optional[str], on: bool) -> None:
    res = need_up(data, name, me)
    n = res["nodes"][me]
    if peer is None:
        n["connect"] = on
        if on:
            n["standalone"] = []
    elif on:
        n["standalone"] = [p for p in n.get("standalone", []) if p != peer]
        n["connect"] = True
    else:
        n.setdefault("standalone", []).append(peer)


def set_link(data: Dict[str, Any], name: str, a: str, b: str, up: bool) -> None:
    """The network between ``a`` and ``b`` (``drbdsim link``): down, both sides go Connecting; up,
    they connect again (and compare their settings)."""
    res = get_res(data, name)
    for x in (a, b):
        if x not in res["nodes"]:
            raise DrbdFailure(f"unknown node {x}", 2)
    down = [p for p in res.get("links_down", []) if p != _pair(a, b)]
    if not up:
        down.append(_pair(a, b))
    res["links_down"] = down
    record(data, "link", res=name, nodes=_pair(a, b), up=up)


def crash(data: Dict[str, Any], node: str) -> None:
    """The node lost power: its resources are gone (peers see the connection drop)."""
    for rname, res in data["resources"].items():
        n = res["nodes"][node]
        if n["up"] or n["role"] != "Secondary":
            set_role(data, rname, node, "Secondary", "crash")
            record(data, "down", res=rname, node=node, crash=True)
        n["up"] = False
        n["opens"], n["seen"] = {"rw": 0, "ro": 0}, {}
        if data.get("devices") and node == local_node():
            remove_device(rname, res)


# --------------------------------------------------------------------------- opens (drbd_open / drbd_release)


def open_refusal(data: Dict[str, Any], name: str, me: str, mode: str) -> Optional[str]:
    """What drbd_open says to an open on ``me``: None (allowed) or the errno's name. A write open
    on a Secondary with auto-promote promotes first (recorded as ``auto``)."""
    res = need_up(data, name, me)
    n = res["nodes"][me]
    opts = node_options(res, me)
    if mode == "rw":
        if n["role"] != "Primary" and opts["auto-promote"]:
            try:
                promote(data, name, me, False, "auto")
            except DrbdFailure as exc:
                ss = exc.ss or (0, exc.text)
                klog(data, me, f"drbd {name}: Auto-promote failed: {ss[1]} ({ss[0]})")
                record(data, "auto-promote-failed", res=name, node=me, code=ss[0], text=ss[1])
        return None if n["role"] == "Primary" else "EROFS"
    if not opts["auto-promote"] and n["role"] != "Primary":
        return "EMEDIUMTYPE"
    if not has_quorum(res, me):
        return "ENODATA"
    if n["role"] != "Primary" and primary_peer_present(res, me):
        return "EMEDIUMTYPE"
    return None if data_accessible(res, me) else "EMEDIUMTYPE"


def after_close(data: Dict[str, Any], name: str, me: str) -> None:
    """drbd_release: the last writer gone on an auto-promoted Primary -> Secondary (auto-demote)."""
    res = data["resources"][name]
    n = res["nodes"][me]
    if (rw_opens(res, me) == 0 and node_options(res, me)["auto-promote"] and n["role"] == "Primary"
            and not n.get("explicit_primary")):
        set_role(data, name, me, "Secondary", "auto")


def do_open(data: Dict[str, Any], name: str, me: str, mode: str, who: str = "drbdsim") -> Optional[str]:
    """An open by ``who``: counted if allowed; the errno's name (recorded) if refused."""
    err = open_refusal(data, name, me, mode)
    res = data["resources"][name]
    if err is None:
        if who == "drbdsim":
            opens = res["nodes"][me].setdefault("opens", {"rw": 0, "ro": 0})
            opens[mode] = int(opens.get(mode, 0)) + 1
        record(data, "open", res=name, node=me, mode=mode, who=who)
        return None
    klog(data, me, f"drbd {name}: open ({mode}) by {who} failed: {err}")
    record(data, "open-refused", res=name, node=me, mode=mode, who=who, errno=err,
           role=res["nodes"][me]["role"], primary_peer=primary_peer_present(res, me))
    return err


def do_close(data: Dict[str, Any], name: str, me: str, mode: str, who: str = "drbdsim") -> None:
    res = need_up(data, name, me)
    if who == "drbdsim":
        opens = res["nodes"][me].setdefault("opens", {"rw": 0, "ro": 0})
        if int(opens.get(mode, 0)) <= 0:
            raise DrbdFailure(f"{name}: {me} has no {mode} open to close", 2)
        opens[mode] = int(opens[mode]) - 1
    record(data, "close", res=name, node=me, mode=mode, who=who)
    after_close(data, name, me)


def kernel_apply(data: Dict[str, Any], me: str, found: Dict[str, Dict[str, str]]) -> None:
    """What the kernel did for the opens a scan of this node found (``"PID:FD" -> mode`` per
    resource): new ones opened (a refusal is recorded, the descriptor kept as ``ro-refused``/
    ``rw-refused`` and not counted: a real kernel would have failed that open), gone ones closed."""
    for name, res in data["resources"].items():
        n = res["nodes"][me]
        if not n["up"]:
            continue
        seen = dict(n.get("seen") or {})
        now = found.get(name, {})
        for key in sorted(set(seen) - set(now)):
            mode = seen.pop(key)
            n["seen"] = seen
            if mode in ("ro", "rw"):
                do_close(data, name, me, mode, who=f"pid:fd {key}")
        for key in sorted(set(now) - set(seen)):
            mode = now[key]
            err = do_open(data, name, me, mode, who=f"pid:fd {key}")
            seen[key] = mode if err is None else mode + "-refused"
            n["seen"] = seen
        n["seen"] = seen


def yes_no(value: str) -> bool:
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    raise DrbdFailure(f"invalid yes/no value: {value}", 20)


# --------------------------------------------------------------------------- CLIs


VALUED = ("for", "interval", "target", "done")  # drbdsim options that may take their value as the next word


def _split(args: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    pos: List[str] = []
    opts: Dict[str, str] = {}
    args = list(args)
    while args:
        a = args.pop(0)
        if a.startswith("--"):
            k, eq, v = a[2:].partition("=")
            if not eq and k in VALUED and args and not args[0].startswith("-"):
                v = args.pop(0)
            opts[k] = v or "yes"
        elif a.startswith("-") and len(a) > 1:
            opts[a[1:]] = "yes"
        else:
            pos.append(a)
    return pos, opts


def _resources(data: Dict[str, Any], pos: Sequence[str]) -> List[str]:
    if not pos or pos[0] == "all":
        return sorted(data["resources"])
    for r in pos:
        get_res(data, r)
    return list(pos)


E_USAGE = 1  # drbdadm's exit code for a resource not in its configuration (drbd-utils shared_tool.h)


def _adm_resources(data: Dict[str, Any], pos: Sequence[str]) -> List[str]:
    """drbdadm's reading of its resource arguments: a name it does not know ends it with E_USAGE."""
    if not pos or pos[0] == "all":
        return sorted(data["resources"])
    for r in pos:
        if r not in data["resources"]:
            raise DrbdFailure(f"'{r}' not defined in your config (for this host).", E_USAGE)
    return list(pos)


def _minor_resource(data: Dict[str, Any], arg: str) -> str:
    """``minor-N`` -> the resource whose volume has minor N (drbdadm's ctx_by_minor)."""
    number = arg[len("minor-"):] if arg.startswith("minor-") else ""
    for name, res in data["resources"].items():
        if number.isdigit() and int(number) == res["minor"]:
            return str(name)
    raise DrbdFailure(f"'{arg}' not defined in your config (for this host).", E_USAGE)


def dump_xml84(data: Dict[str, Any], names: Sequence[str], wrapped: bool) -> str:
    """``drbdadm [-v] dump-xml`` as drbdadm-84 prints it (drbd-utils user/v84 adm_dump_xml)."""
    pad = "    " if wrapped else ""
    lines = ['<config file="/etc/drbd.conf">'] if wrapped else []
    for name in names:
        res = data["resources"][name]
        lines.append(f'{pad}<resource name="{name}" conf-file-line="/etc/drbd.d/{name}.res:1">')
        for node in sorted(res["nodes"], key=lambda h: res["nodes"][h]["node-id"]):
            n = res["nodes"][node]
            lines += [f'{pad}    <host name="{node}">',
                      f'{pad}        <volume vnr="{res["volume"]}">',
                      f'{pad}            <device minor="{res["minor"]}">/dev/drbd{res["minor"]}</device>',
                      f'{pad}            <disk>{res["backing"] or "/dev/null"}</disk>',
                      f"{pad}            <meta-disk>internal</meta-disk>",
                      f"{pad}        </volume>",
                      f'{pad}        <address family="ipv4" port="7789">{n["address"]}</address>',
                      f"{pad}    </host>"]
        two = "yes" if res["net"]["allow-two-primaries"] else "no"
        lines += [f'{pad}    <section name="net">',
                  f'{pad}        <option name="protocol" value="{res["net"]["protocol"]}"/>',
                  f'{pad}        <option name="allow-two-primaries" value="{two}"/>',
                  f"{pad}    </section>",
                  f"{pad}</resource>"]
    if wrapped:
        lines.append("</config>")
    return "\n".join(lines) + "\n"


def drbdadm(args: Sequence[str]) -> int:
    pos, opts = _split(args)
    if "version" in opts or (pos and pos[0] == "--version"):
        print("DRBDADM_BUILDTAG=livemig-lab\nDRBDADM_API_VERSION=2\nDRBD_KERNEL_VERSION=%s"
              % (VERSION_9 if _mode() == "9" else VERSION_84))
        return 0
    if not pos:
        sys.stderr.write("USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}\n")
        return 20
    cmd, pos = pos[0], pos[1:]
    me = local_node()
    write_cmds = ("up", "down", "primary", "secondary", "connect", "disconnect", "adjust", "net-options")
    try:
        with locked_store(cmd in write_cmds) as data:
            if cmd == "sh-resource":
                print(_minor_resource(data, pos[0] if pos else ""))
                return 0
            names = _adm_resources(data, pos)
            if cmd == "dump-xml":
                if data["mode"] == "9":
                    sys.stderr.write("lab simulator: dump-xml is simulated in 8.4 mode only\n")
                    return 20
                sys.stdout.write(dump_xml84(data, names, wrapped=not pos or pos[0] == "all"))
                return 0
            setup_cmd = {"primary": "primary", "secondary": "secondary", "down": "down"}.get(cmd, cmd)
            for name in names:
                obj = objname(data, name)
                try:
                    if cmd == "up":
                        do_up(data, name, me)
                    elif cmd == "adjust":
                        adjust(data, name, me)
                    elif cmd == "down":
                        do_down(data, name, me)
                    elif cmd == "primary":
                        do_primary(data, name, me, force="force" in opts)
                    elif cmd == "secondary":
                        do_secondary(data, name, me)
                    elif cmd in ("connect", "disconnect"):
                        do_connect(data, name, me, None, cmd == "connect")
                    elif cmd == "net-options":
                        adm_net_options(data, name, me, opts)
                    elif cmd == "role":
                        res = need_up(data, name, me)
                        role = res["nodes"][me]["role"]
                        if data["mode"] == "9":
                            print(role)
                        else:
                            print(f"{role}/{peer_role(res, me, peers(res, me)[0])}")
                    elif cmd == "cstate":
                        res = need_up(data, name, me)
                        for p in peers(res, me):
                            cs = cstate(res, me, p, data["mode"])
                            repl = replication(res, me, p)
                            print(repl if data["mode"] != "9" and repl in ("SyncSource", "SyncTarget") else cs)
                            if data["mode"] != "9":
                                break
                    elif cmd == "dstate":
                        res = need_up(data, name, me)
                        print(f"{disk_state(res, me)}/{peer_disk(res, me, peers(res, me)[0])}")
                    elif cmd == "status":
                        sys.stdout.write(status_text(data, me, [name]))
                    elif cmd == "sh-resources":
                        print(" ".join(names))
                        break
                    elif cmd == "sh-dev":
                        print(f"/dev/drbd{data['resources'][name]['minor']}")
                    elif cmd == "sh-minor":
                        print(data["resources"][name]["minor"])
                    else:
                        sys.stderr.write(f"Unknown command '{cmd}'.\n")
                        return 20
                except DrbdFailure as exc:
                    sys.stderr.write(exc.text + "\n")
                    if exc.code in (10, 11, 17) and "No such resource" not in exc.text:
                        tool = "drbdsetup" if data["mode"] == "9" else "drbdsetup-84"
                        sys.stderr.write(f"Command '{tool} {setup_cmd} {obj}' terminated with exit code {exc.code}\n")
                    exc.reported = True
                    raise
    except DrbdFailure as exc:
        if not exc.reported:
            sys.stderr.write(exc.text + "\n")
        return exc.code
    return 0


def _mode() -> str:
    try:
        with open(store_path()) as f:
            return str(json.load(f).get("mode", "9"))
    except (OSError, ValueError):
        return "9"


SETUP_WRITES = ("primary", "secondary", "down", "connect", "disconnect", "net-options", "resource-options")


def _peer_arg(data: Dict[str, Any], name: str, me: str, pos: Sequence[str]) -> Optional[str]:
    """The connection a drbdsetup command names by the peer's node id (``RES PEER_NODE_ID``)."""
    if len(pos) < 2:
        return None
    peer = peer_by_id(need_up(data, name, me), me, pos[1])
    if peer is None:
        raise DrbdFailure(f"{name}: Failure: ({ERR_INVALID_REQUEST[0]}) {ERR_INVALID_REQUEST[1]}\n"
                          "additional info from kernel:\nunknown connection", 10, ERR_INVALID_REQUEST)
    return peer


def drbdsetup(args: Sequence[str]) -> int:
    pos, opts = _split(args)
    if not pos:
        sys.stderr.write("USAGE: drbdsetup command {arguments} [options]\n")
        return 20
    cmd, pos = pos[0], pos[1:]
    me = local_node()
    try:
        with locked_store(cmd in SETUP_WRITES) as data:
            if data["mode"] != "9" and "json" in opts:
                sys.stderr.write("drbdsetup: unrecognized option '--json'\n")
                return 20
            if cmd == "status":
                names = _resources(data, pos)
                out = status_json(data, me, names) if "json" in opts else status_text(data, me, names)
                sys.stdout.write(out)
            elif cmd == "show":
                names = _resources(data, pos)
                show = show_json if "json" in opts else show_text
                sys.stdout.write(show(data, me, names, defaults="show-defaults" in opts))
            elif cmd == "primary":
                do_primary(data, pos[0], me, force="force" in opts)
            elif cmd == "secondary":
                do_secondary(data, pos[0], me)
            elif cmd == "down":
                do_down(data, pos[0], me)
            elif cmd in ("connect", "disconnect"):
                do_connect(data, pos[0], me, _peer_arg(data, pos[0], me, pos), cmd == "connect")
            elif cmd == "net-options":
                peer = _peer_arg(data, pos[0], me, pos)
                if peer is None:
                    sys.stderr.write("USAGE: net-options {resource} {peer_node_id} [options]\n")
                    return 20
                net_options(data, pos[0], me, peer, opts, "set-defaults" in opts)
            elif cmd == "resource-options":
                resource_options(data, pos[0], me, opts)
            elif cmd == "role":
                print(need_up(data, pos[0], me)["nodes"][me]["role"])
            else:
                sys.stderr.write(f"{cmd}: unknown command\n")
                return 20
    except DrbdFailure as exc:
        sys.stderr.write(exc.text + "\n")
        return exc.code
    return 0


KERNEL_MAX_S = 86400.0


def kernel_loop(opts: Dict[str, str]) -> int:
    """``drbdsim kernel``: this node's opens of its DRBD devices, as a poller of /proc sees them
    (run it inside the node: its PID namespace and private /proc show only its own processes)."""
    if "once" not in opts and "for" not in opts:
        raise DrbdFailure("drbdsim kernel: --once or --for SECONDS is required (the loop is bounded)", 2)
    duration = min(float(opts.get("for", 0)), KERNEL_MAX_S)
    interval = max(float(opts.get("interval", 0.2)), 0.01)
    me = local_node()
    end = time.monotonic() + duration
    while True:
        with locked_store(False) as data:
            watched = {name: (res, dict(res["nodes"][me].get("seen") or {}))
                       for name, res in data["resources"].items()
                       if res["nodes"].get(me, {}).get("up") and data.get("devices")}
        found = {name: scan_opens(name, res) for name, (res, _) in watched.items()}
        if any(set(found[name]) != set(seen) for name, (_, seen) in watched.items()):
            with locked_store(True) as data:
                kernel_apply(data, me, found)
        if "once" in opts or time.monotonic() >= end:
            return 0
        time.sleep(min(interval, max(end - time.monotonic(), 0.0)))


def drbdsim(args: Sequence[str]) -> int:
    pos, opts = _split(args)
    if not pos:
        sys.stderr.write(__doc__.split("Tests steer")[1])
        return 2
    cmd = pos[0]
    try:
        if cmd == "kernel":
            return kernel_loop(opts)
        if cmd == "record":
            for r in read_records(None, pos[1] if len(pos) > 1 else None):
                print(json.dumps(r, sort_keys=True))
            return 0
        with locked_store(cmd not in ("dump", "log")) as data:
            if cmd == "dump":
                data.pop("_records", None)
                print(json.dumps(data, indent=1))
            elif cmd == "log":
                for line in data.get("logs", {}).get(pos[1], []):
                    print(line)
            elif cmd == "mode":
                if pos[1] not in ("9", "8.4"):
                    raise DrbdFailure("mode must be 9 or 8.4", 2)
                data["mode"] = pos[1]
            elif cmd == "disk":
                if pos[3] not in DISK_STATES:
                    raise DrbdFailure(f"unknown disk state {pos[3]}", 2)
                data["resources"][pos[1]]["nodes"][pos[2]]["disk"] = pos[3]
                record(data, "disk", res=pos[1], node=pos[2], disk=pos[3])
            elif cmd == "config":
                set_config(data, pos[1], opts)
            elif cmd == "resync":
                data["resources"][pos[1]]["resync"] = {"target": opts["target"], "done": float(opts.get("done", 0))}
            elif cmd == "crash":
                crash(data, pos[1])
            elif cmd == "resync-done":
                res = data["resources"][pos[1]]
                if res.get("resync"):
                    res["nodes"][res["resync"]["target"]]["disk"] = "UpToDate"
                res["resync"] = None
            elif cmd == "link":
                if pos[4] not in ("up", "down"):
                    raise DrbdFailure("link RES A B up|down", 2)
                set_link(data, pos[1], pos[2], pos[3], pos[4] == "up")
            elif cmd == "fail-net-options":
                failing = [n for n in data.get("fail_net_options", []) if n != pos[1]]
                if yes_no(pos[2]):
                    failing.append(pos[1])
                data["fail_net_options"] = failing
            elif cmd == "adjust":
                try:
                    adjust(data, pos[2], pos[1])
                except DrbdFailure as exc:
                    exc.text += (f"\nCommand 'drbdsetup net-options {pos[2]} --set-defaults' terminated"
                                 f" with exit code {exc.code}")
                    raise
            elif cmd in ("open", "close"):
                node, name, mode = pos[1], pos[2], pos[3]
                if mode not in ("ro", "rw"):
                    raise DrbdFailure(f"{cmd} NODE RES ro|rw", 2)
                if cmd == "close":
                    do_close(data, name, node, mode)
                else:
                    err = do_open(data, name, node, mode)
                    if err is not None:
                        dev = dev_paths(name, data["resources"][name])[0]
                        raise DrbdFailure(f"{name}: open {dev} ({mode}) on {node}: {err} ({ERRNO_TEXT[err]})", 1)
            else:
                raise DrbdFailure(f"unknown drbdsim command {cmd}", 2)
    except DrbdFailure as exc:
        sys.stderr.write(exc.text + "\n")
        return exc.code
    except (KeyError, IndexError, ValueError) as exc:
        sys.stderr.write(f"drbdsim: bad arguments: {exc!r}\n")
        return 2
    return 0


def main(argv: Sequence[str]) -> int:
    tools = {"drbdadm": drbdadm, "drbdsetup": drbdsetup, "drbdsim": drbdsim}
    if len(argv) < 2 or argv[1] not in tools:
        sys.stderr.write("usage: drbdsim.py {drbdadm|drbdsetup|drbdsim} ARGS...\n")
        return 2
    return tools[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
