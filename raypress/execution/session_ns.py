"""Session side: the namespaces a session makes for itself inside the build's sandbox.

The fork server (already in the build's bubblewrap sandbox: no capabilities, an
unprivileged user, a loopback-only network) forks a child that

1. starts a new session and unshares a user, mount, PID and IPC namespace, then forks
   the session itself, PID 1 of the new PID namespace, moves it into the post's memory
   cgroup and waits for it, mirroring its exit (this intermediate exists because a
   process never enters the PID namespace it unshares). Moving a process between
   cgroups waits for the kernel (5-10 ms here), so the session does steps 2 and 3
   meanwhile, and runs nothing of the post's until the intermediate says it is in;
2. in the session: a fresh ``/proc`` (only the post's own processes), a private
   ``/tmp`` and ``/dev/shm`` (size-limited tmpfs, charged to the cgroup), the read-only
   folders that lived below ``/tmp`` shown again, the build's own writable folders
   (Ray's) made read-only but for its logs, the cgroup folder hidden, a fresh
   ``$HOME`` and working folder;
3. then forbids further user namespaces, moves into one last user namespace (so that
   nothing the snippet does can change those mounts: they are locked), drops every
   capability from every set and sets ``no_new_privs``.

When PID 1 of a namespace exits the kernel kills everything left in it, so daemons a
snippet started end with their post. Raises OSError when the machine refuses a step;
the fork server reports it instead of running the post unconfined.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
from pathlib import Path

from raypress.execution.protocol import SessionSandbox

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_NOATIME = 0x400
_MS_NODIRATIME = 0x800
_MS_RELATIME = 0x200000
_LOCKABLE = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC | _MS_NOATIME | _MS_NODIRATIME | _MS_RELATIME
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522


def enter(sandbox: SessionSandbox) -> None:
    """Make this child of the fork server a sandboxed session (see the module's note).

    Returns in the session; the intermediate process exits inside this call.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    os.setsid()
    _call(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    # opened before the session hides the cgroup folder in the mount namespace they share
    procs = (
        os.open(sandbox.cgroup_procs, os.O_WRONLY | os.O_CLOEXEC) if sandbox.cgroup_procs else None
    )
    uid, gid = os.getuid(), os.getgid()
    _unshare(libc, _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC)
    _map_ids(uid, gid)
    admitted, admit = os.pipe()
    session = os.fork()
    if session:
        os.close(admitted)
        _admit(session, procs, admit)
        _mirror(session)  # never returns
    os.close(admit)
    if procs is not None:
        os.close(procs)
    _call(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    _mount_views(libc, sandbox)
    _seal(libc, uid, gid)
    _await_admission(admitted)


def _admit(session: int, procs: int | None, admit: int) -> None:
    """The intermediate: move the session into the post's memory cgroup, then tell it
    to go on ("1"); on failure say why and close the pipe, which stops it."""
    try:
        if procs is not None:
            os.write(procs, str(session).encode())
        os.write(admit, b"1")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"the session could not join its memory cgroup: {exc}\n".encode())
    finally:
        os.close(admit)


def _await_admission(admitted: int) -> None:
    """The session: wait until it is in its memory cgroup (before any of the post's code)."""
    try:
        answer = os.read(admitted, 1)
    finally:
        os.close(admitted)
    if answer != b"1":
        raise OSError("the session was not moved into its memory cgroup")


def _mirror(pid: int) -> None:
    """The intermediate: hold nothing, wait for the session, end as it ended."""
    os.closerange(0, 1 << 20)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    status = 1
    with contextlib.suppress(ChildProcessError):
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        os._exit(128 + number)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _mount_views(libc: ctypes.CDLL, sandbox: SessionSandbox) -> None:
    """Step 2 of the module's note (in the new mount namespace, with its capabilities)."""
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
    keep = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in sandbox.keep]
    seeds = {path: _read(path) for path in sandbox.seed}
    _mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    size = f"size={max(sandbox.tmp_bytes, 1 << 20)}"
    _mount(libc, "tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=1777")
    for path, fd in keep:
        Path(path).mkdir(parents=True, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    for path, data in seeds.items():
        if data is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
    Path(sandbox.home).mkdir(parents=True, exist_ok=True)
    Path(sandbox.work).mkdir(parents=True, exist_ok=True)
    if Path("/dev/shm").is_dir():
        _mount(libc, "tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=1777")
    for pattern in sandbox.writable:
        if not any(char in pattern for char in "*?["):  # a folder of the post's own: made now
            Path(pattern).mkdir(parents=True, exist_ok=True)
    for folder in sandbox.read_only:
        if not Path(folder).is_dir():
            continue
        _mount(libc, folder, folder, None, _MS_BIND | _MS_REC)
        for pattern in sandbox.writable:
            for inner in sorted(Path("/").glob(pattern.lstrip("/"))):
                if inner.resolve() == inner and inner.is_dir() and inner.is_relative_to(folder):
                    _mount(libc, str(inner), str(inner), None, _MS_BIND)
        _remount_read_only(libc, folder)
    for folder in sandbox.hide:
        if Path(folder).is_dir():
            _mount(libc, "tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_RDONLY, "size=4k")


def _seal(libc: ctypes.CDLL, uid: int, gid: int) -> None:
    """Step 3 of the module's note."""
    with contextlib.suppress(OSError):  # no nested user namespaces from here on
        Path("/proc/sys/user/max_user_namespaces").write_text("1")
    _unshare(libc, _CLONE_NEWUSER)
    _map_ids(uid, gid)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _call(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
    _call(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl")
    header = struct.pack("Ii", _CAP_VERSION_3, 0)
    data = bytes(24)  # effective, permitted, inheritable: all empty, both 32-bit halves
    _call(libc.capset(header, data), "capset")
    _call(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _call(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _remount_read_only(libc: ctypes.CDLL, folder: str) -> None:
    """Make a bind mount read-only, keeping the flags the kernel locked on it."""
    flags = os.statvfs(folder).f_flag & _LOCKABLE
    _mount(libc, None, folder, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | flags)


def _map_ids(uid: int, gid: int) -> None:
    """Map the sandbox's user and group to themselves in a new user namespace.

    The fork server is not dumpable, which makes this process's /proc files root's;
    it is dumpable only while it writes its own maps.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    _call(libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    try:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    finally:
        _call(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _unshare(libc: ctypes.CDLL, flags: int) -> None:
    _call(libc.unshare(flags), "unshare")


def _mount(
    libc: ctypes.CDLL,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
) -> None:
    encoded = [None if v is None else os.fsencode(v) for v in (source, target, fstype, data)]
    result = libc.mount(encoded[0], encoded[1], encoded[2], ctypes.c_ulong(flags), encoded[3])
    _call(result, f"mount {target}")


def _call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
