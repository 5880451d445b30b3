"""A real libvirtd (+ virtlogd) for one test session, invisible to the host's configuration.

The daemons run in a private mount namespace (see ``mountns_holder.py``) where
/etc/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and
/run/libvirt are bind mounts of directories under ``/run/livemig-tests/<id>/``.
Only the socket directory is meant to be used from outside: the agent under
test connects with :attr:`LibvirtDaemon.uri`
(``qemu:///system?socket=/run/livemig-tests/<id>/sock/libvirt-sock``).

Nothing on the host is modified: no configuration file, no user or group (the
QEMU driver's ``libvirt-qemu`` user and ``kvm`` group are added to private
copies of /etc/passwd and /etc/group inside the namespace when the host lacks
them), no directory outside ``/run/livemig-tests`` (a missing mount point is
created in an overlay that exists only in the namespace). The QEMU capability
cache is kept in ``/var/cache/livemig-tests/libvirt`` so that only the first
session on a machine pays for the ~15 s capability probe.

:meth:`LibvirtDaemon.teardown` kills every process of the namespace (QEMU
included), which also drops its mounts, and removes the session directory.
A session whose owner died without tearing down is reaped by the next one.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterator, List, Optional

BASE = Path(os.environ.get("LIVEMIG_TEST_RUNDIR", "/run/livemig-tests"))
CAPS_CACHE = Path(os.environ.get("LIVEMIG_TEST_LIBVIRT_CACHE", "/var/cache/livemig-tests/libvirt"))
HOLDER = Path(__file__).resolve().parent / "mountns_holder.py"
SUBREAPER = Path(__file__).resolve().parent / "subreaper.py"
LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
SYSTEM_PYTHON = "/usr/bin/python3"
READY_TIMEOUT = float(os.environ.get("LIVEMIG_TEST_LIBVIRTD_TIMEOUT", "120"))

QEMU_CONF = """\
# livemig test session: QEMU as root, no security driver, no cgroups, no namespaces.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""


class LibvirtdError(RuntimeError):
    """The session's libvirtd could not be started, reached or stopped."""


