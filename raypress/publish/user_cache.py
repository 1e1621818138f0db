"""Files raypress keeps between builds for the current user, like Python's
``__pycache__``: in ``$XDG_CACHE_HOME/raypress/`` (``~/.cache/raypress/`` when unset). A
cold build (no ``.raypress-cache``) finds them too. Each user of it names its files by a
key of everything their content depends on, so a file is never out of date; delete the
folder at will.

Threat model: what is kept here may be executed (compiled templates), so nobody but the
current user may be able to write it. A folder is made 0700 and used only if it is a real
folder owned by this user and writable by nobody else; a file is opened without following
links and read only if it is a regular file owned by this user and writable by nobody
else. Anything else, or any error reading or writing (a read-only home, a full disk),
reads as "not cached" or is not written: the cache never fails a build. Sandboxed
snippets cannot reach it (the builder's home is not in the sandbox).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def user_cache_root() -> Path | None:
    """``$XDG_CACHE_HOME/raypress`` (an absolute path only, as the XDG spec says), else
    ``~/.cache/raypress``; None where there is no home."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "raypress"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        return None
    return home / ".cache" / "raypress" if home.is_absolute() else None


def user_folder(name: str) -> Path | None:
    """``<user cache root>/<name>``, made if missing, when it can be used (see
    :func:`private_folder`); else None."""
    root = user_cache_root()
    return private_folder(root / name) if root else None


def private_folder(path: Path) -> Path | None:
    """``path``, made if missing (mode 0700), when it is a folder of this user that no one
    else can write to; else None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return path


def read_private(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a link) of this user that nobody
    else can write; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                return None
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return None
            return f.read()
    except OSError:
        return None


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (builds may run at once), mode 0600; errors
    are ignored (nothing is cached)."""
    try:
        fd, name = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    except OSError:
        return
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        temporary.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
