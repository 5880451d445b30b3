#!/usr/bin/python3
"""Debian root file systems for the test tiers, and a way to run a command inside one.

    distroot.py path debian13                 # the cached root (built if missing or stale), printed
    distroot.py build debian12-ci --dest DIR  # a fresh root in DIR (CI: never a cached one)
    distroot.py run debian13 --overlay --bind /work/livemig -- python3 -m pytest tests/unit
    distroot.py run --root DIR --cwd /root/livemig -- make test

A root is built with mmdebstrap from Debian's archive (``--variant=minbase`` plus the packages of
its spec in :data:`SPECS`). A cached root lives in ``<cache>/roots/<name>-<key>/root``, where the
key hashes the spec (suite, packages, mmdebstrap's version, the certificates copied in): change
the package list and the next ``path`` builds a new root and removes the old one. Downloaded
packages are kept in ``<cache>/debs/<suite>/`` (mmdebstrap's sync-in/sync-out hooks), so a rebuild
downloads only what changed; nothing else is kept between builds.

``run`` enters private mount, PID, IPC and UTS namespaces (``unshare``), builds the view there
(a fresh /proc, the host's /dev and /sys with a private /dev/shm and /dev/pts, tmpfs /run and
/tmp, the host's resolv.conf, the bind mounts asked for) and ``pivot_root``s into the root (not a
chroot: ``nsenter -m`` into the namespace lands in the root, and the old root is unmounted). It
stays PID 1 there, reaping orphans; when the command ends every process left in the namespace is
killed with it. ``--overlay`` puts a tmpfs overlay over the root, so a cached root is never
written. The network namespace is the host's: the lab makes its own namespaces, and ``make test``
in the CI root installs from the package registries.

The one lab lock (``/run/lock/livemig-lab.lock``) is bound into the root's /run, so a lab inside
the root and one outside take turns. Root only. Standard library only: it runs on the host's
python3 before anything is installed.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

CACHE = Path(os.environ.get("LIVEMIG_ROOTS_CACHE", "/var/cache/livemig-tests"))
LAB_LOCK = "/run/lock/livemig-lab.lock"
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
NEW_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables of the caller's environment that reach the command inside: how this machine reaches
# the package registries (proxy, certificate bundle), nothing else.
PASS_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
            "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE", "TERM", "CI")
BUILD_TIMEOUT = 1800

# What each root holds. Everything the tests run there comes from the distribution.
SPECS: Dict[str, Dict[str, object]] = {
    # CI: a fresh Debian 12 as a new user has it, plus what the README says comes first.
    "debian12-ci": {"suite": "bookworm", "packages": ["make", "git", "ca-certificates"]},
    # RHEL 9's floors and below: Python 3.9.2, lxml 4.6.3, libvirt-python 7.0.0, setuptools 52.
    # (The meta-data schemas come from the host: Debian 11's resource-agents 4.7 metadata.rng
    # predates the `version` attribute; docs/testing.md.)
    "debian11": {"suite": "bullseye", "packages": [
        "python3", "python3-libvirt", "python3-lxml", "python3-pytest", "python3-pytest-timeout",
        "python3-hypothesis", "python3-setuptools", "python3-wheel",
        "qemu-utils"]},  # qemu-img, qemu-io: the unit tests of agents/virtualdomain/images.py
    # Debian 13: Python 3.13, lxml 5.4, libvirt 11.3, Pacemaker 3.0, crmsh 5, pcs 0.12, QEMU 10.
    # Also the lower layer of the lab's nodes (tests/lab, LIVEMIG_LAB_ROOT).
    "debian13": {"suite": "trixie", "packages": [
        "python3", "python3-libvirt", "python3-lxml", "python3-pytest", "python3-pytest-timeout",
        "python3-hypothesis",
        "pacemaker", "pacemaker-cli-utils", "corosync", "crmsh", "pcs", "resource-agents", "cluster-glue",
        "libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-clients", "qemu-system-x86", "qemu-utils",
        "libxml2-utils", "iproute2", "procps", "util-linux", "kmod", "strace",
        "drbd-utils"]},  # ocf:linbit:drbd, which `livemig config` names
}


class RootError(RuntimeError):
    pass


def log(msg: str) -> None:
    sys.stderr.write(f"distroot: {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- building


def _local_cas() -> List[Path]:
    return sorted(p for p in LOCAL_CAS.glob("*.crt") if p.is_file()) if LOCAL_CAS.is_dir() else []


def spec_key(name: str) -> str:
    spec = SPECS[name]
    h = hashlib.sha256()
    h.update(json.dumps({"name": name, **spec}, sort_keys=True).encode())
    h.update(_mmdebstrap_version().encode())
    for ca in _local_cas():
        h.update(ca.name.encode() + b"\0" + ca.read_bytes())
    h.update(b"hooks-v1")  # the hooks below: bump when they change what a root holds
    return h.hexdigest()[:12]


def _mmdebstrap_version() -> str:
    exe = shutil.which("mmdebstrap")
    if not exe:
        raise RootError("mmdebstrap is not installed (apt-get install mmdebstrap; `make deps` does)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, check=False)
    return out.stdout.strip()


def mmdebstrap(name: str, dest: Path) -> None:
    """Build the root ``name`` into ``dest`` (which must not exist), packages from the deb cache."""
    spec = SPECS[name]
    suite = str(spec["suite"])
    debs = CACHE / "debs" / suite
    debs.mkdir(parents=True, exist_ok=True)
    argv = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
            "--include=" + ",".join(spec["packages"]),  # type: ignore[arg-type]
            # Keep what was downloaded: copied in before, back out after (the debs cache).
            "--skip=essential/unlink",
            f"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/ && cp -a {debs}/. \"$1\"/var/cache/apt/archives/",
            f"--customize-hook=sync-out /var/cache/apt/archives {debs}"]
    cas = _local_cas()
    if cas and "ca-certificates" in spec["packages"]:  # type: ignore[operator]
        # This machine reaches the registries through its own certificate authorities.
        argv += ["--customize-hook=mkdir -p \"$1\"/usr/local/share/ca-certificates",
                 "--customize-hook=copy-in " + " ".join(str(c) for c in cas) + " /usr/local/share/ca-certificates/",
                 "--customize-hook=chroot \"$1\" update-ca-certificates --fresh >/dev/null"]
    # ocf-tester runs the agent as nobody: keep /root as Debian has it (0700) so that the tests
    # prove they cope; nothing else is changed.
    argv += [suite, str(dest)]
    log(f"building {name} ({suite}) in {dest}")
    t0 = time.monotonic()
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT, check=False)
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-25:])
        raise RootError(f"mmdebstrap {name} failed (exit {res.returncode}):\n{tail}")
    # Downloaded packages now live in the cache only.
    for deb in (dest / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    # A package left out of the debs cache by a newer version: drop the old one.
    _prune_debs(debs)
    log(f"built {name} in {time.monotonic() - t0:.0f}s")


def _prune_debs(debs: Path) -> None:
    newest: Dict[Tuple[str, str], Tuple[float, Path]] = {}
    for deb in debs.glob("*.deb"):
        parts = deb.name[:-4].split("_")
        if len(parts) != 3:
            continue
        key = (parts[0], parts[2])
        mtime = deb.stat().st_mtime
        old = newest.get(key)
        if old is None:
            newest[key] = (mtime, deb)
        elif mtime > old[0]:
            old[1].unlink()
            newest[key] = (mtime, deb)
        else:
            deb.unlink()


def cached_root(name: str) -> Path:
    """The cached root of spec ``name``, built now if missing or if its spec changed."""
    if name not in SPECS:
        raise RootError(f"unknown root {name!r} (known: {', '.join(sorted(SPECS))})")
    roots = CACHE / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    key = spec_key(name)
    final = roots / f"{name}-{key}"
    with open(roots / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "ready").exists():
            tmp = roots / f".{name}-{key}.build"
            _remove_tree(tmp)
            tmp.mkdir()
            (tmp / "mnt").mkdir()
            mmdebstrap(name, tmp / "root")
            (tmp / "spec.json").write_text(json.dumps({"name": name, "key": key, **SPECS[name]}, indent=1))
            (tmp / "ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
            _remove_tree(final)
            tmp.rename(final)
        for old in roots.glob(f"{name}-*"):
            if old != final and old.is_dir():
                log(f"removing the stale root {old}")
                _remove_tree(old)
    return final / "root"


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split()[4] == str(path) or line.split()[4].startswith(str(path) + "/")]
    if mounted:
        raise RootError(f"refusing to remove {path}: mounts inside it: {mounted[:3]}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True, timeout=600)


# --------------------------------------------------------------------------- running


_libc = ctypes.CDLL(None, use_errno=True)
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
MNT_DETACH = 2


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RootError(f"mount {' '.join(args)}: {res.stderr.strip()}")


def _mountpoint(path: Path, like: Path) -> None:
    """Create ``path`` as a mount point for ``like`` (a directory or an empty file)."""
    if path.is_symlink():
        path.unlink()
    if like.is_dir():
        path.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def _pivot_root(new: str) -> None:
    if SYS_PIVOT_ROOT is None:
        raise RootError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    os.chdir(new)
    if _libc.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:
        err = ctypes.get_errno()
        raise RootError(f"pivot_root({new}): {os.strerror(err)}")
    # The old root is now stacked on top of the new one at "/": detach it.
    if _libc.umount2(b".", MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise RootError(f"umount of the old root: {os.strerror(err)}")
    os.chdir("/")


def enter(cfg: Dict[str, object]) -> int:
    """PID 1 of the new namespaces: build the view, pivot_root, run the command, reap."""
    root = Path(str(cfg["root"]))
    socket.sethostname(str(cfg["hostname"]))
    _mount("--make-rprivate", "/")
    if cfg["overlay"]:
        scratch = Path(str(cfg["scratch"]))
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(scratch))
        for d in ("upper", "work", "new"):
            (scratch / d).mkdir()
        _mount("-t", "overlay", "overlay", "-o",
               f"lowerdir={root},upperdir={scratch}/upper,workdir={scratch}/work", str(scratch / "new"))
        new = scratch / "new"
    else:
        _mount("--bind", str(root), str(root))
        new = root
    _mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(new / "proc"))
    _mount("--rbind", "/sys", str(new / "sys"))
    _mount("--rbind", "/dev", str(new / "dev"))
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", str(new / "dev/shm"))
    (new / "dev/pts").mkdir(exist_ok=True)
    _mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620,gid=5", "devpts", str(new / "dev/pts"))
    _mount("--bind", str(new / "dev/pts/ptmx"), str(new / "dev/ptmx"))
    if (new / "dev/mqueue").is_dir():
        _mount("-t", "mqueue", "mqueue", str(new / "dev/mqueue"))
    _mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", str(new / "run"))
    (new / "run/lock").mkdir(mode=0o1777)
    os.chmod(str(new / "run/lock"), 0o1777)
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", str(new / "tmp"))
    if Path("/etc/resolv.conf").exists():
        resolv = new / "etc/resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
    binds = [tuple(b) for b in cfg["binds"]]  # type: ignore[attr-defined]
    if cfg["lab_lock"]:
        Path(LAB_LOCK).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(LAB_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        os.close(fd)
        binds.append((LAB_LOCK, LAB_LOCK, False))
    for src, dst, readonly in binds:
        target = new / str(dst).lstrip("/")
        _mountpoint(target, Path(str(src)))
        _mount("--bind", str(src), str(target))
        if readonly:
            _mount("-o", "remount,bind,ro", str(target))
    _pivot_root(str(new))
    env = dict(cfg["env"])  # type: ignore[call-overload]
    cwd = str(cfg["cwd"])
    try:
        child = subprocess.Popen(list(cfg["argv"]), env=env, cwd=cwd)  # type: ignore[call-overload]
    except OSError as exc:
        sys.stderr.write(f"distroot: cannot run {cfg['argv']}: {exc}\n")
        return 127

    def forward(signum: int, frame: object) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    status = 1
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(wstatus) if hasattr(os, "waitstatus_to_exitcode") \
                else (wstatus >> 8)
            if status < 0:
                status = 128 - status
            break
    # What the command left running dies with this PID 1.
    return status


def run_in_root(root: Path, argv: Sequence[str], *, overlay: bool, binds: List[Tuple[str, str, bool]],
                env: Dict[str, str], cwd: str, hostname: str, lab_lock: bool,
                scratch: Optional[Path]) -> int:
    if os.geteuid() != 0:
        raise RootError("must run as root (namespaces, mounts, pivot_root)")
    for d in ("proc", "sys", "dev", "run", "tmp", "etc"):
        if not (root / d).is_dir():
            raise RootError(f"{root} does not look like a root file system (no /{d})")
    full_env = {"PATH": NEW_PATH, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    full_env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
    full_env.update(env)
    tmpdir = None
    if overlay and scratch is None:
        tmpdir = tempfile.mkdtemp(prefix="livemig-distroot-")
        scratch = Path(tmpdir)
    cfg = {"root": str(root), "overlay": overlay, "scratch": str(scratch) if scratch else "",
           "binds": [list(b) for b in binds], "env": full_env, "cwd": cwd, "argv": list(argv),
           "hostname": hostname, "lab_lock": lab_lock}
    try:
        proc = subprocess.run(
            ["unshare", "--mount", "--pid", "--ipc", "--uts", "--fork", "--propagation", "private",
             sys.executable, "-B", os.path.abspath(__file__), "_enter", json.dumps(cfg)],
            check=False)
        return proc.returncode
    finally:
        if tmpdir:
            os.rmdir(tmpdir)


def parse_bind(text: str, readonly: bool) -> Tuple[str, str, bool]:
    src, _, dst = text.partition(":")
    src = os.path.abspath(src)
    if not os.path.exists(src):
        raise RootError(f"--bind {text}: {src} does not exist")
    return (src, dst or src, readonly)


def main(argv: Optional[List[str]] = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["_enter"]:
        try:
            return enter(json.loads(args_in[1]))
        except (RootError, OSError) as exc:
            sys.stderr.write(f"distroot: {exc}\n")
            return 125
    parser = argparse.ArgumentParser(prog="distroot.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_path = sub.add_parser("path", help="print the cached root of NAME, building it if needed")
    p_path.add_argument("name", choices=sorted(SPECS))
    p_build = sub.add_parser("build", help="build a root")
    p_build.add_argument("name", choices=sorted(SPECS))
    p_build.add_argument("--dest", type=Path, help="a fresh root in this (new) directory, not the cache")
    p_run = sub.add_parser("run", help="run a command inside a root (private namespaces, pivot_root)")
    p_run.add_argument("name", nargs="?", choices=sorted(SPECS), help="a cached root (built if needed)")
    p_run.add_argument("--root", type=Path, help="this root directory instead of a cached one")
    p_run.add_argument("--overlay", action="store_true", help="write to a tmpfs overlay, never the root")
    p_run.add_argument("--bind", action="append", default=[], metavar="SRC[:DST]")
    p_run.add_argument("--ro-bind", action="append", default=[], metavar="SRC[:DST]")
    p_run.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    p_run.add_argument("--cwd", default="/")
    p_run.add_argument("--hostname", default="")
    p_run.add_argument("--lab-lock", action="store_true", help=f"share the host's {LAB_LOCK}")
    command: List[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, command = args_in[:cut], args_in[cut + 1:]
    args = parser.parse_args(args_in)
    try:
        if args.cmd == "path":
            print(cached_root(args.name))
            return 0
        if args.cmd == "build":
            if args.dest:
                if args.dest.exists():
                    raise RootError(f"{args.dest} exists")
                mmdebstrap(args.name, args.dest)
                print(args.dest)
            else:
                print(cached_root(args.name))
            return 0
        if not command:
            parser.error("run: no command (distroot.py run ... -- COMMAND ARGS)")
        if bool(args.root) == bool(args.name):
            parser.error("run: give a root NAME or --root DIR")
        root = args.root.resolve() if args.root else cached_root(args.name)
        scratch = root.parent / "mnt" if args.name else None
        binds = [parse_bind(b, False) for b in args.bind] + [parse_bind(b, True) for b in args.ro_bind]
        env = {}
        for item in args.env:
            k, sep, v = item.partition("=")
            if not sep:
                parser.error(f"--env {item}: NAME=VALUE")
            env[k] = v
        return run_in_root(root, command, overlay=args.overlay or bool(args.name), binds=binds, env=env,
                           cwd=args.cwd, hostname=args.hostname or (args.name or "livemig-ci"),
                           lab_lock=args.lab_lock, scratch=scratch)
    except RootError as exc:
        log(f"error: {exc}")
        return 1
    except subprocess.TimeoutExpired as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
