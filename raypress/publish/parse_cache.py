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
import functools
import hashlib
import os
import pickle
import signal
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from raypress import __version__
from raypress.config import Config
from raypress.errors import Problem
from raypress.execution.model import InlineExpression, Snippet, SnippetOptions
from raypress.publish.highlight import Fence, Highlighter, pygments_version
from raypress.publish.markdown import MarkdownSettings, ParsedBody, TocEntry, parse_body
from raypress.publish.posts import Post

if TYPE_CHECKING:
    import multiprocessing.context
    from multiprocessing.connection import Connection

CACHE_NAME = "build-cache.pickle"
ADDED_NAME = "build-cache-added.pickle"
FILES_NAME = "build-cache-files"  # entries read only when needed: 16 bucket files
_FORMAT = 3
_PARALLEL_FROM = 24  # below this many posts, process start-up costs more than it saves
# characters of posts from which the Python lexer's fast path is set up before the workers
# start (~0.1 s here, instead of in each worker after it lexed WARM_UP characters slowly)
_PREPARE_FROM = 500_000
BIG_POST_BYTES = 200_000  # bodies larger than this are parsed under a time budget
_PR_SET_PDEATHSIG = 1


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


@functools.lru_cache(maxsize=32)
def _text(value: object) -> str:
    """``str(value)`` of a key's part that is the same for every post (computed once)."""
    return str(sorted(value)) if isinstance(value, frozenset) else str(value)


def body_key(post: Post, settings: MarkdownSettings) -> str:
    """What a parsed body depends on: the file's bytes, its path, settings, raypress."""
    return _key("body", _text(settings), post.source, post.digest, post.body_line)


def post_key(source: str, digest: str, config: Config, layouts: frozenset[str]) -> str:
    """What a Post read from a file depends on besides the file's bytes and path."""
    settings = (config.timezone, config.permalink_pattern, config.max_post_bytes)
    return _key("post", source, digest, _text(settings), _text(layouts))


