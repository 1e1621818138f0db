"""Start the build's sandbox: ``python -S -m raypress.execution.sandbox_launch FD``.

Run by the build process with the fork server's control socket among its descriptors and
a JSON specification (made by :class:`raypress.execution.build_sandbox.Launcher`) to read
from descriptor ``FD``. It joins the build's memory cgroup, and, when it runs as root,
binds every source folder the sandbox's user could not reach (say a Python installed
under ``/root``) onto a staging folder in a mount namespace of its own (the machine's
mounts are untouched), drops to the sandbox's user id with no supplementary groups, and
executes bubblewrap, which builds the sandbox and runs the fork server in it.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

_CLONE_NEWNS = 0x00020000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000


def main(argv: list[str]) -> int:
    """Read the specification, prepare, and execute bubblewrap (returns only on failure)."""
    fd = int(argv[0])
    with os.fdopen(fd, "rb") as handle:
        spec: dict[str, Any] = json.loads(handle.read())
    if spec["cgroup_procs"]:
        Path(spec["cgroup_procs"]).write_text(str(os.getpid()))
    sources: list[str] = spec["sources"]
    root = os.geteuid() == 0
    if root and spec["stage"]:
        sources = _stage(sources, spec["stage"], spec["uid"])
    args = [spec["bwrap"]]
    for item in spec["args"]:
        if isinstance(item, int):
            args.append(sources[item])
        elif isinstance(item, dict):  # a file's contents for bwrap to read from a descriptor
            if "file" in item:
                fd = os.open(item["file"], os.O_RDONLY)
            else:
                fd = os.memfd_create("raypress-data", 0)
                os.write(fd, item["data"].encode())
                os.lseek(fd, 0, os.SEEK_SET)
            os.set_inheritable(fd, True)
            args.append(str(fd))
        else:
            args.append(str(item))
    if root:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
    os.execv(args[0], args)
    return 127


def _stage(sources: list[str], stage: str, uid: int) -> list[str]:
    """Bind each source that ``uid`` could not reach to ``stage/N`` in a private mount
    namespace; returns the paths bubblewrap should bind from."""
    unreachable = [i for i, source in enumerate(sources) if not _reachable(source, uid)]
    if not unreachable:
        return sources
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(_CLONE_NEWNS), "unshare")
    _check(libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None), "mount")
    staged = list(sources)
    for index in unreachable:
        target = Path(stage) / str(index)
        target.mkdir(mode=0o755, exist_ok=True)
        flags = ctypes.c_ulong(_MS_BIND | _MS_REC)
        _check(
            libc.mount(os.fsencode(sources[index]), os.fsencode(target), None, flags, None),
            f"bind {sources[index]}",
        )
        staged[index] = str(target)
    return staged


def _reachable(path: str, uid: int) -> bool:
    """True when every folder above ``path`` lets ``uid`` (in no group) pass."""
    for folder in Path(path).parents:
        try:
            info = folder.stat()
        except OSError:
            return False
        allowed = stat.S_IXUSR if info.st_uid == uid else stat.S_IXOTH
        if not info.st_mode & allowed:
            return False
    return True


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"raypress: cannot start the sandbox: {exc}", file=sys.stderr)
        sys.exit(126)
