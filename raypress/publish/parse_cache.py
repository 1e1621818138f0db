"""Posts and parsed bodies, computed in parallel and cached by content.

Markdown parsing and Pygments highlighting are most of a build's time, so a body is
re-rendered only when its post file (or the Markdown settings, or raypress) changed. Cold
builds spread the work over processes, which die with the build: killed when it stops
for any reason (Ctrl-C and SIGTERM included) and, should it be SIGKILLed, by the kernel
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import multiprocessing
import os
import pickle
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from raypress import __version__
from raypress.config import Config
from raypress.errors import Problem
from raypress.execution.model import InlineExpression, Snippet, SnippetOptions
from raypress.paths import atomic_write
from raypress.publish.markdown import MarkdownSettings, ParsedBody, TocEntry, parse_body
from raypress.publish.posts import Post

CACHE_NAME = "build-cache.pickle"
_FORMAT = 2
_PARALLEL_FROM = 24  # below this many posts, process start-up costs more than it saves
BIG_POST_BYTES = 200_000  # bodies larger than this are parsed under a time budget
_PR_SET_PDEATHSIG = 1


def _schema() -> str:
    """The shape of what is cached: a changed dataclass invalidates the cache file."""
    classes = (Post, ParsedBody, TocEntry, Snippet, SnippetOptions, InlineExpression)
    return repr([(c.__name__, [f.name for f in dataclasses.fields(c)]) for c in classes])


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
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
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
        # the with-block terminates the workers on the way out, however it is left
        with _context().Pool(workers, _worker_start, (os.getpid(),)) as pool:
            parsed = pool.starmap(_parse_safely, [(p, settings) for _, p in small], chunksize=chunk)
            results.update(zip([i for i, _ in small], parsed, strict=True))
    return [results[i] for i in range(len(posts))]


def _parse_with_budget(
    post: Post, settings: MarkdownSettings, budget: float
) -> ParsedBody | Problem:
    """Parse one big post in a child process; refuse it if that takes over ``budget`` s."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_parse_into, args=(post, settings, sender, os.getpid()), daemon=True
    )
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


def _parse_into(post: Post, settings: MarkdownSettings, sender: Connection, parent: int) -> None:
    _worker_start(parent)
    sender.send(_parse_safely(post, settings))
    sender.close()


def _worker_start(parent: int) -> None:
    """In a parse worker: die with the build (even SIGKILLed), leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the build died before the line above
        os._exit(1)


def _context() -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
