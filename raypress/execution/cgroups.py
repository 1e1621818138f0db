"""The build's memory cgroups: one per session, one for the Ray head, one for the server.

``BuildCgroup`` creates ``raypress-<pid>-<random>`` where :mod:`isolation` found room,
with children ``server`` (the fork server), ``ray`` (the Ray head and its workers) and
one ``s<N>`` per session, each with its memory ceiling written by the build (root-owned
files the sandbox cannot change: shared memory, tmpfs files and mapped pages all count).
Only ``cgroup.procs`` (and v1's ``tasks``) of the children are handed to the sandbox's
user id, so a session can join its own cgroup from inside the sandbox; the sessions then
hide the cgroup folder. Folders of builds that died (their pid is gone) are removed when
the next build starts; a session's folder is removed when the session has ended.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path

from raypress.execution.isolation import CgroupPlace
from raypress.paths import pid_alive

_STALE = re.compile(r"raypress-(\d+)-[0-9a-f]+")


class BuildCgroup:
    """The build's cgroup folder and the session cgroups under it."""

    def __init__(self, place: CgroupPlace, uid: int, gid: int) -> None:
        self.version = place.version
        self.uid, self.gid = uid, gid
        remove_stale(place.parent)
        self.path = place.parent / f"raypress-{os.getpid()}-{secrets.token_hex(4)}"
        self.path.mkdir(mode=0o755)
        try:
            if self.version == 2:
                (self.path / "cgroup.subtree_control").write_text("+memory")
                self._hand_over(self.path)  # v2: moving needs the common ancestor's procs file
            self.child("server", None)
        except BaseException:
            self.close()
            raise

    def child(self, name: str, limit: int | None) -> Path:
        """Create ``name`` (ceiling ``limit`` bytes, None: none), joinable by the sandbox."""
        path = self.path / name
        path.mkdir(mode=0o755)
        if limit is not None:
            self._limit(path, limit)
        self._hand_over(path)
        return path

    def oom_killed(self, name: str) -> bool:
        """True when the kernel killed a process of ``name`` for exceeding its ceiling."""
        events = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.path / name / events).read_text()
        except OSError:
            return False
        found = re.search(r"^oom_kill (\d+)$", text, re.M)
        return bool(found and int(found.group(1)))

    def remove(self, name: str, wait: float = 2.0) -> None:
        """Remove a child once its processes are gone (they may still be exiting)."""
        _remove(self.path / name, wait)

    def close(self) -> None:
        """Remove every child and the build's folder (their processes must be gone)."""
        with contextlib.suppress(OSError):
            for child in self.path.iterdir():
                if child.is_dir():
                    _remove(child, 5.0)
        _remove(self.path, 5.0)

    def _limit(self, path: Path, limit: int) -> None:
        if self.version == 2:
            (path / "memory.max").write_text(str(limit))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                (path / "memory.swap.max").write_text("0")
            return
        (path / "memory.limit_in_bytes").write_text(str(limit))
        with contextlib.suppress(OSError):  # swap accounting off: the file is missing
            (path / "memory.memsw.limit_in_bytes").write_text(str(limit))

    def _hand_over(self, path: Path) -> None:
        for name in ("cgroup.procs", "tasks"):
            with contextlib.suppress(FileNotFoundError):
                os.chown(path / name, self.uid, self.gid)


def remove_stale(parent: Path) -> None:
    """Remove the (empty) cgroup folders of builds whose process is gone."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        found = _STALE.fullmatch(entry.name)
        if found is None or pid_alive(int(found.group(1))):
            continue
        with contextlib.suppress(OSError):
            for child in entry.iterdir():
                if child.is_dir():
                    _remove(child, 0.0)
        _remove(entry, 0.0)


def _remove(path: Path, wait: float) -> None:
    """rmdir a cgroup folder, retrying while its last processes exit."""
    deadline = time.monotonic() + wait
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)
