"""The full-text search index: Pagefind over the rendered post pages, in shards.

Pagefind (its PyPI package ships the binary) indexes the site's HTML into a static bundle
of small files that the search page's script queries in the browser: no server. The post
pages rendered in memory are written to a scratch folder (``/dev/shm`` where there is one:
thousands of small files cost far less there than on a disk), Pagefind's command line
indexes them (its Python API was ~100x slower, one request per page), and its bundle comes
back as output files under ``pagefind/``, so the site writer writes it with the rest of the
site in one atomic swap. Only what a post's ``data-pagefind-body`` marks is indexed; the
highlighted code blocks of the pages Pagefind reads lose Pygments' ``<span class="...">``
tags first (a third of a code-heavy page, and text-neutral: Pagefind does not break words
at inline elements; the bundle is byte for byte the same).

Pagefind has no incremental mode and costs about 4 ms of CPU per post, so a large site's
posts are split by a hash of their path into shards of about ``search_shard_size`` posts:
shard 0 is the bundle at ``pagefind/``, shard N one at ``pagefind/N/``, and
``pagefind/shards.json`` lists the others for the search page, which merges them
(Pagefind's ``mergeIndex``). Each shard is kept in the cache folder under a key made of
what it indexes (each post page's path, language and ``<main>``), so an edit re-indexes
one shard and a build whose posts' content did not change (a stylesheet, a header
template) indexes none. Shards that must be made run side by side. The price is paid by
readers: each shard brings its own copy of Pagefind's search engine (~70 KB, fetched once
on the first search), which is why shards are a few hundred posts, not a few.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from raypress.config import Config
from raypress.errors import Problem
from raypress.paths import atomic_write
from raypress.publish.site_writer import OutputFile, PreviousSite, SiteFile

BUNDLE = "pagefind"
SHARD_LIST = "shards.json"  # the bundles the search page merges into the first one
# Pagefind's own UIs: the theme's search page has a script of its own (assets/search.js)
_UNUSED = ("pagefind-ui.", "pagefind-modular-ui.", "pagefind-component-ui.", "pagefind-highlight.")
_SCRIPTS = (".js", ".css")  # only the first bundle's are loaded
TIMEOUT_S = 300
CACHE_FOLDER = "search-index"  # in the cache folder: the index, and a bundle per shard key
INDEX_NAME = "index.pickle"
_LANG = re.compile(rb"<html\b[^>]*>")
_CLASS_SPAN = re.compile(rb'<span class="[^"<>]*">')  # Pygments' (closed by </span>)
# any other start or end tag of a span, in any case: the code block is then left alone
_OTHER_SPAN = re.compile(rb'<(?!(?-i:span class="[^"<>]*">|/span>))/?span\b', re.IGNORECASE)
_SCRATCH = "/dev/shm"  # a private folder is made in it


class IndexFailed(Exception):
    """The index could not be made: its problems (the site must not be written)."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class _Shard:
    """One bundle: where it goes under the output folder, and its pages."""

    folder: str  # "pagefind/" or "pagefind/N/"
    pages: tuple[SiteFile, ...]