class BuildCache:
    """Posts, parsed bodies and highlighted code from earlier builds, in two pickle files
    in the cache folder: the whole cache as some build left it, and the entries added
    since (so a build that parsed one post writes one entry, not the whole cache).

    Entries this build did not use (deleted or edited posts) are dropped when the whole
    cache is written again: when they, or the added entries, are a tenth of it.

    Entries needed only now and then (a post's highlighted fences: only when it is parsed
    again) are kept apart (``get_file``, ``put_file``, ``keep_file``) in files by the first
    digit of their key, so a build that parses one post loads a sixteenth of
    them, and a cold build writes 16 files, not one per post (file creation is what a cold
    build's writing costs on a slow disk); unused ones are dropped with the stale entries.
    """

    def __init__(self, folder: Path):
        self.path = folder / CACHE_NAME
        self.added_path = folder / ADDED_NAME
        self.files_path = folder / FILES_NAME
        self.base = self._load(self.path)
        self.added = self._load(self.added_path) if self.base else {}
        self.entries: dict[str, Any] = {**self.base, **self.added}
        self.used: set[str] = set()
        self.dirty = False
        self.files_used: set[str] = set()
        self.files_added: dict[str, Any] = {}
        self.buckets: dict[str, dict[str, Any]] = {}  # the bucket files read so far

    @staticmethod
    def _load(path: Path) -> dict[str, Any]:
        try:
            with path.open("rb") as handle:
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
        self.added[key] = value
        self.used.add(key)
        self.dirty = True

    def get_file(self, key: str) -> Any:
        """The value kept apart for ``key``, or None."""
        self.files_used.add(key)
        return self._bucket(key[:1]).get(key)

    def put_file(self, key: str, value: Any) -> None:
        """Keep ``value`` apart (written by ``save``)."""
        self.files_used.add(key)
        self.files_added[key] = value

    def keep_file(self, key: str) -> None:
        """The value kept apart for ``key`` is still wanted, though not read in this build."""
        self.files_used.add(key)

    def _bucket(self, name: str) -> dict[str, Any]:
        if name not in self.buckets:
            self.buckets[name] = self._load(self.files_path / f"{name}.pickle")
        return self.buckets[name]

    def save(self) -> None:
        """Write what changed: the added entries alone, or the whole cache."""
        stale = set(self.entries) - self.used
        whole = not self.base or len(stale) > max(64, len(self.used) // 10)
        self._save_files(every_bucket=whole)
        if not self.dirty and not stale:
            return
        tenth = max(64, len(self.used) // 10)
        if len(stale) > tenth or len(self.added) > tenth or not self.base:
            kept = {key: self.entries[key] for key in self.used}
            self._write(self.path, kept)
            self.added_path.unlink(missing_ok=True)
            self.base, self.added = kept, {}
        elif self.dirty:
            self.added = {key: value for key, value in self.added.items() if key in self.used}
            self._write(self.added_path, self.added)
        self.dirty = False

    def _save_files(self, every_bucket: bool) -> None:
        """Rewrite the buckets that gained entries (and, with ``every_bucket``, those that
        hold entries no longer used), without the unused ones."""
        names = {key[:1] for key in self.files_added}
        if every_bucket:
            with contextlib.suppress(OSError):
                for path in self.files_path.iterdir():
                    if len(path.stem) == 1 and path.suffix == ".pickle":
                        names.add(path.stem)
                    elif not path.name.startswith("."):  # not a bucket: an older layout's
                        path.unlink(missing_ok=True)
        for name in sorted(names):
            bucket = self._bucket(name)
            kept = {k: v for k, v in bucket.items() if k in self.files_used}
            kept.update((k, v) for k, v in self.files_added.items() if k[:1] == name)
            if kept == bucket:
                continue
            if kept:
                self._write(self.files_path / f"{name}.pickle", kept)
            else:
                (self.files_path / f"{name}.pickle").unlink(missing_ok=True)
            self.buckets[name] = kept
        self.files_added = {}

    @staticmethod
    def _write(path: Path, entries: dict[str, Any]) -> None:
        """Pickle straight into a temporary file renamed over ``path`` (no copy of tens
        of megabytes in memory)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                payload = {"format": _CACHE_VERSION, "entries": entries}
                _Pickler(handle, protocol=pickle.HIGHEST_PROTOCOL).dump(payload)
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def parse_bodies(
    posts: Sequence[Post],
    settings: MarkdownSettings,
    cache: BuildCache,
    jobs: int,
    budget: float = 10.0,
    meanwhile: Callable[[], None] | None = None,
) -> tuple[dict[str, ParsedBody], list[Problem], int]:
    """The ParsedBody of each post (by source path), the posts that could not be parsed,
    and how many bodies had to be parsed (not found in the cache). A post parsed again
    gets the fences highlighted at its last parse back from the cache. ``meanwhile`` is
    called once, while worker processes parse if there are any (else before parsing)."""
    keys = {post.source: body_key(post, settings) for post in posts}
    bodies: dict[str, ParsedBody] = {}
    missing: list[Post] = []
    for post in posts:
        cached = cache.get(keys[post.source])
        if cached is None:
            missing.append(post)
        else:
            bodies[post.source] = cached
            cache.keep_file(fences_key(post))  # kept for the post's next edit
    known = [cache.get_file(fences_key(post)) or {} for post in missing]
    problems: list[Problem] = []
    parsed = _parse_many(missing, settings, known, jobs, budget, meanwhile or (lambda: None))
    for post, (body, fences) in zip(missing, parsed, strict=True):
        if isinstance(body, Problem):
            problems.append(body)
            continue
        cache.put(keys[post.source], body)
        cache.put_file(fences_key(post), fences)
        bodies[post.source] = body
    return bodies, problems, len(missing)


def fences_key(post: Post) -> str:
    """Where the highlighted fences of a post's last parse are kept (by its path: they
    are looked up by language and code, so an edit elsewhere in the post reuses them)."""
    return _key("fences", post.source, pygments_version())


Parsed = tuple[ParsedBody | Problem, dict[Fence, str]]


def _parse_safely(post: Post, settings: MarkdownSettings, known: dict[Fence, str]) -> Parsed:
    highlighter = Highlighter(known)
    try:
        return parse_body(post, settings, highlighter), highlighter.used
    except (RecursionError, MemoryError, ValueError, IndexError) as exc:
        problem = Problem(
            post.source,
            None,
            f"the Markdown could not be rendered ({type(exc).__name__})",
            "simplify the deeply nested or very long construct",
        )
        return problem, {}


def _parse_many(
    posts: list[Post],
    settings: MarkdownSettings,
    known: list[dict[Fence, str]],
    jobs: int,
    budget: float,
    meanwhile: Callable[[], None],
) -> list[Parsed]:
    """Parse ``posts`` on up to ``jobs`` processes; a post over BIG_POST_BYTES is parsed in
    a process of its own that is killed after ``budget`` seconds."""
    results: dict[int, Parsed] = {}
    small = [i for i, p in enumerate(posts) if len(p.body) <= BIG_POST_BYTES]
    for i, post in enumerate(posts):
        if len(post.body) > BIG_POST_BYTES:
            results[i] = _parse_with_budget(post, settings, known[i], budget)
    workers = min(jobs or os.cpu_count() or 1, len(small))
    if workers < 2 or len(small) < _PARALLEL_FROM:
        meanwhile()
        results.update((i, _parse_safely(posts[i], settings, known[i])) for i in small)
    else:
        if sum(len(posts[i].body) for i in small) > _PREPARE_FROM:  # workers inherit it
            from raypress.publish.fast_lexing import prepare

            prepare("python")
        chunk = max(1, len(small) // (workers * 8))
        # the with-block terminates the workers on the way out, however it is left
        with _context().Pool(workers, _worker_start, (os.getpid(),)) as pool:
            pending = pool.starmap_async(
                _parse_safely,
                [(posts[i], settings, known[i]) for i in small],
                chunksize=chunk,
            )  # submitted now; the results are waited for below
            meanwhile()  # this process would only wait: it does the caller's work
            results.update(zip(small, pending.get(), strict=True))
    return [results[i] for i in range(len(posts))]


def _parse_with_budget(
    post: Post, settings: MarkdownSettings, known: dict[Fence, str], budget: float
) -> Parsed:
    """Parse one big post in a child process; refuse it if that takes over ``budget`` s."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    arguments = (post, settings, known, sender, os.getpid())
    child = context.Process(target=_parse_into, args=arguments, daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(budget):
            return receiver.recv()
        problem = Problem(
            post.source,
            None,
            f"rendering this post's Markdown took over {budget:g} s ({len(post.body):,} "
            "characters); refused",
            "split the post or simplify its largest construct, or raise render_timeout",
        )
        return problem, {}
    except EOFError:
        crashed = Problem(post.source, None, "the Markdown renderer crashed on this post", None)
        return crashed, {}
    finally:
        child.kill()
        child.join()
        receiver.close()


def _parse_into(
    post: Post,
    settings: MarkdownSettings,
    known: dict[Fence, str],
    sender: Connection,
    parent: int,
) -> None:
    _worker_start(parent)
    sender.send(_parse_safely(post, settings, known))
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
    import multiprocessing

    return multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
