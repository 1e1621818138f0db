"""The build's bubblewrap sandbox: what it shows, how it is launched, what sessions get.

One sandbox per build holds the fork server, the Ray head it launches and so every Ray
worker, and (nested in it, see ``session_ns``) every session. bubblewrap (``bwrap``, what
Flatpak uses) makes it from a command line: new user, PID, network (loopback only),
IPC, UTS and cgroup namespaces, every capability dropped, ``no_new_privs``, killed with
the build process (``--die-with-parent``; its PID namespace takes every process in it
along). Its file system is built from nothing:

* read-only: the system (``/usr``, ``/etc`` and the ``/bin``-style links), the Python
  installation and its packages, and the project folders (their ``.git`` hidden);
* writable and private, gone with the sandbox: ``/tmp`` (and ``$HOME`` on it),
  ``/dev/shm`` (Ray's object store) and ``/ray`` (the Ray clusters' sockets and logs);
* the build's memory cgroup folder at :data:`CGROUP_DIR` (only ``cgroup.procs`` files
  are writable by the sandbox's user), which sessions hide again.

Nothing of the builder's ``$HOME``, other users' files or other builds is mounted. A
root build runs ``bwrap`` as the sandbox's own user; when a folder to show lies where that
user cannot reach it (a Python under ``/root``), through ``sandbox_launch.py``, which
first binds it onto a staging folder in a private mount namespace. The fork server joins
the build's ``server`` cgroup as it starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raypress.execution import sandbox_launch
from raypress.execution.isolation import Isolation
from raypress.execution.protocol import CGROUP_DIR, SessionSandbox

TMP = "/tmp"
HOME = "/tmp/home"  # $HOME of the fork server and the Ray head
RAY_DIR = "/ray"  # the Ray clusters' temporary folders (short: socket paths)
SESSION_HOME = "/tmp/home"  # on the session's own /tmp
SESSION_WORK = "/tmp/work"
SYSTEM = ("/usr", "/etc")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# never shown whole (a project or PYTHONPATH entry there would expose other people's files)
TOO_WIDE = frozenset({"/", TMP, "/home", "/root", "/var", "/run", "/srv", "/mnt", "/media"})
CPU_INFO = "/sys/devices/system/cpu"  # core counts for BLAS and Ray
_MPL_CACHE = "/tmp/home/.cache/matplotlib"
_FD_OPTIONS = ("--file", "--ro-bind-data")  # options whose value is a descriptor
SANDBOX_ENV = {  # the sandbox's own places (the builder's $HOME is not in it)
    "HOME": HOME,
    "TMPDIR": TMP,
    "XDG_CACHE_HOME": f"{HOME}/.cache",
    "XDG_CONFIG_HOME": f"{HOME}/.config",
    "USER": "raypress",
    "LOGNAME": "raypress",
}


@dataclass(frozen=True, slots=True)
class Layout:
    """The folders the build's sandbox shows read-only (same path inside as outside)."""

    readable: tuple[str, ...]
    hidden: tuple[str, ...]  # .git folders or files inside them, covered by empty ones

    @classmethod
    def of(cls, projects: Sequence[Path], extra: Sequence[str] = ()) -> Layout:
        """The system, the Python in use, ``projects`` and ``extra`` folders (e.g. PYTHONPATH)."""
        wanted = [*python_folders(), *(str(p) for p in projects), *extra]
        folders: list[str] = []
        for folder in sorted({_real(f) for f in wanted if f and Path(f).is_dir()}, key=len):
            covered = any(_under(folder, f) for f in (*SYSTEM, *folders))
            if folder not in TOO_WIDE and not covered:
                folders.append(folder)
        hidden = tuple(str(Path(p) / ".git") for p in folders if (Path(p) / ".git").exists())
        return cls(tuple(folders), hidden)

    def shows(self, path: Path) -> bool:
        """True when ``path`` is inside a folder the sandbox shows."""
        real = _real(str(path))
        return any(_under(real, f) for f in (*SYSTEM, *self.readable))

    def below_tmp(self) -> tuple[str, ...]:
        """Read-only folders that sessions must show again over their private /tmp."""
        return tuple(f for f in self.readable if _under(f, TMP))


