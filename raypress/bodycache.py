"""Parsed bodies, computed in parallel and cached by content.

Markdown parsing and Pygments highlighting are most of a build's time, so a body is
re-rendered only when its post file (or the Markdown settings, or raypress) changed. Cold
builds spread the work over processes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from raypress import __version__
from raypress.content import Post
from raypress.errors import Problem
from raypress.markdown import MarkdownSettings, ParsedBody, parse_body
from raypress.site import atomic_write

CACHE_NAME = "bodies.pickle"
_FORMAT = 1
_PARALLEL_FROM = 24  # below this many posts, process start-up costs more than it saves


def body_key(post: Post, settings: MarkdownSettings) -> str:
    """What a parsed body depends on: the file's bytes, its path, settings, raypress."""
    text = f"{_FORMAT}|{__version__}|{settings!r}|{post.source}|{post.digest}|{post.body_line}"
    return hashlib.sha256(text.encode()).hexdigest()


class BodyCache:
    """A dict of key -> ParsedBody kept in one pickle file in the cache folder."""

    def __init__(self, folder: Path):
        self.path = folder / CACHE_NAME
        self.entries: dict[str, ParsedBody] = self._load()
        self.dirty = False

    def _load(self) -> dict[str, ParsedBody]:
        try:
            with self.path.open("rb") as handle:
                data = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            return {}
        if not isinstance(data, dict) or data.get("format") != (_FORMAT, __version__):
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def save(self, keep: set[str]) -> None:
        """Write the cache back, keeping only the ``keep`` keys (posts that still exist)."""
        stale = set(self.entries) - keep
        if not self.dirty and not stale:
            return
        for key in stale:
            del self.entries[key]
        payload = {"format": (_FORMAT, __version__), "entries": self.entries}
        atomic_write(self.path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        self.dirty = False


def parse_bodies(
    posts: Sequence[Post], settings: MarkdownSettings, cache: BodyCache, jobs: int
) -> tuple[dict[str, ParsedBody], list[Problem], int]:
    """The ParsedBody of each post (by source path), the posts that could not be parsed,
    and how many bodies had to be parsed (not found in the cache)."""
    keys = {post.source: body_key(post, settings) for post in posts}
    missing = [post for post in posts if keys[post.source] not in cache.entries]
    problems: list[Problem] = []
    for post, body in zip(missing, _parse_many(missing, settings, jobs), strict=True):
        if isinstance(body, Problem):
            problems.append(body)
            continue
        cache.entries[keys[post.source]] = body
        cache.dirty = True
    bodies = {p.source: cache.entries[keys[p.source]] for p in posts if keys[p.source] in cache.entries}
    return bodies, problems, len(missing)


def _parse_safely(post: Post, settings: MarkdownSettings) -> ParsedBody | Problem:
    try:
        return parse_body(post, settings)
    except (RecursionError, MemoryError, ValueError, IndexError) as exc:
        return Problem(
            post.source, None, f"the Markdown could not be rendered ({type(exc).__name__})",
            "simplify the deeply nested or very long construct",
        )


def _parse_many(
    posts: list[Post], settings: MarkdownSettings, jobs: int
) -> list[ParsedBody | Problem]:
    workers = min(jobs or os.cpu_count() or 1, len(posts))
    if workers < 2 or len(posts) < _PARALLEL_FROM:
        return [_parse_safely(post, settings) for post in posts]
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    chunk = max(1, len(posts) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_parse_safely, posts, [settings] * len(posts), chunksize=chunk))
