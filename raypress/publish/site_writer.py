"""The output folder: updated in place when few files change, else built whole in a
temporary folder and swapped in at once.

A manifest in the cache folder records each file's digest, size and mtime, and for pages
the digest of their inputs (:mod:`raypress.publish.page_inputs`), so a build in which
nothing changed writes nothing at all, and a page whose inputs did not change is kept
as it is (:class:`KeptFile`: not even rendered).

Whole writes: files go to ``_site.tmp-*`` beside the output folder (unchanged files are
hard-linked from the current site), then the two folders are exchanged atomically
(``renameat2(RENAME_EXCHANGE)`` on Linux, two renames elsewhere).

In-place writes (a quarter of the files or fewer changed, and the output folder is as
the manifest says): each file is written beside its place and renamed over it, so no
reader ever sees a half-written file; new files first, then changed ones, then removals,
so no page links to a page that is not there yet or any more. The manifest is removed
before the first change and written after the last, so an interrupted write is seen by
the next build, which then writes the whole site again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from raypress.config import Config
from raypress.errors import Problem, SourceError
from raypress.paths import atomic_write, display_path, pid_alive
from raypress.theme import THEME_PATH

MANIFEST_NAME = "site-manifest.json"
THEME_ASSETS = "assets"
THEME_MERMAID = "assets/mermaid"  # the diagram script, published only for a diagram


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One generated file of the site: its path under the output folder, its bytes, and
    what made it (a post's path, "index", ...) for messages; ``inputs``: the digest of
    what a page was rendered from ("" for files that are always made afresh)."""

    path: str
    data: bytes
    origin: str
    inputs: str = ""


@dataclass(frozen=True, slots=True)
class KeptFile:
    """A page whose inputs are those of the page already in the output folder: that file
    is kept as it is (its bytes are read only if someone asks for ``data``)."""

    path: str
    origin: str
    inputs: str
    key: str  # its digest in the manifest
    folder: str  # the output folder

    @property
    def source(self) -> Path:
        """The file in the output folder."""
        return Path(f"{self.folder}/{self.path}")

    @property
    def data(self) -> bytes:
        return self.source.read_bytes()


SiteFile = OutputFile | KeptFile


class PreviousSite:
    """The output folder as the last build left it: its manifest, and which of its files
    are still exactly what the manifest says (size and mtime)."""

    def __init__(self, config: Config):
        self.output = config.output_path
        self.folder = str(self.output)
        self.manifest = _read_manifest(config.cache_path / MANIFEST_NAME, self.output)
        self.on_disk = _stat_below(str(self.output)) if self.manifest else {}
        self.intact = frozenset(
            path
            for path, record in self.manifest.items()
            if self.on_disk.get(path) == (record.get("size"), record.get("mtime_ns"))
        )

    def kept(self, path: str, inputs: str, origin: str) -> KeptFile | None:
        """The file at ``path`` if it was made from ``inputs`` and is untouched."""
        record = self.manifest.get(path)
        if not inputs or record is None or record.get("inputs") != inputs:
            return None
        if path not in self.intact:
            return None
        return KeptFile(path, origin, inputs, str(record["key"]), self.folder)


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A file copied as it is: from static/ or from the theme's templates/assets/."""

    source: Path
    path: str  # relative to the output folder


@dataclass(frozen=True, slots=True)
class WriteReport:
    written: int
    linked: int
    removed: int
    changed: bool