def python_folders() -> list[str]:
    """The interpreter's prefixes and the folders its packages are imported from."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    folders = [*prefixes, str(Path(_real(sys.executable)).parent.parent)]
    for entry in sys.path:
        real = _real(entry) if entry else ""
        if not real or not Path(real).exists():
            continue
        if Path(real).is_file():  # a zip of the standard library
            real = str(Path(real).parent)
        if any(_under(real, _real(p)) for p in prefixes) or real.endswith(
            ("site-packages", "dist-packages")
        ):
            folders.append(real)
    return folders


@dataclass(frozen=True, slots=True)
class LaunchCommand:
    """How to start the sandbox: a command line, what to pass it, as which user."""

    argv: list[str]
    spec: bytes | None  # for ``sandbox_launch.py`` (read from the descriptor named last)
    pass_fds: list[int]  # descriptors of files bubblewrap copies in (closed after the start)
    user: int | None  # switch to this user and group before executing (root builds)
    group: int | None


@dataclass(frozen=True, slots=True)
class Launcher:
    """How to start a command (the fork server) in the build's sandbox."""

    isolation: Isolation
    layout: Layout
    stage_dir: str | None  # an empty folder (root builds) for sources the user cannot reach
    cgroup: str | None  # the build's cgroup folder (its ``server`` child is joined)

    def command(self, inner: Sequence[str]) -> LaunchCommand:
        """How to start ``inner`` (the fork server) in the sandbox."""
        spec = self.spec(inner)
        root = os.geteuid() == 0
        user = spec["uid"] if root else None
        group = spec["gid"] if root else None
        sources = spec["sources"]
        if root and not all(sandbox_launch.reachable(s, spec["uid"]) for s in sources):
            script = str(Path(sandbox_launch.__file__).resolve())
            argv = [sys.executable, "-I", "-S", script]
            return LaunchCommand(argv, sandbox_launch.encode(spec), [], None, None)
        argv = sandbox_launch.bwrap_argv(spec, sources)
        fds = [int(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in _FD_OPTIONS]
        return LaunchCommand(argv, None, fds, user, group)

    def spec(self, inner: Sequence[str]) -> dict[str, Any]:
        """What ``sandbox_launch`` needs: bubblewrap's arguments, their sources, the user."""
        assert self.isolation.bwrap is not None
        sources: list[str] = []
        args: list[object] = [
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "raypress",
            "--tmpfs",
            TMP,
        ]

        def bind(source: str, target: str, option: str = "--ro-bind") -> None:
            sources.append(source)
            args.extend([option, len(sources) - 1, target])

        for folder in SYSTEM:
            bind(folder, folder)
        for link in SYSTEM_LINKS:
            path = Path(link)
            if path.is_symlink():
                args.extend(["--symlink", str(path.readlink()), link])
            elif path.is_dir():
                bind(link, link)
        if Path(CPU_INFO).is_dir():
            args.extend(["--ro-bind", CPU_INFO, CPU_INFO])
        for folder in self.layout.readable:
            bind(folder, folder)
        for hidden in self.layout.hidden:
            args.extend(
                ["--tmpfs", hidden] if Path(hidden).is_dir() else ["--ro-bind", "/dev/null", hidden]
            )
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", RAY_DIR]
        args += ["--dir", HOME, "--dir", _MPL_CACHE]
        for cache in font_caches():
            args.extend(["--file", {"file": cache}, f"{_MPL_CACHE}/{Path(cache).name}"])
        for name, entry in identity_files(self.isolation.uid, self.isolation.gid).items():
            args.extend(["--ro-bind-data", {"data": entry}, name])
        if self.cgroup:
            args.extend(["--bind", self.cgroup, CGROUP_DIR])
        args += ["--chdir", "/", "--", *inner]
        return {
            "bwrap": self.isolation.bwrap,
            "uid": self.isolation.uid,
            "gid": self.isolation.gid,
            "stage": self.stage_dir,
            "sources": sources,
            "args": args,
        }

    def session(
        self, cgroup_name: str | None, tmp_bytes: int, ray_folder: str | None = None
    ) -> SessionSandbox:
        """What a session makes for itself inside this sandbox (``ray_folder``: the
        folder below ``/ray`` that holds the post's own clusters, writable to it)."""
        return SessionSandbox(
            cgroup_procs=f"{CGROUP_DIR}/{cgroup_name}/cgroup.procs" if cgroup_name else None,
            home=SESSION_HOME,
            work=SESSION_WORK,
            tmp_bytes=tmp_bytes,
            keep=self.layout.below_tmp(),
            read_only=(RAY_DIR,),
            writable=ray_log_folders() + ((ray_folder,) if ray_folder else ()),
            hide=(CGROUP_DIR,) if self.cgroup else (),
            seed=tuple(f"{_MPL_CACHE}/{Path(c).name}" for c in font_caches()),
        )


def identity_files(uid: int, gid: int) -> dict[str, str]:
    """/etc/passwd and /etc/group with a ``raypress`` entry for the sandbox's ids, when the
    machine has none (libraries that look the user up then find one)."""
    files = {}
    for name, number, line in (
        ("/etc/passwd", uid, f"raypress:x:{uid}:{gid}:raypress sandbox:{HOME}:/usr/sbin/nologin"),
        ("/etc/group", gid, f"raypress:x:{gid}:"),
    ):
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError:
            continue
        known = {entry.split(":")[2] for entry in text.splitlines() if entry.count(":") >= 2}
        if str(number) not in known:
            files[name] = text.rstrip("\n") + "\n" + line + "\n"
    return files


def ray_log_folders() -> tuple[str, ...]:
    """Where sessions may write in the sandbox's Ray folder: the logs of clusters that
    exist when the session starts (drivers write their own log file there); a pattern
    the session resolves. A post's own clusters, started later, live in its own folder."""
    return (f"{RAY_DIR}/*/session_*/logs",)


def font_caches() -> list[str]:
    """matplotlib's font list cache of the builder, copied in so sandboxed sessions do not
    spend a second rebuilding it."""
    folders = [os.environ.get("MPLCONFIGDIR", "")]
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folders.append(str(Path(cache_home) / "matplotlib"))
    for folder in folders:
        if folder and Path(folder).is_dir():
            found = sorted(str(p) for p in Path(folder).glob("fontlist-v*.json"))
            if found:
                return found[-1:]
    return []


def _real(path: str) -> str:
    return os.path.realpath(path)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