def _proc_starttime(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _mnt_ns(pid: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pids_in_ns(ns: str) -> List[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(int(entry)) == ns:
            pids.append(int(entry))
    return pids


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: List[int], timeout: float) -> List[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _alive(p)]
    return left


def _kill_ns(ns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in the mount namespace ``ns`` and wait until they are gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in _pids_in_ns(ns) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids, max(0.0, deadline - time.monotonic()))
    left = _pids_in_ns(ns)
    if left:
        raise LibvirtdError(f"processes {left} of the test namespace survived SIGKILL")


def reap_stale_sessions(base: Path = BASE) -> List[str]:
    """Tear down sessions whose owning process is gone (a killed pytest, say)."""
    reaped: List[str] = []
    if not base.is_dir():
        return reaped
    for session in base.iterdir():
        info_file = session / "session.json"
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            continue
        owner, started = info.get("owner_pid"), info.get("owner_starttime")
        if owner and _proc_starttime(int(owner)) == started:
            continue  # its owner still runs
        ns = info.get("mnt_ns")
        # A namespace's inode number can be reused once it is gone: only kill what is
        # provably this session's (a process whose command line names its directory).
        if ns and ns != _mnt_ns(os.getpid()) and any(str(session) in _cmdline(p) for p in _pids_in_ns(ns)):
            _kill_ns(ns)
        shutil.rmtree(session, ignore_errors=True)
        reaped.append(session.name)
    with contextlib.suppress(OSError):
        base.rmdir()  # only if no session is left
    return reaped


class LibvirtDaemon:
    """One private libvirtd + virtlogd; see the module docstring."""

    def __init__(self, base: Path = BASE, session_id: Optional[str] = None) -> None:
        self.session_id = session_id or f"{os.getpid()}-{secrets.token_hex(3)}"
        self.dir = base / self.session_id
        self.sock_dir = self.dir / "sock"
        self.socket = self.sock_dir / "libvirt-sock"
        self.uri = f"qemu:///system?socket={self.socket}"
        self.etc_dir = self.dir / "etc"
        self.log_dir = self.dir / "log"
        self.lib_dir = self.dir / "lib"
        self.run_dir = self.dir / "run"
        self.base = base
        self.mnt_ns: Optional[str] = None
        self._holder: Optional[subprocess.Popen[str]] = None
        self._virtlogd: Optional[subprocess.Popen[bytes]] = None
        self._libvirtd: Optional[subprocess.Popen[bytes]] = None  # its subreaper, see start()
        self._libvirtd_pid: Optional[int] = None
        self._frozen = False
        self._conn: Any = None

    # ----- paths tests use -------------------------------------------------
    def qemu_log(self, domain: str) -> Path:
        """The QEMU log libvirt keeps for ``domain`` (holds 'shutting down, reason=...')."""
        return self.log_dir / "qemu" / f"{domain}.log"

    @property
    def libvirtd_log(self) -> Path:
        return self.log_dir / "libvirtd.log"

    @property
    def libvirtd_pid(self) -> Optional[int]:
        return self._libvirtd_pid if self._libvirtd and self._libvirtd.poll() is None else None

    # ----- lifecycle ---------------------------------------------------------
    def setup(self, timeout: float = READY_TIMEOUT) -> LibvirtDaemon:
        """Create the namespace, start virtlogd and libvirtd, wait until libvirtd answers."""
        reap_stale_sessions(self.base)
        try:
            self._prepare_dirs()
            self._start_holder()
            self._start_virtlogd()
            self.start(timeout)
        except BaseException:
            self.teardown()
            raise
        return self

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start libvirtd (again) in the namespace and wait until it answers on its socket."""
        if self.libvirtd_pid:
            return
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        # libvirt invalidates its QEMU capability cache when the host CPUID differs from the
        # cached one, and on some VMs each vCPU reports a slightly different CPUID: start
        # libvirtd on one fixed CPU so the cache stays valid, and unpin it once it is ready.
        cpu = str(min(os.sched_getaffinity(0)))
        pidfile = self.dir / "libvirtd.pid"
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        with open(self.log_dir / "libvirtd.stderr", "ab") as err:
            # Under a subreaper: see subreaper.py (libvirt waits for dead QEMUs to be reaped).
            self._libvirtd = self._in_ns(
                [SYSTEM_PYTHON, str(SUBREAPER), str(pidfile), "--",
                 "taskset", "-c", cpu, LIBVIRTD, "-f", str(self.etc_dir / "libvirtd.conf"),
                 "-p", "/run/libvirt/livemig-libvirtd.pid"],
                stderr=err,
            )
        self._frozen = False
        self._libvirtd_pid = self._await_pidfile(pidfile, self._libvirtd)
        self._await_ready(timeout)
        self._unpin(self._libvirtd_pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop libvirtd (SIGTERM, SIGKILL after ``timeout``); its QEMU processes keep running."""
        self._close_conn()
        proc = self._libvirtd
        if proc is None or proc.poll() is not None:
            return
        if self._frozen:
            self.thaw()
        proc.terminate()  # the subreaper passes SIGTERM on and exits with libvirtd
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if self._libvirtd_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._libvirtd_pid, signal.SIGKILL)
            proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP libvirtd: its socket still accepts connections, nothing answers."""
        pid = self.libvirtd_pid
        if pid is None:
            raise LibvirtdError("libvirtd is not running: nothing to freeze")
        os.kill(pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        pid = self.libvirtd_pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self._frozen = False

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def teardown(self) -> None:
        """Kill everything the session started, drop its namespace, remove its directory."""
        self._close_conn()
        if self._frozen:
            self.thaw()
        if self.libvirtd_pid is not None:
            # Keep libvirtd from restarting anything while QEMU dies.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.libvirtd_pid, signal.SIGKILL)
        if self.mnt_ns:
            _kill_ns(self.mnt_ns)
        for proc in (self._libvirtd, self._virtlogd, self._holder):
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait(5)
        if self._holder is not None and self._holder.stdin:
            with contextlib.suppress(OSError):
                self._holder.stdin.close()
        self._libvirtd = self._virtlogd = self._holder = None
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.base.rmdir()  # only if no other session uses it

    # ----- helpers for tests -----------------------------------------------
    def connect(self) -> Any:
        """A libvirt connection of the test itself (not for use while frozen)."""
        import libvirt

        if self._conn is None:
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            self._conn = libvirt.open(self.uri)
        return self._conn

    def qemu_pids(self) -> List[int]:
        """PIDs of the QEMU processes running in this session's namespace."""
        if not self.mnt_ns:
            return []
        return [p for p in _pids_in_ns(self.mnt_ns) if _comm(p).startswith("qemu-system")]

    def qemu_pid(self, domain: str) -> Optional[int]:
        """The PID of ``domain``'s QEMU, from its command line (works while libvirtd is frozen)."""
        wanted = f"guest={domain},".encode()
        wanted_end = f"guest={domain}".encode()
        for pid in self.qemu_pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            for arg in args:
                if arg.startswith(wanted) or arg == wanted_end:
                    return pid
        return None

    # ----- internals ---------------------------------------------------------
    def _prepare_dirs(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.dir.mkdir(mode=0o755)
        for d in (self.sock_dir, self.etc_dir, self.log_dir, self.lib_dir, self.run_dir,
                  self.dir / "scratch", self.log_dir / "qemu"):
            d.mkdir(parents=True, exist_ok=True)
        CAPS_CACHE.mkdir(parents=True, exist_ok=True)
        (self.etc_dir / "qemu.conf").write_text(QEMU_CONF)
        (self.etc_dir / "libvirtd.conf").write_text(
            "# livemig test session\n"
            f'unix_sock_dir = "{self.sock_dir}"\n'
            'unix_sock_rw_perms = "0700"\n'
            'unix_sock_ro_perms = "0700"\n'
            'unix_sock_admin_perms = "0700"\n'
            'auth_unix_rw = "none"\n'
            'auth_unix_ro = "none"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
        )
        (self.etc_dir / "virtlogd.conf").write_text('log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n')
        info = {
            "owner_pid": os.getpid(),
            "owner_starttime": _proc_starttime(os.getpid()),
            "uri": self.uri,
        }
        (self.dir / "session.json").write_text(json.dumps(info))

    def _identity_binds(self) -> List[List[str]]:
        """Private /etc/passwd and /etc/group holding what the QEMU driver insists on.

        It resolves the user ``libvirt-qemu``, its group ``libvirt-qemu`` and the group
        ``kvm`` at start-up; a host without libvirt-daemon-system lacks them. They are
        added to copies bind-mounted in the namespace only, the host stays untouched.
        """
        binds: List[List[str]] = []
        groups_missing = [g for g in ("kvm", "libvirt-qemu") if not _has_group(g)]
        try:
            user: Optional[pwd.struct_passwd] = pwd.getpwnam("libvirt-qemu")
        except KeyError:
            user = None
        used_ids = {g.gr_gid for g in grp.getgrall()} | {p.pw_uid for p in pwd.getpwall()}
        free_ids = (i for i in range(999, 100, -1) if i not in used_ids)
        qemu_id = user.pw_gid if user else next(free_ids)
        if groups_missing:
            lines = Path("/etc/group").read_text().rstrip("\n").splitlines()
            for name in groups_missing:
                gid = qemu_id if name == "libvirt-qemu" else next(free_ids)
                lines.append(f"{name}:x:{gid}:")
            (self.etc_dir / "group").write_text("\n".join(lines) + "\n")
            binds.append([str(self.etc_dir / "group"), "/etc/group"])
        if user is None:
            lines = Path("/etc/passwd").read_text().rstrip("\n").splitlines()
            lines.append(f"libvirt-qemu:x:{qemu_id}:{qemu_id}:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin")
            (self.etc_dir / "passwd").write_text("\n".join(lines) + "\n")
            binds.append([str(self.etc_dir / "passwd"), "/etc/passwd"])
        return binds

    def _start_holder(self) -> None:
        binds = [
            [str(self.etc_dir), "/etc/libvirt"],
            [str(self.lib_dir), "/var/lib/libvirt"],
            [str(self.log_dir), "/var/log/libvirt"],
            [str(self.run_dir), "/run/libvirt"],
            [str(CAPS_CACHE), "/var/cache/libvirt"],
        ] + self._identity_binds()
        plan = {"scratch": str(self.dir / "scratch"), "binds": binds, "keep_visible": [str(self.dir)]}
        plan_file = self.dir / "mountns.json"
        plan_file.write_text(json.dumps(plan, indent=1))
        self._holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", SYSTEM_PYTHON, str(HOLDER), str(plan_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self._holder.stdout is not None
        line = self._readline(self._holder.stdout, 30.0)
        if not line.startswith("ready"):
            rest = ""
            with contextlib.suppress(subprocess.TimeoutExpired):
                rest = self._holder.communicate(timeout=2)[0] or ""
            raise LibvirtdError(f"cannot set up the private mount namespace: {line}{rest}".strip())
        self.mnt_ns = _mnt_ns(self._holder.pid)
        if not self.mnt_ns or self.mnt_ns == _mnt_ns(os.getpid()):
            raise LibvirtdError("unshare did not create a new mount namespace")
        info = json.loads((self.dir / "session.json").read_text())
        info["mnt_ns"] = self.mnt_ns
        (self.dir / "session.json").write_text(json.dumps(info))

    @staticmethod
    def _readline(stream: IO[str], timeout: float) -> str:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(stream, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return "(no answer from the namespace holder)"
        finally:
            sel.close()
        return stream.readline().strip()

    def _in_ns(self, argv: List[str], stderr: Any) -> subprocess.Popen[bytes]:
        assert self._holder is not None
        # nsenter with only -m execs the program itself: the Popen is the daemon.
        return subprocess.Popen(
            ["nsenter", "-t", str(self._holder.pid), "-m", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
        )

    def _start_virtlogd(self) -> None:
        with open(self.log_dir / "virtlogd.stderr", "ab") as err:
            self._virtlogd = self._in_ns(
                [VIRTLOGD, "-f", str(self.etc_dir / "virtlogd.conf"), "-p", "/run/libvirt/livemig-virtlogd.pid"],
                stderr=err,
            )
        sock = self.run_dir / "virtlogd-sock"
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self._virtlogd.poll() is not None:
                code = self._virtlogd.returncode
                raise LibvirtdError(f"virtlogd exited with {code}: {self._tail('virtlogd.stderr')}")
            if time.monotonic() > deadline:
                raise LibvirtdError("virtlogd did not create its socket within 30s")
            time.sleep(0.02)

    def _await_ready(self, timeout: float) -> None:
        """Bounded poll: the socket appears, then a client call succeeds (QEMU caps probe may take ~15 s)."""
        assert self._libvirtd is not None
        deadline = time.monotonic() + timeout
        last = "socket not created"
        while True:
            if self._libvirtd.poll() is not None:
                raise LibvirtdError(
                    f"libvirtd exited with {self._libvirtd.returncode}: {self._tail('libvirtd.stderr')}"
                    f" {self._tail('libvirtd.log')}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LibvirtdError(f"libvirtd did not answer on {self.socket} within {timeout:.0f}s: {last}")
            if self.socket.exists():
                try:
                    probe = subprocess.run(
                        # 'capabilities' also waits for the QEMU capability probe.
                        ["virsh", "-q", "-c", self.uri, "capabilities"], stdin=subprocess.DEVNULL,
                        capture_output=True, timeout=remaining, check=False,
                    )
                except subprocess.TimeoutExpired:
                    continue
                if probe.returncode == 0:
                    return
                last = probe.stderr.decode(errors="replace").strip()
            time.sleep(0.05)

    @staticmethod
    def _await_pidfile(pidfile: Path, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return int(pidfile.read_text())
            except (FileNotFoundError, ValueError):
                pass
            if proc.poll() is not None:
                raise LibvirtdError(f"libvirtd's subreaper exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise LibvirtdError(f"libvirtd's subreaper wrote no {pidfile} within {timeout:.0f}s")
            time.sleep(0.01)

    @staticmethod
    def _unpin(pid: int) -> None:
        cpus = os.sched_getaffinity(0)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return
        for tid in tasks:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)

    def _tail(self, name: str, lines: int = 5) -> str:
        try:
            return " | ".join((self.log_dir / name).read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def _close_conn(self) -> None:
        if self._conn is not None and not self._frozen:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


def main() -> int:
    """Manual use: start a session daemon, print its URI, wait for Enter, tear down."""
    daemon = LibvirtDaemon()
    started = time.monotonic()
    daemon.setup()
    print(f"libvirtd ready in {time.monotonic() - started:.1f}s: {daemon.uri}", flush=True)
    try:
        sys.stdin.readline()
    finally:
        daemon.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
