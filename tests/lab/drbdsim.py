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
connected pair.  The local node is ``LIVEMIG_LAB_NODE`` or the hostname.

Output formats are DRBD's: DRBD 9 ``drbdsetup status --json``, ``drbdsetup show --json``,
``drbdadm status``/``role``/``cstate``/``dstate``/``sh-minor``/``sh-resource``; in 8.4 mode
(``drbdsim mode 8.4``) ``role``/``dstate`` print ``local/peer``, ``drbdadm [-v] dump-xml``
prints the configuration as drbdadm-84 does, and a /proc/drbd-style text is kept up to date
in each node's ``LIVEMIG_PROC_DRBD`` file.  drbdadm refuses a resource it does not know as
drbdadm does: ``'RES' not defined in your config (for this host).``, exit 1.
DRBD's rules are enforced with its messages and exit codes (drbdsetup: ``<obj>: State change
failed: (<SS code>) <text>`` exit 11, or 17 for SS_NO_UP_TO_DATE_DISK; ``<obj>: Failure:
(<ERR code>) <text>`` exit 10; drbdadm adds ``Command 'drbdsetup ...' terminated with exit
code N``):

* a second Primary without allow-two-primaries: (-1) Multiple primaries not allowed by config;
* allow-two-primaries without protocol C: (139) Protocol C required;
* promoting without UpToDate data reachable: (-2) Need access to UpToDate data (exit 17);
* demoting (or downing) a device held open, e.g. by QEMU: (-12) Device is held open by someone;
* ``disconnect`` leaves the connection StandAlone until ``connect``/``adjust``/``up``.

