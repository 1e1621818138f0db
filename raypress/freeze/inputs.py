"""What a post's results depend on: the key that decides whether its record is reused.

A post's :class:`Inputs` hash the code of its snippets in order with the options that
change what runs (``eval``, ``error``, ``timeout``, ``repeat``, ``deps``; not ``echo``,
``output``, ``label`` or ``compare``), its inline expressions, its execution front matter
(``timeout``, ``ray``), the contents of the files it declares (``#| deps: [...]`` and a
front-matter ``deps:`` list, relative to the post) and of the local modules its snippets
import (``import helpers`` with ``helpers.py`` or ``helpers/`` beside the post, and what
those import in turn). Prose is not part of it. The environment (Python and the versions
of the packages the post imported) is compared separately, see :class:`InstalledVersions`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from raypress.config import Config
from raypress.errors import Problem
from raypress.execution.imports import top_level_imports
from raypress.execution.model import Snippet
from raypress.paths import display_path, inside, package_folders
from raypress.publish.posts import Post

if TYPE_CHECKING:  # publish.markdown imports markdown-it: not before the CLI starts an engine
    from raypress.publish.markdown import ParsedBody


@dataclass(frozen=True, slots=True)
class Inputs:
    """The parts of a post that can change its results, each hashed."""

    snippets: tuple[str, ...]  # per snippet, in order: its code and execution options
    inline: str  # the inline expressions and where they are evaluated
    post: str  # the execution front matter
    files: tuple[tuple[str, str], ...] = ()  # (path from the project root, sha256), sorted

    @property
    def digest(self) -> str:
        """One hash of everything above."""
        return _hash([list(self.snippets), self.inline, self.post, [list(f) for f in self.files]])

    def changes(self, old: Inputs) -> list[str]:
        """What differs from ``old``, for the console: ``snippet 3 changed``, ..."""
        found: list[str] = []
        if len(self.snippets) != len(old.snippets):
            found.append(f"{len(old.snippets)} snippets became {len(self.snippets)}")
        else:
            found += [
                f"snippet {i + 1} changed"
                for i, (a, b) in enumerate(zip(self.snippets, old.snippets, strict=True))
                if a != b
            ]
        if self.inline != old.inline:
            found.append("inline expressions changed")
        if self.post != old.post:
            found.append("execution front matter changed")
        before, after = dict(old.files), dict(self.files)
        for name in sorted(before.keys() | after.keys()):
            if name not in before:
                found.append(f"now depends on {name}")
            elif name not in after:
                found.append(f"no longer depends on {name}")
            elif before[name] != after[name]:
                found.append(f"{name} changed")
        return found


@dataclass(slots=True)
class FileHashes:
    """Hashes and folder listings read during one build (never shared between builds)."""

    hashes: dict[Path, str] = field(default_factory=dict)
    listings: dict[Path, frozenset[str]] = field(default_factory=dict)

    def file(self, path: Path) -> str:
        if path not in self.hashes:
            self.hashes[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self.hashes[path]

    def tree(self, path: Path) -> str:
        """The hash of a file, or of every file below a folder (names and contents)."""
        if not path.is_dir():
            return self.file(path)
        rows = []
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                child = Path(folder) / name
                rows.append([child.relative_to(path).as_posix(), self.file(child)])
        return _hash(rows)

    def names(self, folder: Path) -> frozenset[str]:
        if folder not in self.listings:
            try:
                self.listings[folder] = frozenset(p.name for p in folder.iterdir())
            except OSError:
                self.listings[folder] = frozenset()
        return self.listings[folder]


def snippet_hash(snippet: Snippet, figure_format: str = "png") -> str:
    """The hash of a snippet's code and of the options that change what runs
    (``figure_format``: the site's default for its figures)."""
    options = snippet.options
    parts: list[object] = [
        snippet.source,
        options.eval,
        options.error,
        options.timeout,
        options.repeat,
        list(options.deps),
    ]
    figures = [options.fig_format or figure_format, options.fig_dpi]
    if figures != ["png", None]:  # the default keeps the hashes of older records
        parts.append(figures)
    return _hash(parts)


def source_hash(source: str) -> str:
    """The sha256 of a snippet's code (kept per snippet in records)."""
    return hashlib.sha256(source.encode()).hexdigest()


def post_inputs(
    post: Post, body: ParsedBody, config: Config, hashes: FileHashes
) -> tuple[Inputs, list[Problem], list[Path]]:
    """The Inputs of one post, problems with its declared files, and the files it read."""
    folder = (config.root / post.source).parent
    root = config.root.resolve()
    problems: list[Problem] = []
    files: dict[str, str] = {}
    read: list[Path] = []

    def depend(name: str, line: int | None) -> None:
        path = (folder / name).resolve()
        if not inside(path, root):
            problems.append(
                Problem(post.source, line, f"deps file {name!r} is outside the project", None)
            )
            return
        try:
            files[display_path(path, root)] = hashes.tree(path)
        except OSError:  # missing: creating it changes the key (the snippet will say more)
            files[display_path(path, root)] = "missing"
        read.append(path)

    front = post.extra.get("deps", [])
    front = [front] if isinstance(front, str) else front
    if not isinstance(front, list) or not all(isinstance(d, str) for d in front):
        problems.append(Problem(post.source, None, "front matter 'deps' must list file names"))
        front = []
    for name in front:
        depend(name, None)
    running = [s for s in body.snippets if s.options.eval]
    for snippet in running:
        for name in snippet.options.deps:
            depend(name, snippet.line)
    for path in local_modules([s.source for s in running], folder.resolve(), hashes):
        files[display_path(path, root)] = hashes.tree(path)
        read.append(path)
    inputs = Inputs(
        snippets=tuple(snippet_hash(s, config.figure_format) for s in body.snippets),
        inline=_hash([[i.source, i.after_snippet] for i in body.inline]),
        # resources only when given: records made before the key existed stay current
        post=_hash(
            [post.timeout, post.ray_mode] + ([list(post.resources)] if post.resources else [])
        ),
        files=tuple(sorted(files.items())),
    )
    return inputs, problems, read


def local_modules(sources: Iterable[str], folder: Path, hashes: FileHashes) -> list[Path]:
    """Modules and packages beside the post that ``sources`` import, transitively."""
    found: list[Path] = []
    pending = list(sources)
    seen: set[str] = set()
    while pending:
        for name in sorted(top_level_imports(pending.pop()) - seen):
            seen.add(name)
            entries = hashes.names(folder)
            if f"{name}.py" in entries:
                path = folder / f"{name}.py"
            elif name in entries and (folder / name).is_dir():
                path = folder / name
            else:
                continue
            found.append(path)
            module_files = [path] if path.is_file() else sorted(path.rglob("*.py"))
            for module_file in module_files:
                try:
                    pending.append(module_file.read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    continue
    return found


class InstalledVersions:
    """Installed versions of distributions, looked up once per build.

    The ``name-version.dist-info`` folders of site-packages give most versions without
    importing :mod:`importlib.metadata`; a module whose distribution has another name
    (``yaml`` from PyYAML) falls back to it.
    """

    def __init__(self) -> None:
        self._found: dict[str, str] = {}
        self._folders: dict[str, str] | None = None

    def __call__(self, name: str) -> str:
        """The installed version of the package imported as ``name`` ("" when unknown)."""
        if name not in self._found:
            if self._folders is None:
                self._folders = _dist_info_versions()
            found = self._folders.get(_normalise(name))
            self._found[name] = found if found is not None else _metadata_version(name)
        return self._found[name]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_info_versions() -> dict[str, str]:
    """Distribution name -> version, from the dist-info folders on sys.path (first wins)."""
    versions: dict[str, str] = {}
    for folder in package_folders():
        try:
            names = os.listdir(folder)  # noqa: PTH208 - plain strings for speed
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and "-" in name:
                distribution, version = name[: -len(".dist-info")].rsplit("-", 1)
                versions.setdefault(_normalise(distribution), version)
    return versions


def _metadata_version(name: str) -> str:
    import importlib.metadata as metadata  # slow to import: only when the folders say nothing

    try:
        return metadata.version(name)
    except (metadata.PackageNotFoundError, ValueError):
        pass
    for distribution in metadata.packages_distributions().get(name, []):
        try:
            return metadata.version(distribution)
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return ""


def python_version() -> str:
    """This interpreter's version, as records keep it."""
    import platform  # only when a record is compared

    return platform.python_version()


def _hash(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
