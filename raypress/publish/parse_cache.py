"""Posts and parsed bodies, computed in parallel and cached by content.

Markdown parsing and Pygments highlighting are most of a build's time, so a body is
re-rendered only when its post file (or the Markdown settings, or raypress) changed. Cold
builds spread the work over processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import multiprocessing
import os
import pickle
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from raypress import __version__
from raypress.config import Config
from raypress.errors import Problem
from raypress.execution.model import InlineExpression, Snippet, SnippetOptions
from raypress.paths import atomic_write
from raypress.publish.markdown import MarkdownSettings, ParsedBody, TocEntry, parse_body
from raypress.publish.posts import Post

CACHE_NAME = "build-cache.pickle"
_FORMAT = 3
_PARALLEL_FROM = 24  # below this many posts, process start-up costs more than it saves
BIG_POST_BYTES = 200_000  # bodies larger than this are parsed under a time budget


_CACHED_CLASSES = (Post, ParsedBody, TocEntry, Snippet, SnippetOptions, InlineExpression)


def _schema() -> str:
    """The shape of what is cached: a changed dataclass invalidates the cache file."""
    return repr([(c.__name__, [f.name for f in dataclasses.fields(c)]) for c in _CACHED_CLASSES])


class _Pickler(pickle.Pickler):
    """Pickles the cached dataclasses as ``cls(*fields)``: loading calls their __init__,
    several times faster than the generic ``__setstate__`` of a slots dataclass (the
    cache of a 1,000-post site holds about 10,000 of them)."""

    fields: ClassVar[Mapping[type, tuple[str, ...]]] = MappingProxyType(
        {
            c: tuple(f.name for f in dataclasses.fields(c))
            for c in _CACHED_CLASSES
            if not hasattr(c, "__post_init__") and all(f.init for f in dataclasses.fields(c))
        }
    )

    def reducer_override(self, obj: Any) -> Any:
        names = self.fields.get(type(obj))
        if names is None:
            return NotImplemented
        return type(obj), tuple(getattr(obj, name) for name in names)


_CACHE_VERSION = (_FORMAT, __version__, _schema())


def _key(*parts: object) -> str:
    text = "|".join(str(p) for p in (_FORMAT, __version__, *parts))
    return hashlib.sha256(text.encode()).hexdigest()


def body_key(post: Post, settings: MarkdownSettings) -> str:
    """What a parsed body depends on: the file's bytes, its path, settings, raypress."""
    return _key("body", settings, post.source, post.digest, post.body_line)


def post_key(source: str, digest: str, config: Config, layouts: frozenset[str]) -> str:
    """What a Post read from a file depends on besides the file's bytes and path."""
    settings = (config.timezone, config.permalink_pattern, config.max_post_bytes)
    return _key("post", source, digest, settings, sorted(layouts))


class BuildCache:
    """Posts and parsed bodies from earlier builds, in one pickle file in the cache folder.

    Entries used by this build are kept when it is saved; the rest (deleted or edited
    posts) are dropped.
    """

    def __init__(self, folder: Path):
        self.path = folder / CACHE_NAME
        self.entries: dict[str, Any] = self._load()
        self.used: set[str] = set()
        self.dirty = False

    def _load(self) -> dict[str, Any]:
        try:
            with self.path.open("rb") as handle:
                data = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _CACHE_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Any:
        """The cached value for ``key``, or None."""
        value = self.entries.get(key)
        if value is not None:
            self.used.add(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        self.used.add(key)
        self.dirty = True

    def save(self) -> None:
        """Write the cache back with only the entries this build used."""
        stale = set(self.entries) - self.used
        if not self.dirty and not stale:
            return
        for key in stale:
            del self.entries[key]
        payload = {"format": _CACHE_VERSION, "entries": self.entries}
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(payload)
        data = buffer.getvalue()
        atomic_write(self.path, data, durable=False)
        self.dirty = False


def parse_bodies(
    posts: Sequence[Post],
    settings: MarkdownSettings,
    cache: BuildCache,
    jobs: int,
    budget: float = 10.0,
) -> tuple[dict[str, ParsedBody], list[Problem], int]:
    """The ParsedBody of each post (by source path), the posts that could not be parsed,
    and how many bodies had to be parsed (not found in the cache)."""
    keys = {post.source: body_key(post, settings) for post in posts}
    bodies: dict[str, ParsedBody] = {}
    missing: list[Post] = []
    for post in posts:
        cached = cache.get(keys[post.source])
        if cached is None:
            missing.append(post)
        else:
            bodies[post.source] = cached
    problems: list[Problem] = []
    for post, body in zip(missing, _parse_many(missing, settings, jobs, budget), strict=True):
        if isinstance(body, Problem):
            problems.append(body)
            continue
        cache.put(keys[post.source], body)
        bodies[post.source] = body
    return bodies, problems, len(missing)


def _parse_safely(post: Post, settings: MarkdownSettings) -> ParsedBody | Problem:
    try:
        return parse_body(post, settings)
    except (RecursionError, MemoryError, ValueError, IndexError) as exc:
        return Problem(
            post.source,
            None,
            f"the Markdown could not be rendered ({type(exc).__name__})",
            "simplify the deeply nested or very long construct",
        )


def _parse_many(
    posts: list[Post], settings: MarkdownSettings, jobs: int, budget: float
) -> list[ParsedBody | Problem]:
    """Parse ``posts`` on up to ``jobs`` processes; a post over BIG_POST_BYTES is parsed in
    a process of its own that is killed after ``budget`` seconds."""
    results: dict[int, ParsedBody | Problem] = {}
    small = [(i, p) for i, p in enumerate(posts) if len(p.body) <= BIG_POST_BYTES]
    for i, post in enumerate(posts):
        if len(post.body) > BIG_POST_BYTES:
            results[i] = _parse_with_budget(post, settings, budget)
    workers = min(jobs or os.cpu_count() or 1, len(small))
    if workers < 2 or len(small) < _PARALLEL_FROM:
        results.update((i, _parse_safely(post, settings)) for i, post in small)
    else:
        chunk = max(1, len(small) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
            parsed = pool.map(
                _parse_safely, [p for _, p in small], [settings] * len(small), chunksize=chunk
            )
            results.update(zip([i for i, _ in small], parsed, strict=True))
    return [results[i] for i in range(len(posts))]


def _parse_with_budget(
    post: Post, settings: MarkdownSettings, budget: float
) -> ParsedBody | Problem:
    """Parse one big post in a child process; refuse it if that takes over ``budget`` s."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_parse_into, args=(post, settings, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(budget):
            return receiver.recv()
        return Problem(
            post.source,
            None,
            f"rendering this post's Markdown took over {budget:g} s ({len(post.body):,} "
            "characters); refused",
            "split the post or simplify its largest construct, or raise render_timeout",
        )
    except EOFError:
        return Problem(post.source, None, "the Markdown renderer crashed on this post", None)
    finally:
        child.kill()
        child.join()
        receiver.close()


def _parse_into(post: Post, settings: MarkdownSettings, sender: Connection) -> None:
    sender.send(_parse_safely(post, settings))
    sender.close()


def _context() -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
