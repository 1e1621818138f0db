"""Paths and URLs: slugs, the rule that nothing is written outside the output folder, and
atomic file writes."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import unicodedata
from pathlib import Path


class PathEscapeError(ValueError):
    """A URL that would place a file outside the output folder."""


_PRETTY_KEPT = frozenset("._~!$&'()+,;=@")


def slugify(text: str, mode: str = "default", cased: bool = False) -> str:
    """Jekyll's ``slugify``: letters, marks and decimal digits of any script are kept, and
    every run of other characters becomes one hyphen (``"Größe Übermaß!"`` ->
    ``"größe-übermaß"``, ``"Tasks vs. Actors!"`` -> ``"tasks-vs-actors"``). Mode
    ``"pretty"`` also keeps ``._~!$&'()+,;=@``. Lower case unless ``cased``; NFC, so a
    name typed on macOS (decomposed) gives the same slug."""
    kept = _PRETTY_KEPT if mode == "pretty" else frozenset()
    marked = "".join(
        ch if ch in kept or _letter_mark_or_digit(ch) else "-"
        for ch in unicodedata.normalize("NFC", text)
    )
    slug = re.sub(r"-{2,}", "-", marked).strip("-")
    return slug if cased else slug.lower()


def _letter_mark_or_digit(ch: str) -> bool:
    """Jekyll's ``[\\p{M}\\p{L}\\p{Nd}]``."""
    category = unicodedata.category(ch)
    return category[0] in "LM" or category == "Nd"


def safe_output_file(url: str) -> str:
    """The file (relative to the output folder) that serves the site-absolute ``url``.

    ``/a/b/`` -> ``a/b/index.html``; ``/a/b.html`` -> ``a/b.html``; ``/a/b`` -> ``a/b/index.html``.
    Raises PathEscapeError for URLs that could leave the output folder.
    """
    if not url.startswith("/"):
        raise PathEscapeError("does not start with '/'")
    if url.startswith("//"):
        raise PathEscapeError("is protocol-relative (starts with '//')")
    if "\\" in url or "\x00" in url or re.search(r"[\x00-\x1f]", url):
        raise PathEscapeError("contains a backslash or a control character")
    if re.match(r"^/[A-Za-z]:", url):
        raise PathEscapeError("looks like a Windows drive path")
    parts = [p for p in url.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise PathEscapeError("contains '.' or '..' segments and would leave the output folder")
    if not parts:
        return "index.html"
    relative = "/".join(parts)
    dot = parts[-1].rfind(".")  # PurePosixPath.suffix, without building a path
    if url.endswith("/") or not 0 < dot < len(parts[-1]) - 1:
        return relative + "/index.html"
    return relative


def package_folders() -> list[str]:
    """The site-packages folders on ``sys.path``: where installed packages live."""
    return [f for f in sys.path if f.endswith(("site-packages", "dist-packages"))]


def inside(path: Path, folder: Path) -> bool:
    """True when the resolved ``path`` is ``folder`` or below it."""
    return path == folder or path.is_relative_to(folder)


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the project root when it lies inside it, for messages."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (``durable``:
    fsync first, for records that must survive a power cut, not for caches)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (one of another user's counts too): whether a
    folder named after the process that made it may still be in use."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