def collect_static(config: Config, diagrams: bool = True) -> tuple[list[StaticFile], list[Problem]]:
    """The static files: ``static/`` to the site root, and ``assets/`` of the built-in
    theme to /assets/, each overridden by the same name in the site's ``templates/assets/``.
    The site's theme folder may lie outside the project (the configuration is trusted):
    links in it must then stay inside it. Without ``diagrams`` the theme's diagram script
    (108 files) is not even listed."""
    from raypress.publish.posts import walk_files  # not for output_intact (the CLI's check)

    problems: list[Problem] = []
    skipped = frozenset() if diagrams else frozenset({THEME_PATH / THEME_MERMAID})
    found: dict[str, StaticFile] = {}
    templates = config.templates_path.resolve()
    theme_root = config.root if templates.is_relative_to(config.root) else templates
    for folder, prefix, root in (
        (THEME_PATH / THEME_ASSETS, THEME_ASSETS, THEME_PATH),
        (config.templates_path / THEME_ASSETS, THEME_ASSETS, theme_root),
        (config.static_path, "", config.root),
    ):
        if not folder.is_dir():
            continue
        for path in walk_files(folder, root, problems, skipped):
            relative = path.relative_to(folder).as_posix()
            url = f"{prefix}/{relative}" if prefix else relative
            if prefix and url in found:
                del found[url]  # the site's own asset replaces the theme's
            found.setdefault(url, StaticFile(path, url))
    return list(found.values()), problems


def check_output_folder(config: Config) -> None:
    """Refuse an output folder that holds (or is) the project or its sources."""
    output = config.output_path.resolve()
    protected = [config.root, config.posts_path, config.templates_path, config.static_path]
    for folder in protected:
        folder = folder.resolve()
        if output == folder or folder.is_relative_to(output) or output.is_relative_to(folder):
            if folder == config.root and output != folder and output.is_relative_to(folder):
                continue  # _site inside the project root is the normal case
            raise SourceError(
                "configuration",
                None,
                f"output_dir {config.output_dir!r} overlaps {display_path(folder, config.root)}",
                "choose a separate folder such as _site",
            )


def write_site(
    config: Config,
    files: list[SiteFile],
    static: list[StaticFile],
    previous: PreviousSite | None = None,
    later: Callable[[], list[SiteFile]] | None = None,
) -> WriteReport:
    """Make the output folder hold exactly ``files``, ``static`` and what ``later``
    returns: in place when few files change, else atomically as a whole (see the module's
    note). ``later`` (files still being made) is called once the others are written when
    the whole site is written, else first; what it raises leaves the old site as it was."""
    output = config.output_path
    previous = previous or PreviousSite(config)
    wanted: dict[str, str] = {}
    inputs: dict[str, str] = {}
    for file in files:
        wanted[file.path] = file.key if isinstance(file, KeptFile) else _digest(file.data)
        if file.inputs:
            inputs[file.path] = file.inputs
    for item in static:
        stat = item.source.stat()
        wanted[item.path] = f"static:{item.source}:{stat.st_size}:{stat.st_mtime_ns}"
    manifest_path = config.cache_path / MANIFEST_NAME
    old = previous.manifest
    changed = [p for p in wanted if p not in previous.intact or old[p].get("key") != wanted[p]]
    extra = [p for p in previous.on_disk if p not in wanted]
    if later is not None:
        in_place_possible = old and output.is_dir() and len(changed) <= len(wanted) // 4
        if in_place_possible:  # deciding needs every file: wait for the late ones now
            return write_site(config, [*later(), *files], static, previous)
        # else the whole site is written whatever the late files are: they come last
        sources = {s.path: s.source for s in static}
        by_path = {f.path: f for f in files}
        return _write_whole(config, wanted, inputs, by_path, sources, previous, later)
    if old and output.is_dir() and not changed and not extra:
        if any(old[p].get("inputs", "") != inputs.get(p, "") for p in wanted):
            _write_manifest(manifest_path, output, _records(old, wanted, inputs, {}))
        return WriteReport(0, 0, 0, changed=False)
    by_path = {f.path: f for f in files}
    sources = {s.path: s.source for s in static}
    if old and output.is_dir() and len(changed) + len(extra) <= len(wanted) // 4:
        try:
            manifest_path.unlink(missing_ok=True)  # an interrupted update is seen next time
            stats = _update_in_place(output, changed, extra, by_path, sources, set(old))
        except OSError:
            stats = None  # a folder where a file should be, ...: write the whole site
        if stats is not None:
            _write_manifest(manifest_path, output, _records(old, wanted, inputs, stats))
            return WriteReport(len(changed), 0, len(extra), changed=True)
    return _write_whole(config, wanted, inputs, by_path, sources, previous)


