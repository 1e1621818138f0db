"""The full-text search index: Pagefind over the rendered post pages.

Pagefind (its PyPI package ships the binary) indexes the site's HTML into a static bundle
of small files that the search page's script queries in the browser: no server. The post
pages rendered in memory are written to a temporary folder, Pagefind's command line indexes
them there (its Python API was ~100x slower, one request per page), and its bundle comes
back as output files under ``pagefind/``, so the site writer writes it with the rest of the
site in one atomic swap. Only what a post's ``data-pagefind-body`` marks is indexed.

Indexing costs Pagefind about 8 ms of CPU per post (it has no incremental mode), so the
bundle is kept in the cache folder under a key made of what it indexes (each post page's
path, language and ``<main>``): a build whose posts' content did not change (a stylesheet,
a header template, a static file edited) reuses it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import subprocess
import tempfile
from pathlib import Path

from raypress.config import Config
from raypress.errors import Problem
from raypress.paths import atomic_write
from raypress.publish.site_writer import OutputFile, SiteFile

BUNDLE = "pagefind"
# Pagefind's own UIs: the theme's search page has a script of its own (assets/search.js)
_UNUSED = ("pagefind-ui.", "pagefind-modular-ui.", "pagefind-component-ui.", "pagefind-highlight.")
TIMEOUT_S = 300
CACHE_NAME = "search-index.pickle"
_MAIN = re.compile(rb"<main\b.*?</main>", re.DOTALL)
_LANG = re.compile(rb"<html\b[^>]*>")


def search_index(
    files: list[SiteFile], post_pages: set[str], config: Config
) -> tuple[list[OutputFile], list[Problem]]:
    """The Pagefind bundle for the post pages among ``files`` (``post_pages``: their paths
    in the output folder; not their URLs, which may be percent-encoded)."""
    try:
        from pagefind_bin import get_executable
    except ImportError:
        return [], [_problem("Pagefind is not installed (pip install 'pagefind[bin]')")]
    indexed = sorted((f for f in files if f.path in post_pages), key=lambda f: f.path)
    if not indexed:  # nothing to search: the search page says so
        return [], []
    cache = config.cache_path / CACHE_NAME
    stored_key, stored_bundle, known = _cached(cache)
    searched = {page.path: _searched(page, known) for page in indexed}
    try:
        executable = get_executable()
    except OSError as exc:  # the package without its binary (a broken install)
        return [], [_problem(f"Pagefind's program is missing: {exc}")]
    key = _key(searched, executable)
    if stored_key == key:
        return stored_bundle, []
    bundle, problems = _run_pagefind(indexed, executable)
    if not problems:
        atomic_write(cache, pickle.dumps((key, bundle, searched)), durable=False)
    return bundle, problems


Searched = tuple[str, str]  # (the page's inputs digest, the digest of what is searched)


def _searched(page: SiteFile, known: dict[str, Searched]) -> Searched:
    """The digest of what Pagefind reads of ``page``: its language and ``<main>`` (the
    header, footer and stylesheets do not change what is found). A page kept from the last
    build, with the inputs it had when its digest was taken, is not read again."""
    last = known.get(page.path)
    if page.inputs and last is not None and last[0] == page.inputs:
        return last
    data = page.data
    main = _MAIN.search(data)
    lang = _LANG.search(data)
    digest = hashlib.sha256()
    for part in (lang[0] if lang else b"", main[0] if main else data):
        digest.update(len(part).to_bytes(8, "big") + part)
    return page.inputs, digest.hexdigest()


def _key(searched: dict[str, Searched], executable: Path) -> str:
    """What the index is made of: the Pagefind binary (its path, size and modification
    time: an upgrade replaces it), each page's path and what is searched of it."""
    digest = hashlib.sha256()
    try:
        stat = executable.stat()
        digest.update(f"{executable}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    except OSError:
        digest.update(b"unknown")
    for path, (_, text) in sorted(searched.items()):
        digest.update(f"{path}\0{text}\0".encode())
    return digest.hexdigest()


def _cached(path: Path) -> tuple[str, list[OutputFile], dict[str, Searched]]:
    """The last index: its key, its files and what was searched of each page."""
    try:
        key, files, searched = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        return "", [], {}
    return key, files, searched


def _run_pagefind(
    pages: list[SiteFile], executable: Path
) -> tuple[list[OutputFile], list[Problem]]:
    with tempfile.TemporaryDirectory(prefix="raypress-search-") as folder:
        site, bundle = Path(folder, "site"), Path(folder, BUNDLE)
        site.mkdir()
        for item in pages:
            target = site / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.data)
        command = [str(executable), "--site", str(site), "--output-path", str(bundle)]
        try:
            done = subprocess.run(
                [*command, "--silent"],
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
        found = sorted(p for p in bundle.rglob("*") if p.is_file())
        return [
            OutputFile(f"{BUNDLE}/{p.relative_to(bundle).as_posix()}", p.read_bytes(), "search")
            for p in found
            if not p.name.startswith(_UNUSED)
        ], []


def _problem(message: str) -> Problem:
    return Problem("search index", None, message, "or set search = false in the configuration")
