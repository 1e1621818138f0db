"""Start the build's sandbox: ``python -I -S sandbox_launch.py FD`` (this file, as a script).

Run by the build process, as root, when some folder the sandbox must show lies where the
sandbox's user cannot reach it (a Python installed under ``/root``). With the fork
server's control socket among its descriptors and a specification (made by
:class:`raypress.execution.build_sandbox.Launcher`, :func:`encode` below) to read from
descriptor ``FD``, it
binds each such folder onto a staging folder in a mount namespace of its own (the
machine's mounts are untouched), drops to the sandbox's user id with no supplementary
groups, and executes bubblewrap, which builds the sandbox and runs the fork server in
it. Standard library only (not even ``json``), and no package imports: it starts on the
way to every sandbox.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs milliseconds here
if TYPE_CHECKING:
    from typing import Any

_CLONE_NEWNS = 0x00020000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000


def main(argv: list[str]) -> int:
    """Read the specification, stage, and execute bubblewrap (returns only on failure)."""
    with os.fdopen(int(argv[0]), "rb") as handle:
        spec = decode(handle.read())
    sources = stage(spec["sources"], spec["stage"], spec["uid"])
    args = bwrap_argv(spec, sources)
    os.setgroups([])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    os.execv(args[0], args)
    return 127


def encode(spec: dict[str, Any]) -> bytes:
    """The specification as NUL-separated fields: bwrap, uid, gid, stage, the number of
    sources, the sources, then each argument tagged ``S`` (a source index), ``F`` (a file
    to pass), ``D`` (text to pass) or ``A`` (itself)."""
    fields = [spec["bwrap"], str(spec["uid"]), str(spec["gid"]), spec["stage"] or ""]
    fields += [str(len(spec["sources"])), *spec["sources"]]
    for item in spec["args"]:
        if isinstance(item, int):
            fields.append(f"S{item}")
        elif isinstance(item, dict):
            fields.append(f"F{item['file']}" if "file" in item else f"D{item['data']}")
        else:
            fields.append(f"A{item}")
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def decode(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode`."""
    fields = data.decode("utf-8", "surrogateescape").split("\0")
    count = int(fields[4])
    args: list[object] = []
    for field in fields[5 + count :]:
        tag, value = field[:1], field[1:]
        args.append(
            int(value) if tag == "S" else {"file": value} if tag == "F" else
            {"data": value} if tag == "D" else value
        )  # fmt: skip
    return {
        "bwrap": fields[0],
        "uid": int(fields[1]),
        "gid": int(fields[2]),
        "stage": fields[3] or None,
        "sources": fields[5 : 5 + count],
        "args": args,
    }


def bwrap_argv(spec: dict[str, Any], sources: list[str]) -> list[str]:
    """bubblewrap's command line: integers name sources, objects are files to pass as
    inheritable descriptors (``{"file": path}`` or ``{"data": text}``)."""
    args = [spec["bwrap"]]
    for item in spec["args"]:
        if isinstance(item, int):
            args.append(sources[item])
        elif isinstance(item, dict):
            args.append(str(open_for_bwrap(item)))
        else:
            args.append(str(item))
    return args


def open_for_bwrap(item: dict[str, str]) -> int:
    """An inheritable descriptor reading a file (``file``) or some text (``data``)."""
    if "file" in item:
        fd = os.open(item["file"], os.O_RDONLY)
    else:
        fd = os.memfd_create("raypress-data", 0)
        os.write(fd, item["data"].encode())
        os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd


def stage(sources: list[str], folder: str | None, uid: int) -> list[str]:
    """Bind each source that ``uid`` could not reach to ``folder/N`` in a private mount
    namespace; returns the paths bubblewrap should bind from."""
    unreachable = [i for i, source in enumerate(sources) if not reachable(source, uid)]
    if not unreachable or folder is None or os.geteuid() != 0:
        return sources
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(_CLONE_NEWNS), "unshare")
    _check(libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None), "mount")
    staged = list(sources)
    for index in unreachable:
        target = os.path.join(folder, str(index))  # noqa: PTH118 - no pathlib: start-up time
        os.makedirs(target, mode=0o755, exist_ok=True)  # noqa: PTH103
        flags = ctypes.c_ulong(_MS_BIND | _MS_REC)
        source = os.fsencode(sources[index])
        _check(libc.mount(source, os.fsencode(target), None, flags, None), f"bind {source!r}")
        staged[index] = target
    return staged


def reachable(path: str, uid: int) -> bool:
    """True when every folder above ``path`` lets ``uid`` (in no group) pass."""
    folder = os.path.dirname(os.path.abspath(path))  # noqa: PTH100, PTH120
    while True:
        try:
            info = os.stat(folder)  # noqa: PTH116
        except OSError:
            return False
        allowed = stat.S_IXUSR if info.st_uid == uid else stat.S_IXOTH
        if not info.st_mode & allowed:
            return False
        parent = os.path.dirname(folder)  # noqa: PTH120
        if parent == folder:
            return True
        folder = parent


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"raypress: cannot start the sandbox: {exc}", file=sys.stderr)
        sys.exit(126)
