"""A fingerprint of everything a build reads, so an up-to-date site is not rebuilt.

The stamp hashes the configuration, raypress's version and the size, mtime and link
target of every file under posts/, templates/ and static/ (a few milliseconds for
thousands of files, no file is opened). It also remembers when the next future-dated
post becomes due, since the passing of time changes the site too.

Frozen results count as inputs: the files under snippets/ (hashed when the build ends,
after it wrote its records), the files outside posts/ that posts declare or import
(``watched``), and the environment their records were measured in (the Python version
and the installed packages' folders, whose mtime changes when a package is installed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from raypress import __version__
from raypress.config import Config
from raypress.paths import atomic_write, package_folders
from raypress.publish.site_writer import output_intact

STAMP_NAME = "build-stamp.json"


@dataclass(frozen=True, slots=True)
class BuildStamp:
    digest: str
    next_due: datetime | None  # the earliest future post left out, if any
    posts: int = 0
    pages: int = 0
    watched: tuple[str, ...] = ()  # files outside the input folders that records depend on


def input_digest(config: Config) -> str:
    """Hash of the configuration and of every input file's metadata."""
    digest = hashlib.sha256()
    settings = dataclasses.replace(config, jobs=0)  # parallelism does not change the output
    digest.update(f"{__version__}|{settings!r}".encode())
    for folder in _input_folders(config):
        for entry in _scan(folder):
            digest.update(entry.encode("utf-8", "surrogateescape"))
    digest.update(sys.version.encode())
    for folder in package_folders():  # an installed or upgraded package changes these
        digest.update("".join(_scan_one(folder)).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def frozen_digest(config: Config, watched: Iterable[str] = ()) -> str:
    """Hash of the metadata of every file under snippets/ and of the ``watched`` files."""
    digest = hashlib.sha256()
    for entry in _scan(config.snippets_path):
        digest.update(entry.encode("utf-8", "surrogateescape"))
    for path in sorted(watched):
        digest.update("".join(_scan_one(path)).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def stamp_digest(inputs: str, frozen: str) -> str:
    """The digest a stamp keeps: the inputs read at the start of a build, and the frozen
    results as the build left them."""
    return hashlib.sha256(f"{inputs}|{frozen}".encode()).hexdigest()


def read_stamp(config: Config) -> BuildStamp | None:
    """The stamp saved by the last successful build, or None."""
    try:
        data = json.loads((config.cache_path / STAMP_NAME).read_text(encoding="utf-8"))
        due = data.get("next_due")
        return BuildStamp(
            str(data["digest"]),
            datetime.fromisoformat(due) if due else None,
            int(data["posts"]),
            int(data["pages"]),
            tuple(str(p) for p in data.get("watched", [])),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_stamp(config: Config, stamp: BuildStamp) -> None:
    """Record the inputs of a successful build."""
    due = stamp.next_due.isoformat() if stamp.next_due else None
    fields = {
        "digest": stamp.digest,
        "next_due": due,
        "posts": stamp.posts,
        "pages": stamp.pages,
        "watched": list(stamp.watched),
    }
    data = json.dumps(fields).encode()
    atomic_write(config.cache_path / STAMP_NAME, data, durable=False)


def is_current(stamp: BuildStamp | None, digest: str, now: datetime) -> bool:
    """True when the inputs match the stamp and no future post has become due."""
    if stamp is None or stamp.digest != digest:
        return False
    return stamp.next_due is None or now < stamp.next_due


def current_stamp(config: Config, now: datetime, inputs: str | None = None) -> BuildStamp | None:
    """The last build's stamp if the site is up to date (inputs unchanged, output intact);
    ``inputs``: :func:`input_digest`, when the caller has computed it already."""
    stamp = read_stamp(config)
    if stamp is None:
        return None
    inputs = inputs if inputs is not None else input_digest(config)
    digest = stamp_digest(inputs, frozen_digest(config, stamp.watched))
    if is_current(stamp, digest, now) and output_intact(config):
        return stamp
    return None


def _input_folders(config: Config) -> list[Path]:
    package = Path(__file__).resolve().parents[1]  # an edited raypress is a changed input too
    folders = [config.posts_path, config.templates_path, config.static_path, package]
    for name in ("site.toml", "pyproject.toml"):
        if (config.root / name).is_file():
            folders.append(config.root / name)
    return folders


def _scan(path: Path) -> list[str]:
    """A row per file below ``path`` (links followed once): see :func:`_row`."""
    rows: list[str] = []
    stack = [str(path)]
    seen: set[str] = set()
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in seen:
            continue
        seen.add(real)
        try:
            if not os.path.isdir(current):  # noqa: PTH112 - plain strings for speed
                stat = os.stat(current)  # noqa: PTH116
                rows.append(_row(current, stat, ""))
                continue
            entries = list(os.scandir(current))
        except OSError as exc:
            rows.append(f"{current}|error|{exc.errno}\n")
            continue
        for entry in entries:
            if entry.name == "__pycache__":
                continue
            try:
                link = os.readlink(entry.path) if entry.is_symlink() else ""  # noqa: PTH115
                if entry.is_dir():
                    stack.append(entry.path)
                    rows.append(f"{entry.path}|dir|{link}\n")
                else:
                    rows.append(_row(entry.path, entry.stat(), link))
            except OSError as exc:
                rows.append(f"{entry.path}|error|{exc.errno}\n")
    return sorted(rows)


def _scan_one(path: str) -> list[str]:
    """The row of one file or folder (not its contents)."""
    try:
        return [_row(path, os.stat(path), "")]  # noqa: PTH116
    except OSError as exc:
        return [f"{path}|error|{exc.errno}\n"]


def _row(path: str, stat: os.stat_result, link: str) -> str:
    """Size, mtime, inode and ctime: ctime changes with every write and cannot be set back,
    so edits that keep size and mtime (``cp -p``, ``rsync -t``) are seen too."""
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}|{link}\n"