Tests steer what a kernel would decide with the lab-only ``drbdsim`` command:
``drbdsim dump | mode 9|8.4 | disk RES NODE STATE | config RES [--protocol P]
[--allow-two-primaries yes|no] | resync RES --target NODE --done PCT | resync-done RES |
crash NODE``.
"""

import fcntl
import json
import os
import socket
import stat
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

DEFAULT_STORE = "/run/livemig-lab/shared/drbd/state.json"
VERSION_9 = "9.2.8"
VERSION_84 = "8.4.11-1"

DISK_STATES = ("Diskless", "Attaching", "Detaching", "Failed", "Negotiating", "Inconsistent",
               "Outdated", "DUnknown", "Consistent", "UpToDate")

SS_TWO_PRIMARIES = (-1, "Multiple primaries not allowed by config")
SS_NO_UP_TO_DATE_DISK = (-2, "Need access to UpToDate data")
SS_DEVICE_IN_USE = (-12, "Device is held open by someone")
ERR_NOT_PROTO_C = (139, "Protocol C required")
ERR_NEED_ALLOW_TWO_PRI = (164, "Can not clear allow_two_primaries as long as there a primaries on both sides")


class DrbdFailure(Exception):
    def __init__(self, text: str, code: int) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.reported = False  # already written to stderr


def store_path() -> str:
    return os.environ.get("LIVEMIG_DRBDSIM_STORE", DEFAULT_STORE)


def local_node() -> str:
    return os.environ.get("LIVEMIG_LAB_NODE") or socket.gethostname()


@contextmanager
def locked_store(write: bool) -> Iterator[Dict[str, Any]]:
    path = store_path()
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        with open(path) as f:
            data = json.load(f)
        yield data
        if write:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, path)
            write_proc_files(data)


def init_store(path: str, res: str, minor: int, backing: str, nodes: Sequence[Tuple[str, str]],
               proc_paths: Optional[Dict[str, str]] = None, devices: bool = True, mode: str = "9") -> None:
    """Create a store: one resource, all nodes down, disks UpToDate (an initial sync is done)."""
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
                "net": {"protocol": "C", "allow-two-primaries": True},
                "resync": None,
                "nodes": {
                    name: {"node-id": i, "address": addr, "up": False, "role": "Secondary",
                           "disk": "UpToDate", "connect": True}
                    for i, (name, addr) in enumerate(nodes)
                },
            }
        },
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    open(path + ".lock", "a").close()
    write_proc_files(data)


# --------------------------------------------------------------------------- derived state


def cstate(res: Dict[str, Any], me: str, peer: str, mode: str) -> str:
    """Connection state of ``me`` towards ``peer``."""
    a, b = res["nodes"][me], res["nodes"][peer]
    if not a["up"]:
        return "StandAlone"
    if not a["connect"]:
        return "StandAlone"
    if not (b["up"] and b["connect"]):
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
                "peer-disk-state": peer_disk(res, me, p), "peer-client": False,
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
                "client": False, "quorum": True, "size": res["size_kib"], "read": 0, "written": 0,
                "al-writes": 0, "bm-writes": 0, "upper-pending": 0, "lower-pending": 0,
            }],
            "connections": conns,
        })
    return json.dumps(out, indent=2) + "\n"


def show_json(data: Dict[str, Any], me: str, names: Sequence[str]) -> str:
    out = []
    for name in names:
        res = data["resources"][name]
        n = res["nodes"][me]
        if not n["up"]:
            continue
        conns = []
        for p in peers(res, me):
            if not n["connect"]:
                continue
            conns.append({
                "paths": [{"_this_host": "ipv4 {}:7789".format(n["address"]),
                           "_remote_host": "ipv4 {}:7789".format(res["nodes"][p]["address"])}],
                "_cstate": cstate(res, me, p, "9"),
                "net": {"protocol": res["net"]["protocol"],
                        "allow-two-primaries": bool(res["net"]["allow-two-primaries"]),
                        "_name": p},
                "volumes": [{"volume_nr": res["volume"], "disk": {}}],
                "_peer_node_id": res["nodes"][p]["node-id"],
            })
        out.append({
            "resource": name,
            "options": {"auto-promote": False},
            "_this_host": {
                "node-id": n["node-id"],
                "volumes": [{"volume_nr": res["volume"], "device_minor": res["minor"],
                             "backing-disk": res["backing"] or "/dev/null", "meta-disk": "internal",
                             "disk": {}}],
            },
            "connections": conns,
        })
    return json.dumps(out, indent=4) + "\n"


def status_text(data: Dict[str, Any], me: str, names: Sequence[str]) -> str:
    lines = []
    for name in names:
        res = data["resources"][name]
        n = res["nodes"][me]
        if not n["up"]:
            continue
        lines.append("{} role:{}".format(name, n["role"]))
        lines.append(f"  disk:{disk_state(res, me)}")
        for p in peers(res, me):
            cs = cstate(res, me, p, "9")
            if cs == "StandAlone":
                continue
            if cs != "Connected":
                lines.append(f"  {p} connection:{cs}")
                continue
            lines.append(f"  {p} role:{peer_role(res, me, p)}")
            repl = replication(res, me, p)
            extra = f" done:{done_pct(res):.2f}" if repl in ("SyncSource", "SyncTarget") else ""
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
        proto = " " if cs == "StandAlone" else res["net"]["protocol"]
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


def device_open(res_name: str, res: Dict[str, Any]) -> bool:
    """Is the device held open by a process of this node (e.g. QEMU)?"""
    dev, link = dev_paths(res_name, res)
    try:
        rdev = os.stat(dev).st_rdev
    except OSError:
        return False
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                target = os.readlink(os.path.join(fd_dir, fd))
                if target in (dev, link):
                    return True
                if target.startswith("/dev/"):
                    try:
                        st = os.stat(os.path.join(fd_dir, fd))
                        if stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev:
                            return True
                    except OSError:
                        pass
        except OSError:
            continue
    return False


# --------------------------------------------------------------------------- actions


def fail_state(obj: str, ss: Tuple[int, str]) -> DrbdFailure:
    code = 17 if ss == SS_NO_UP_TO_DATE_DISK else 11
    return DrbdFailure(f"{obj}: State change failed: ({ss[0]}) {ss[1]}", code)


def fail_config(obj: str, err: Tuple[int, str]) -> DrbdFailure:
    return DrbdFailure(f"{obj}: Failure: ({err[0]}) {err[1]}", 10)


def objname(data: Dict[str, Any], name: str) -> str:
    return name if data["mode"] == "9" else str(data["resources"][name]["minor"])


def get_res(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    if name not in data["resources"]:
        raise DrbdFailure(f"'{name}' not defined in your config (for this host).", 10)
    return data["resources"][name]


def need_up(data: Dict[str, Any], name: str, me: str) -> Dict[str, Any]:
    res = get_res(data, name)
    if not res["nodes"][me]["up"]:
        raise DrbdFailure(f"{name}: No such resource" if data["mode"] == "9"
                          else f"{objname(data, name)}: Failure: (127) Device minor not allocated", 10)
    return res


def do_up(data: Dict[str, Any], name: str, me: str) -> None:
    res = get_res(data, name)
    n = res["nodes"][me]
    n["up"] = True
    n["connect"] = True
    if data.get("devices"):
        create_device(name, res)


def do_down(data: Dict[str, Any], name: str, me: str) -> None:
    res = get_res(data, name)
    n = res["nodes"][me]
    if not n["up"]:
        return
    if n["role"] == "Primary" and data.get("devices") and device_open(name, res):
        raise fail_state(objname(data, name), SS_DEVICE_IN_USE)
    n["role"] = "Secondary"
    n["up"] = False
    if data.get("devices"):
        remove_device(name, res)


def do_primary(data: Dict[str, Any], name: str, me: str, force: bool) -> None:
    res = need_up(data, name, me)
    n = res["nodes"][me]
    if n["role"] == "Primary":
        return
    obj = objname(data, name)
    for p in peers(res, me):
        if connected(res, me, p) and res["nodes"][p]["role"] == "Primary" \
                and not res["net"]["allow-two-primaries"]:
            raise fail_state(obj, SS_TWO_PRIMARIES)
    if force:
        n["disk"] = "UpToDate"
        if res.get("resync") and res["resync"]["target"] == me:
            res["resync"] = None
    elif disk_state(res, me) != "UpToDate" and not any(
            connected(res, me, p) and disk_state(res, p) == "UpToDate" for p in peers(res, me)):
        raise fail_state(obj, SS_NO_UP_TO_DATE_DISK)
    n["role"] = "Primary"


def do_secondary(data: Dict[str, Any], name: str, me: str) -> None:
    res = need_up(data, name, me)
    n = res["nodes"][me]
    if n["role"] == "Secondary":
        return
    if data.get("devices") and device_open(name, res):
        raise fail_state(objname(data, name), SS_DEVICE_IN_USE)
    n["role"] = "Secondary"


def set_net(data: Dict[str, Any], name: str, protocol: Optional[str], two: Optional[bool]) -> None:
    res = get_res(data, name)
    new_proto = protocol or res["net"]["protocol"]
    new_two = res["net"]["allow-two-primaries"] if two is None else two
    if new_two and new_proto != "C":
        raise fail_config(name, ERR_NOT_PROTO_C)
    primaries = [x for x in res["nodes"] if res["nodes"][x]["role"] == "Primary" and res["nodes"][x]["up"]]
    if not new_two and len(primaries) > 1 and connected(res, primaries[0], primaries[1]):
        raise fail_config(name, ERR_NEED_ALLOW_TWO_PRI)
    res["net"]["protocol"] = new_proto
    res["net"]["allow-two-primaries"] = new_two


def yes_no(value: str) -> bool:
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    raise DrbdFailure(f"invalid yes/no value: {value}", 20)


# --------------------------------------------------------------------------- CLIs


def _split(args: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    pos: List[str] = []
    opts: Dict[str, str] = {}
    for a in args:
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
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
                    if cmd in ("up", "adjust"):
                        do_up(data, name, me)
                    elif cmd == "down":
                        do_down(data, name, me)
                    elif cmd == "primary":
                        do_primary(data, name, me, force="force" in opts)
                    elif cmd == "secondary":
                        do_secondary(data, name, me)
                    elif cmd == "connect":
                        need_up(data, name, me)["nodes"][me]["connect"] = True
                    elif cmd == "disconnect":
                        need_up(data, name, me)["nodes"][me]["connect"] = False
                    elif cmd == "net-options":
                        set_net(data, name, opts.get("protocol"),
                                yes_no(opts["allow-two-primaries"]) if "allow-two-primaries" in opts else None)
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


def drbdsetup(args: Sequence[str]) -> int:
    pos, opts = _split(args)
    if not pos:
        sys.stderr.write("USAGE: drbdsetup command {arguments} [options]\n")
        return 20
    cmd, pos = pos[0], pos[1:]
    me = local_node()
    try:
        with locked_store(cmd in ("primary", "secondary", "down", "connect", "disconnect")) as data:
            if data["mode"] != "9" and "json" in opts:
                sys.stderr.write("drbdsetup: unrecognized option '--json'\n")
                return 20
            if cmd == "status":
                names = _resources(data, pos)
                out = status_json(data, me, names) if "json" in opts else status_text(data, me, names)
                sys.stdout.write(out)
            elif cmd == "show":
                names = _resources(data, pos)
                if "json" not in opts:
                    sys.stderr.write("lab simulator: only 'show --json' is simulated\n")
                    return 20
                sys.stdout.write(show_json(data, me, names))
            elif cmd == "primary":
                do_primary(data, pos[0], me, force="force" in opts)
            elif cmd == "secondary":
                do_secondary(data, pos[0], me)
            elif cmd == "down":
                do_down(data, pos[0], me)
            elif cmd in ("connect", "disconnect"):
                need_up(data, pos[0], me)["nodes"][me]["connect"] = cmd == "connect"
            elif cmd == "role":
                print(need_up(data, pos[0], me)["nodes"][me]["role"])
            else:
                sys.stderr.write(f"{cmd}: unknown command\n")
                return 20
    except DrbdFailure as exc:
        sys.stderr.write(exc.text + "\n")
        return exc.code
    return 0


def drbdsim(args: Sequence[str]) -> int:
    pos, opts = _split(args)
    if not pos:
        sys.stderr.write(__doc__.split("Tests steer")[1])
        return 2
    cmd = pos[0]
    try:
        with locked_store(cmd != "dump") as data:
            if cmd == "dump":
                print(json.dumps(data, indent=1))
            elif cmd == "mode":
                if pos[1] not in ("9", "8.4"):
                    raise DrbdFailure("mode must be 9 or 8.4", 2)
                data["mode"] = pos[1]
            elif cmd == "disk":
                if pos[3] not in DISK_STATES:
                    raise DrbdFailure(f"unknown disk state {pos[3]}", 2)
                data["resources"][pos[1]]["nodes"][pos[2]]["disk"] = pos[3]
            elif cmd == "config":
                set_net(data, pos[1], opts.get("protocol"),
                        yes_no(opts["allow-two-primaries"]) if "allow-two-primaries" in opts else None)
            elif cmd == "resync":
                data["resources"][pos[1]]["resync"] = {"target": opts["target"], "done": float(opts.get("done", 0))}
            elif cmd == "crash":
                # The node lost power: its resources are gone (peers see the connection drop).
                for rname, res in data["resources"].items():
                    n = res["nodes"][pos[1]]
                    n["up"], n["role"] = False, "Secondary"
                    if data.get("devices") and pos[1] == local_node():
                        remove_device(rname, res)
            elif cmd == "resync-done":
                res = data["resources"][pos[1]]
                if res.get("resync"):
                    res["nodes"][res["resync"]["target"]]["disk"] = "UpToDate"
                res["resync"] = None
            else:
                raise DrbdFailure(f"unknown drbdsim command {cmd}", 2)
    except DrbdFailure as exc:
        sys.stderr.write(exc.text + "\n")
        return exc.code
    except (KeyError, IndexError) as exc:
        sys.stderr.write(f"drbdsim: bad arguments: {exc}\n")
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
