"""Start the execution engine while the posts are still being parsed.

Starting the engine (the sandbox, the fork server and its imports) takes about 150 ms,
and parsing the posts and compiling the templates about as long; neither needs the
other. So when a build will almost surely run something, it starts the engine in a
thread right after reading the posts, has its fork server import what the posts seem to
import (``import numpy`` in a post's text: NumPy, about 100 ms), and the execute stage
uses it as it would use ``serve``'s warm engine
(:class:`raypress.freeze.run_plan.PostExecutor`).

"Almost surely" is judged from the raw post files, before any parsing: a post that may
execute, has a Python fence not marked ``eval: false``, and has no record in
``snippets/`` yet (or is to be run again). A wrong guess costs a fork server started
for nothing (closed at the end of the build), or a start as late as before. Only local
engines start early: ``--ray-address`` and ``executor = "ray"`` connect to a cluster
when the runs are known.

The command line starts it sooner still (:func:`start_from_files`): right after the
build stamp says a build is needed, before the build's own imports (Markdown, Jinja2,
Pygments: about 100 ms), from the same guess made on the raw files without reading
their front matter, except for a line that says ``execute: false`` or makes a post a
draft. The build then runs its posts on that engine (its ``executor``). ``check`` does
the same before its own imports, with every post to be run again.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from raypress.config import Config
from raypress.execution.model import ExecutionSettings, PostExecution, PostRun
from raypress.freeze.records import record_files
from raypress.paths import display_path
from raypress.publish.posts import Post, find_post_files

if TYPE_CHECKING:  # freeze.plan imports markdown-it: not before the CLI starts an engine
    from raypress.freeze.plan import Rerun

# After a fence's first three characters: the rest of the marker, python, py or python3
# (```python, ```{python}, ~~~ py), and its ``#|`` option lines. Inline expressions alone
# run nothing (``run_plan.runnable`` wants a snippet).
_PYTHON_FENCE_REST = re.compile(
    r"[`~]*[ \t]*\{?[ \t]*(?:python3?|py)\b[^\n]*\n((?:[ \t>]*#\|[^\n]*\n)*)"
)
_NOT_EVALUATED = re.compile(r"#\|[ \t]*eval[ \t]*:[ \t]*(?:false|no|off)\b", re.IGNORECASE)
# A line that imports a module the fork server can import ahead (``protocol.WARMABLE``)
_WARMABLE_IMPORT = re.compile(
    r"^[ \t>]*(?:import|from)[ \t]+(numpy|matplotlib|pandas)\b", re.MULTILINE
)
# Front matter lines that keep a post from running: ``execute: false``; and, without
# --drafts, ``draft: true`` or ``published: false`` (YAML's spellings of true and false)
_NOT_EXECUTED = re.compile(r"^execute[ \t]*:[ \t]*(?:false|no|off)[ \t\r]*(?:#.*)?$", re.I | re.M)
_A_DRAFT = re.compile(
    r"^(?:draft[ \t]*:[ \t]*(?:true|yes|on)|published[ \t]*:[ \t]*(?:false|no|off))"
    r"[ \t\r]*(?:#.*)?$",
    re.I | re.M,
)


class PostText(Protocol):
    """What the guess reads of a post: its path in the project and its text."""

    @property
    def source(self) -> str: ...

    @property
    def body(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PostFile:
    """A post file as read before any parsing: ``body`` is the whole file, front matter
    included."""

    source: str
    body: str


def _has_snippet_to_run(body: str) -> bool:
    """A Python fence whose options do not say ``eval: false``. (Found with ``str.find``:
    one multi-line regex over every body took 85 ms for 1,000 posts, this ~15.)"""
    for marker in ("```", "~~~"):
        start = body.find(marker)
        while start != -1:
            line = body.rfind("\n", 0, start) + 1
            if not body[line:start].strip(" \t>"):  # the marker opens its line
                fence = _PYTHON_FENCE_REST.match(body, start + 3)
                if fence and not _NOT_EVALUATED.search(fence.group(1)):
                    return True
            start = body.find(marker, start + 3)
    return False


def will_run(
    posts: Sequence[Post], config: Config, settings: ExecutionSettings, rerun: Rerun
) -> list[Post]:
    """The posts that will almost surely run on a local engine (a guess from the raw
    files, see above); none when ``settings`` send the sessions to a cluster (the
    configuration's ``ray_address`` or ``executor``, or ``RAY_ADDRESS``: ``new_engine``)."""
    if not config.execute or settings.executor != "local" or settings.ray_address:
        return []
    return [
        post
        for post in posts
        if post.execute
        and _has_snippet_to_run(post.body)
        and (
            rerun is True
            or (not isinstance(rerun, bool) and post.source in rerun)
            or not record_files(config, post.source).json.exists()
        )
    ]


def _front_matter(text: str) -> str:
    """The front matter block of a raw post file ("" when it has none)."""
    if not text.startswith("---"):
        return ""
    end = text.find("\n---", 3)
    return text[3:end] if end != -1 else ""


def files_to_run(
    config: Config, settings: ExecutionSettings, rerun: Rerun, paths: Sequence[Path]
) -> list[PostFile]:
    """:func:`will_run` on the raw post files at ``paths``, before they are parsed: those
    with a Python fence to run and no record yet (or to be run again), unless their front
    matter has a line that keeps them from running (``execute: false``; a draft without
    --drafts). A file that cannot be read is left to the build to report."""
    if not config.execute or settings.executor != "local" or settings.ray_address:
        return []
    files = []
    for path in paths:
        source = display_path(path, config.root)
        if not (
            rerun is True
            or (not isinstance(rerun, bool) and source in rerun)
            or not record_files(config, source).json.exists()
        ):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not _has_snippet_to_run(text):
            continue
        front = _front_matter(text)
        if _NOT_EXECUTED.search(front) or (not config.drafts and _A_DRAFT.search(front)):
            continue
        files.append(PostFile(source, text))
    return files


def start_from_files(
    config: Config,
    settings: ExecutionSettings,
    rerun: Rerun,
    started: list[EarlyEngine],
    only: frozenset[str] = frozenset(),
) -> None:
    """Start an engine, added to ``started`` (which the caller closes, whatever happens),
    if the raw post files say that the build will almost surely run something on it
    (:func:`files_to_run`). Its sandbox shows the folder of every post file (as the
    build's own early engine shows every post's); it warms what the posts to run import.
    ``only``: when not empty, just these posts (``posts/x.md``) may run (``check x.md``)."""
    paths, _problems = find_post_files(config)  # the build reports them
    candidates = [p for p in paths if display_path(p, config.root) in only] if only else paths
    files = files_to_run(config, settings, rerun, candidates)
    if files:
        others = [PostFile(display_path(path, config.root), "") for path in paths]
        EarlyEngine(settings, [*files, *others], config.root, started)


def modules_to_warm(posts: Sequence[PostText]) -> list[str]:
    """The modules of ``protocol.WARMABLE`` that lines of the posts' raw text import (a
    guess: a wrong one imports a module no session needed, in the fork server)."""
    return sorted({module for post in posts for module in _WARMABLE_IMPORT.findall(post.body)})


class EarlyEngine:
    """A local engine being started in a thread; :meth:`run` waits for it.

    It runs whatever posts it is given (their post folders were shown to its sandbox
    when it started: the folders of ``posts``), and re-raises at :meth:`run` whatever
    stopped it from starting, where the execute stage expects it."""

    def __init__(
        self,
        settings: ExecutionSettings,
        posts: Sequence[PostText],
        root: Path,
        started: list[EarlyEngine] | None = None,
    ) -> None:
        """``started``: a list this engine joins before its thread starts, so that a
        caller interrupted (Ctrl-C) before the constructor returned still closes it."""
        # imported in the build's thread: a thread that imports while the other one parses
        # waits for the GIL at every step (the start took 535 ms instead of 150)
        from raypress.execution.pool import Executor

        self.executor_class = Executor
        folders = sorted({(root / post.source).parent.resolve() for post in posts})
        # one empty run per post folder: the sandbox shows them; modules are warmed per run
        self.placeholders = [PostRun(f"early-{i}", folder, ()) for i, folder in enumerate(folders)]
        self.settings = settings
        # what the posts seem to import: the fork server imports it while they are parsed
        self.modules = modules_to_warm(posts)
        self.engine: Any = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        # The thread that starts the engine lives as long as it: bubblewrap's
        # --die-with-parent (PR_SET_PDEATHSIG) fires when the *thread* that started it ends.
        self.thread = threading.Thread(target=self._serve, name="raypress-early-engine")
        if started is not None:
            started.append(self)
        self.thread.start()

    @property
    def failure(self) -> str | None:
        return self.engine.failure if self.engine is not None else None

    def _serve(self) -> None:
        try:
            self.engine = self.executor_class(self.settings, self.placeholders)
            self.engine.warm(self.modules)
        except BaseException as exc:  # re-raised by run(), in the build's thread
            self.error = exc
            return
        finally:
            self.ready.set()
        self.done.wait()
        self.engine.close()

    def run(
        self, runs: Sequence[PostRun], progress: Callable[[PostExecution], None] | None = None
    ) -> list[PostExecution]:
        """Wait for the engine, then run ``runs`` on it."""
        self.ready.wait()
        if self.error is not None:
            raise self.error
        return self.engine.run(runs, progress)

    def close(self) -> None:
        """Stop the engine (once it has started), and wait until it has stopped."""
        self.done.set()
        if self.thread.ident is not None:  # else it never started, or stops by itself
            self.thread.join()