def search_index(
    files: list[SiteFile],
    post_pages: set[str],
    config: Config,
    previous: PreviousSite | None = None,
) -> tuple[list[SiteFile], list[Problem]]:
    """The Pagefind bundles for the post pages among ``files`` (``post_pages``: their paths
    in the output folder; not their URLs, which may be percent-encoded). A shard whose
    bundle is in ``previous`` (the output folder, untouched) as it would be made now is
    kept there, unread."""
    try:
        from pagefind_bin import get_executable
    except ImportError:
        return [], [_problem("Pagefind is not installed (pip install 'pagefind[bin]')")]
    indexed = sorted((f for f in files if f.path in post_pages), key=lambda f: f.path)
    if not indexed:  # nothing to search: the search page says so
        return [], []
    cache = config.cache_path / CACHE_FOLDER
    stored, known = _cached(cache / INDEX_NAME)
    searched = {page.path: _searched(page, known) for page in indexed}
    try:
        executable = get_executable()
    except OSError as exc:  # the package without its binary (a broken install)
        return [], [_problem(f"Pagefind's program is missing: {exc}")]
    shards = shard_pages(indexed, config.search_shard_size)
    binary = _binary_key(executable)
    keys = {s.folder: _key(binary, s, searched) for s in shards}
    bundles: dict[str, list[SiteFile]] = {}
    for shard in shards:
        key = keys[shard.folder]
        paths = stored.get(shard.folder, ("", ()))
        if paths[0] == key:
            reused = _reused(key, paths[1], cache, previous)
            if reused is not None:
                bundles[shard.folder] = reused
    missing = [s for s in shards if s.folder not in bundles]
    if missing:
        workers = max(1, min(len(missing), config.jobs or os.cpu_count() or 1, 4))
        problems: list[Problem] = []
        with ThreadPoolExecutor(workers) as pool:
            made = pool.map(lambda s: _run_pagefind(s, executable, keys[s.folder]), missing)
            for shard, (bundle, failed) in zip(missing, made, strict=True):
                bundles[shard.folder] = list(bundle)
                problems += failed
                if not failed:
                    _store(cache / f"{keys[shard.folder]}.pickle", bundle)
        if problems:
            return [], problems
        index = {s.folder: (keys[s.folder], [f.path for f in bundles[s.folder]]) for s in shards}
        atomic_write(cache / INDEX_NAME, pickle.dumps((index, searched)), durable=False)
        _forget_others(cache, {f"{key}.pickle" for key in keys.values()} | {INDEX_NAME})
    listing = json.dumps([s.folder.removeprefix(f"{BUNDLE}/") for s in shards[1:]])
    found = [f for s in shards for f in bundles[s.folder]]
    return [*found, OutputFile(f"{BUNDLE}/{SHARD_LIST}", listing.encode(), "search")], []


