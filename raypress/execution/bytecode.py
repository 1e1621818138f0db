"""Bytecode for the fork server's modules, written by the build process.

The fork server runs in the sandbox, where the project is read-only (a snippet must never
write code that the build process imports later), so it cannot cache the bytecode of the
modules that only it imports (the session's), and would compile them again in every
build: about 15 ms of its start. So before starting it the build process writes what is
missing or stale, as its own imports would have; nothing when Python is told not to
(``PYTHONDONTWRITEBYTECODE``, ``-B``) or the package's folder is not writable.
"""

from __future__ import annotations

import importlib.util
import os
import sys

# raypress/ and raypress/execution/: what the fork server and the sessions import (plain
# os calls below, not pathlib: this runs on the way to every build's first snippet)
_EXECUTION = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
_FOLDERS = (os.path.dirname(_EXECUTION), _EXECUTION)  # noqa: PTH120


def write_missing_bytecode(folders: tuple[str, ...] = _FOLDERS) -> int:
    """Compile the stale or missing modules in ``folders`` (by default the fork server's);
    returns how many it wrote."""
    if sys.dont_write_bytecode:
        return 0
    written = 0
    for folder in folders:
        try:
            names = os.listdir(folder)  # noqa: PTH208
        except OSError:
            continue
        for name in names:
            if not name.endswith(".py"):
                continue
            source = os.path.join(folder, name)  # noqa: PTH118
            cache = importlib.util.cache_from_source(source)
            if not _is_current(source, cache) and _compile(source, cache):
                written += 1
    return written


def _is_current(source: str, cache: str) -> bool:
    """True when ``cache`` is the timestamp bytecode of ``source`` as it is now (PEP 552)."""
    try:
        stat = os.stat(source)  # noqa: PTH116
        with open(cache, "rb") as handle:  # noqa: PTH123
            header = handle.read(16)
    except OSError:
        return False
    expected = (
        importlib.util.MAGIC_NUMBER
        + bytes(4)
        + (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
        + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    )
    return header == expected


def _compile(source: str, cache: str) -> bool:
    import py_compile  # only when something is stale

    try:
        py_compile.compile(source, cache, doraise=True)
    except (OSError, py_compile.PyCompileError):
        return False  # a read-only installation, or a syntax error the import will report
    return True
