"""Session side: turn a freshly forked child of the fork server into a clean session.

New session and process group, default signal handlers, stdin from /dev/null, stdout
and stderr on the build's capture pipes, only the descriptors it needs, a memory
ceiling (RLIMIT_DATA: unlike RLIMIT_AS it ignores Ray's shared object store mapping;
in the sandbox the session's memory cgroup also counts shared and mapped memory), no
core dumps, the allow-listed environment, a fresh working directory linking the post's
files, and death with the fork server. Outside the sandbox (reduced isolation) it also
makes a read-only view of the post's folder where mount namespaces are allowed; in it,
``session_ns`` has already made the session's namespaces.
"""

from __future__ import annotations

import ctypes
import io
import os
import resource
import signal
import sys
from pathlib import Path

from raypress.execution.protocol import SessionPlan

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_PDEATHSIG = 1
_RESET_SIGNALS = ("SIGCHLD", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")


def enter(plan: SessionPlan, channel_fd: int, out_fd: int, err_fd: int) -> int:
    """Set the process up; returns the channel's (possibly moved) descriptor."""
    if plan.sandbox is None:
        os.setsid()
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.set_wakeup_fd(-1)
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((devnull, 0), (out_fd, 1), (err_fd, 2)):
        os.dup2(source, target)
    channel = os.dup(channel_fd) if channel_fd < 3 else channel_fd
    os.closerange(3, channel)
    os.closerange(channel + 1, 1 << 20)
    os.set_inheritable(channel, False)
    _limit_resources(plan.memory_limit_bytes)
    os.environ.clear()
    os.environ.update(dict(plan.env))
    for folder in (plan.cwd, os.environ.get("TMPDIR")):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    os.chdir(plan.cwd)
    _link_post_files(Path(plan.post_dir), Path(plan.cwd))
    if plan.sandbox is None:
        _protect_post_dir(plan.post_dir)
    _reopen_standard_streams()
    sys.argv = [plan.post]
    sys.path[0:1] = [plan.cwd]
    _reseed_random()
    return channel


def _limit_resources(memory_limit: int | None) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_limit:
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _link_post_files(post_dir: Path, cwd: Path) -> None:
    """Make the post's sibling files reachable by relative path from the working directory."""
    try:
        entries = list(post_dir.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            (cwd / entry.name).symlink_to(entry)
        except OSError:
            continue


def _protect_post_dir(post_dir: str) -> bool:
    """Mount the post's folder read-only in a private mount namespace, where allowed."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        return False
    if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return False  # never bind anything while mounts could propagate to the host
    path = os.fsencode(post_dir)
    if libc.mount(path, path, None, _MS_BIND | _MS_REC, None) != 0:
        return False
    return libc.mount(None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None) == 0


def _reopen_standard_streams() -> None:
    """Unbuffered text streams on fds 0–2, so output survives a crash right after a print."""

    def stream(fd: int) -> io.TextIOWrapper:
        raw = io.FileIO(fd, "w", closefd=False)  # as `python -u` does
        return io.TextIOWrapper(
            raw,  # type: ignore[arg-type]
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
            write_through=True,
        )

    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = stream(1)
    sys.stderr = stream(2)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _reseed_random() -> None:
    """Forked sessions must not share the fork server's random state."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