def _reused(
    key: str, paths: Sequence[str], cache: Path, previous: PreviousSite | None
) -> list[SiteFile] | None:
    """A shard's bundle made before: kept in the output folder where it is intact there,
    else read from the cache folder; None when it is in neither."""
    kept = [previous.kept(path, key, "search") for path in paths] if previous else []
    if kept and all(kept):
        return kept  # type: ignore[return-value]
    try:
        stored = pickle.loads((cache / f"{key}.pickle").read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        return None
    if not isinstance(stored, list) or [path for path, _ in stored] != list(paths):
        return None
    return [OutputFile(path, data, "search", key) for path, data in stored]


def _store(path: Path, bundle: list[OutputFile]) -> None:
    """Keep a shard's bundle in the cache folder (a failure to do so only costs a rerun)."""
    with contextlib.suppress(OSError):
        atomic_write(path, pickle.dumps([(f.path, f.data) for f in bundle]), durable=False)


def _forget_others(cache: Path, kept: set[str]) -> None:
    """Remove the cached bundles of shards that are no more."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(cache):
            if entry.name not in kept:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)  # noqa: PTH108


def shard_pages(pages: list[SiteFile], shard_size: int) -> list[_Shard]:
    """``pages`` in shards of about ``shard_size``, each page's shard chosen by a hash of
    its path (adding a post changes one shard, until the number of shards grows)."""
    count = max(1, math.ceil(len(pages) / shard_size))
    members: list[list[SiteFile]] = [[] for _ in range(count)]
    for page in pages:
        digest = hashlib.sha256(page.path.encode()).digest()
        members[int.from_bytes(digest[:8], "big") % count].append(page)
    folders = [f"{BUNDLE}/"] + [f"{BUNDLE}/{n}/" for n in range(1, count)]
    return [_Shard(f, tuple(m)) for f, m in zip(folders, members, strict=True) if m]


Searched = tuple[str, str]  # (the page's inputs digest, the digest of what is searched)


def _searched(page: SiteFile, known: dict[str, Searched]) -> Searched:
    """The digest of what Pagefind reads of ``page``: its language and ``<main>`` (the
    header, footer and stylesheets do not change what is found). A page kept from the last
    build, with the inputs it had when its digest was taken, is not read again."""
    last = known.get(page.path)
    if page.inputs and last is not None and last[0] == page.inputs:
        return last
    data = page.data
    main = _main_of(data)
    lang = _LANG.search(data)
    digest = hashlib.sha256()
    for part in (lang[0] if lang else b"", data if main is None else main):
        digest.update(len(part).to_bytes(8, "big") + part)
    return page.inputs, digest.hexdigest()


def _main_of(page: bytes) -> bytes | None:
    """The page's first ``<main ...>...</main>`` (``bytes.find``: a lazy regex over every
    page cost 0.4 s for 1,000 pages)."""
    start = page.find(b"<main")
    while start >= 0 and (
        page[start + 5 : start + 6].isalnum() or page[start + 5 : start + 6] == b"_"
    ):
        start = page.find(b"<main", start + 5)  # <mainframe>, <main_x>: not the element
    end = page.find(b"</main>", start) if start >= 0 else -1
    return page[start : end + len(b"</main>")] if end >= 0 else None


def _binary_key(executable: Path) -> str:
    """The Pagefind binary: its path, size and modification time (an upgrade replaces it)."""
    try:
        stat = executable.stat()
    except OSError:
        return "unknown"
    return f"{executable}\0{stat.st_size}\0{stat.st_mtime_ns}"


def _key(binary: str, shard: _Shard, searched: dict[str, Searched]) -> str:
    """What a shard's bundle is made of: the binary, and each page's path and searched part."""
    digest = hashlib.sha256(f"{binary}\0{shard.folder}\0".encode())
    for page in shard.pages:
        digest.update(f"{page.path}\0{searched[page.path][1]}\0".encode())
    return digest.hexdigest()


def _cached(path: Path) -> tuple[dict[str, tuple[str, list[str]]], dict[str, Searched]]:
    """The last index: each shard's key and file paths, and what was searched of each
    page."""
    try:
        shards, searched = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        return {}, {}
    if not isinstance(shards, dict) or not isinstance(searched, dict):
        return {}, {}
    return shards, searched


def searchable(page: bytes) -> bytes:
    """``page`` as Pagefind is given it: its highlighted code blocks without Pygments'
    class-only ``<span>`` tags (a block with another kind of span is left as it is: end
    tags must stay paired with their start tags). Found with ``bytes.find``: a regex with
    a lazy ``.*?`` over each block took 1.6 s for 1,000 pages, this 0.2."""
    parts: list[bytes] = []
    done = 0
    while (start := page.find(b'<div class="highlight"', done)) >= 0:
        body = page.find(b"<pre><code>", start)
        end = page.find(b"</code></pre>", body)
        if body < 0 or end < 0:
            break
        body += len(b"<pre><code>")
        code = page[body:end]
        if _OTHER_SPAN.search(code) is None:
            code = _CLASS_SPAN.sub(b"", code).replace(b"</span>", b"")
        parts += (page[done:body], code)
        done = end
    parts.append(page[done:])
    return b"".join(parts)


def _scratch_root() -> str | None:
    """A memory-backed folder for the pages Pagefind reads, where there is one."""
    if os.path.isdir(_SCRATCH) and os.access(_SCRATCH, os.W_OK | os.X_OK):  # noqa: PTH112
        return _SCRATCH
    return None


def _run_pagefind(
    shard: _Shard, executable: Path, key: str
) -> tuple[list[OutputFile], list[Problem]]:
    try:
        folder = tempfile.mkdtemp(prefix="raypress-search-", dir=_scratch_root())
    except OSError:
        folder = tempfile.mkdtemp(prefix="raypress-search-")
    try:
        return _index_in(Path(folder), shard, executable, key)
    except OSError as exc:  # a full scratch folder, ...
        return [], [_problem(f"Pagefind's pages could not be written: {exc}")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _index_in(
    folder: Path, shard: _Shard, executable: Path, key: str
) -> tuple[list[OutputFile], list[Problem]]:
    site, bundle = folder / "site", folder / BUNDLE
    made: set[str] = set()
    for item in shard.pages:
        target = f"{site}/{item.path}"
        parent = os.path.dirname(target)  # noqa: PTH120
        if parent not in made:
            os.makedirs(parent, exist_ok=True)  # noqa: PTH103
            made.add(parent)
        with open(target, "wb") as handle:  # noqa: PTH123
            handle.write(searchable(item.data))
    command = [str(executable), "--site", str(site), "--output-path", str(bundle), "--silent"]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], [_problem(f"Pagefind did not run: {exc}")]
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        return [], [_problem(f"Pagefind failed: {message[-1] if message else done.returncode}")]
    first = shard.folder == f"{BUNDLE}/"
    found = sorted(p for p in bundle.rglob("*") if p.is_file())
    return [
        OutputFile(shard.folder + p.relative_to(bundle).as_posix(), p.read_bytes(), "search", key)
        for p in found
        if not p.name.startswith(_UNUSED) and (first or not p.name.endswith(_SCRIPTS))
    ], []


def _problem(message: str) -> Problem:
    return Problem("search index", None, message, "or set search = false in the configuration")