def _records(
    old: dict[str, dict],
    wanted: dict[str, str],
    inputs: dict[str, str],
    stats: dict[str, list[int]],
) -> dict[str, dict]:
    """The manifest's entries: new stats for the files written, the old ones otherwise."""
    records = {}
    for path, key in wanted.items():
        size, mtime = stats[path] if path in stats else (old[path]["size"], old[path]["mtime_ns"])
        records[path] = {"key": key, "size": size, "mtime_ns": mtime}
        if path in inputs:
            records[path]["inputs"] = inputs[path]
    return records


def _update_in_place(
    output: Path,
    changed: list[str],
    extra: list[str],
    by_path: dict[str, SiteFile],
    sources: dict[str, Path],
    known: set[str],
) -> dict[str, list[int]]:
    """Write ``changed`` files (new ones first) and remove ``extra`` ones, each atomically."""
    stats: dict[str, list[int]] = {}
    top = str(output)
    for relative in sorted(changed, key=lambda p: p in known):
        target = f"{top}/{relative}"
        folder = posixpath.dirname(target)
        os.makedirs(folder, exist_ok=True)  # noqa: PTH103
        temporary = f"{folder}/.{posixpath.basename(target)}.raypress-{os.getpid()}"
        try:
            if relative in by_path:
                with open(temporary, "wb") as handle:  # noqa: PTH123
                    handle.write(by_path[relative].data)
            else:
                shutil.copyfile(sources[relative], temporary)
            os.replace(temporary, target)  # noqa: PTH105
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)  # noqa: PTH108
            raise
        stat = os.stat(target)  # noqa: PTH116
        stats[relative] = [stat.st_size, stat.st_mtime_ns]
    for relative in extra:
        os.unlink(f"{top}/{relative}")  # noqa: PTH108
        folder = posixpath.dirname(relative)
        while folder:  # a whole build makes no empty folders: remove those left
            try:
                os.rmdir(f"{top}/{folder}")  # noqa: PTH106
            except OSError:
                break
            folder = posixpath.dirname(folder)
    return stats


