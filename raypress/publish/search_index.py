"""The full-text search index: Pagefind over the rendered post pages.

Pagefind (its PyPI package ships the binary) indexes the site's HTML into a static bundle
of small files that the search page's script queries in the browser: no server. The post
pages rendered in memory are written to a temporary folder, Pagefind's command line indexes
them there (its Python API was ~100x slower, one request per page), and its bundle comes
back as output files under ``pagefind/``, so the site writer writes it with the rest of the
site in one atomic swap. Only what a post's ``data-pagefind-body`` marks is indexed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from raypress.config import Config
from raypress.errors import Problem
from raypress.paths import safe_output_file
from raypress.publish.site_writer import OutputFile

BUNDLE = "pagefind"
# Pagefind's own UIs: the theme's search page has a script of its own (assets/search.js)
_UNUSED = ("pagefind-ui.", "pagefind-modular-ui.", "pagefind-component-ui.", "pagefind-highlight.")
TIMEOUT_S = 300


def search_index(
    files: list[OutputFile], post_urls: set[str], config: Config
) -> tuple[list[OutputFile], list[Problem]]:
    """The Pagefind bundle for the post pages among ``files`` (their URLs ``post_urls``)."""
    try:
        from pagefind_bin import get_executable
    except ImportError:
        return [], [_problem("Pagefind is not installed (pip install 'pagefind[bin]')")]
    pages = {safe_output_file(url) for url in post_urls}
    if not pages:  # nothing to search: the search page says so
        return [], []
    with tempfile.TemporaryDirectory(prefix="raypress-search-") as folder:
        site, bundle = Path(folder, "site"), Path(folder, BUNDLE)
        site.mkdir()
        for item in files:
            if item.path in pages:
                target = site / item.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(item.data)
        command = [str(get_executable()), "--site", str(site), "--output-path", str(bundle)]
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