def _write_whole(
    config: Config,
    wanted: dict[str, str],
    inputs: dict[str, str],
    by_path: dict[str, SiteFile],
    sources: dict[str, Path],
    previous: PreviousSite,
    later: Callable[[], list[SiteFile]] | None = None,
) -> WriteReport:
    """Write every file into a new folder (unchanged ones hard-linked), then ``later``'s,
    and swap it in."""
    output = config.output_path
    old = previous.manifest
    _remove_stale_temporaries(output)
    staging = Path(tempfile.mkdtemp(prefix=f"{output.name}.tmp-{os.getpid()}-", dir=output.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; a web server must read it
    written = linked = 0
    try:
        stats: dict[str, list[int]] = {}
        made: set[str] = {""}
        top, current_top = str(staging), str(output)
        for relative, key in _wanted_then_later(wanted, inputs, by_path, later):
            folder = posixpath.dirname(relative)
            if folder not in made:
                os.makedirs(f"{top}/{folder}", exist_ok=True)  # noqa: PTH103
                while folder not in made:
                    made.add(folder)
                    folder = posixpath.dirname(folder)
            target, current = f"{top}/{relative}", f"{current_top}/{relative}"
            if relative in previous.intact and old[relative].get("key") == key:
                os.link(current, target)
                linked += 1
            elif relative in by_path:
                with open(target, "wb") as handle:  # noqa: PTH123
                    handle.write(by_path[relative].data)
                written += 1
            else:
                shutil.copyfile(sources[relative], target)
                written += 1
            stat = os.stat(target)  # noqa: PTH116
            stats[relative] = [stat.st_size, stat.st_mtime_ns]
        removed = len(set(old) - set(wanted))
        _swap_in(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest_path = config.cache_path / MANIFEST_NAME
    _write_manifest(manifest_path, output, _records(old, wanted, inputs, stats))
    return WriteReport(written, linked, removed, changed=True)


def _wanted_then_later(
    wanted: dict[str, str],
    inputs: dict[str, str],
    by_path: dict[str, SiteFile],
    later: Callable[[], list[SiteFile]] | None,
) -> Iterator[tuple[str, str]]:
    """``wanted``'s (path, key) pairs, then those of ``later``'s files, which are added to
    ``wanted`` and ``by_path`` as they come (where a path comes twice, the first wins, as
    when everything is written in place)."""
    yield from list(wanted.items())
    for file in later() if later is not None else []:
        if file.path in wanted:
            continue
        wanted[file.path] = file.key if isinstance(file, KeptFile) else _digest(file.data)
        by_path[file.path] = file
        if file.inputs:
            inputs[file.path] = file.inputs
        yield file.path, wanted[file.path]


def output_intact(config: Config) -> bool:
    """True when the output folder holds exactly what the last build wrote, untouched."""
    output = config.output_path
    recorded = _read_manifest(config.cache_path / MANIFEST_NAME, output)
    wanted = {path: str(record.get("key")) for path, record in recorded.items()}
    return bool(recorded) and _unchanged(output, recorded, wanted)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _matches(path: str | Path, record: dict) -> bool:
    try:
        stat = os.stat(path)  # noqa: PTH116
    except OSError:
        return False
    return stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns")


def _unchanged(output: Path, old: dict[str, dict], wanted: dict[str, str]) -> bool:
    if not output.is_dir() or set(old) != set(wanted):
        return False
    top = str(output)
    if any(old[p].get("key") != k or not _matches(f"{top}/{p}", old[p]) for p, k in wanted.items()):
        return False
    return _files_below(str(output)) == set(wanted)


def _stat_below(top: str) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file below ``top`` by relative path ({} if it is missing)."""
    found: dict[str, tuple[int, int]] = {}
    stack = [("", top)]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((name + "/", entry.path))
            else:
                try:
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found[name] = (stat.st_size, stat.st_mtime_ns)
    return found


def _files_below(top: str) -> set[str]:
    """Relative paths of the files below ``top`` (os.scandir: no Path objects, fast)."""
    found: set[str] = set()
    stack = [("", top)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((name + "/", entry.path))
                else:
                    found.add(name)
    return found


def _read_manifest(path: Path, output: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("output") != str(output.resolve()):
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_manifest(path: Path, output: Path, files: dict[str, dict]) -> None:
    data = json.dumps({"output": str(output.resolve()), "files": files}).encode()
    atomic_write(path, data, durable=False)


def _swap_in(staging: Path, output: Path) -> None:
    """Put ``staging`` at ``output``; the old output is deleted afterwards."""
    if not output.exists():
        staging.rename(output)
        return
    if _exchange(staging, output):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old site
        return
    retired = Path(tempfile.mkdtemp(prefix=f"{output.name}.old-", dir=output.parent))
    retired.rmdir()
    output.rename(retired)
    staging.rename(output)
    shutil.rmtree(retired, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    import ctypes  # here: only a rebuild over an existing site needs it (10 ms to import)

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded in-process
    except OSError:
        return False
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _remove_stale_temporaries(output: Path) -> None:
    """Delete staging folders left by builds that were killed (their pid is gone)."""
    for leftover in _siblings(output, (".tmp-", ".old-")):
        pid_text = leftover.name.split(".tmp-", 1)[-1].split("-", 1)[0]
        if ".tmp-" in leftover.name and pid_text.isdigit() and pid_alive(int(pid_text)):
            continue
        shutil.rmtree(leftover, ignore_errors=True)


def _siblings(output: Path, markers: Iterable[str]) -> list[Path]:
    if not output.parent.is_dir():
        return []
    return [
        p
        for p in output.parent.iterdir()
        if p.is_dir() and any(p.name.startswith(output.name + m) for m in markers)
    ]
