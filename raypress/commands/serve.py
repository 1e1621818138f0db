"""``build.py serve``: build, serve the site, rebuild on every save, reload the pages.

The main thread builds and waits for changes; the HTTP server (:mod:`raypress.preview.http_server`)
and the watchers (:mod:`raypress.preview.file_watcher`) run in threads. Each rebuild is an ordinary
:func:`raypress.commands.build.build` (which swaps the output folder in atomically, and leaves
it as it was when the input is wrong), lent three things:

* a :class:`~raypress.preview.warm_executor.WarmExecution`: posts run only when their
  code changed, on one execution engine whose Ray cluster stays up until the server stops;
* the theme, whose compiled templates are kept while the configuration holds;
* a ``rendered`` hook: the new site is served from memory as soon as it is rendered and,
  when nothing had to run, the pages reload before the build writes the output folder.

After each rebuild the pages are told to reload (:mod:`raypress.preview.live_reload`), with the
build's problems in an overlay; the console gets one line per rebuild.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from raypress.commands.live_status import RunState, snippet_text
from raypress.config import Config, load_config
from raypress.errors import Problem, SourceError
from raypress.execution.model import NOT_RUN, ProgressEvent
from raypress.paths import display_path
from raypress.preview.http_server import DevServer, Served, Snapshot, is_loopback
from raypress.preview.live_reload import Hub, Running
from raypress.preview.warm_executor import RunSummary, WarmExecution
from raypress.publish.posts import POST_SUFFIXES
from raypress.terminal import printable
from raypress.theme import THEME_PATH

if TYPE_CHECKING:
    from raypress.commands.build import ModelsOfPages, RenderedSite
    from raypress.publish.render import Theme

CONFIG_FILES = ("site.toml", "pyproject.toml")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Where to find the site and where to serve it."""

    root: Path
    config_file: Path | None = None
    overrides: Mapping[str, Any] | None = None  # Config fields from the command line
    host: str = "127.0.0.1"
    port: int = 8000
    quiet: bool = False  # problems only (and where the site is served)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one (re)build produced, as the pages and the console see it."""

    problems: tuple[Problem, ...]  # shown on every page (the input is wrong: the previous
    # site is still served; or a failure that belongs to no page)
    page_problems: dict[str, tuple[Problem, ...]]  # failed snippets, by output file
    changed: bool  # the output folder changed
    summary: str


class Console:
    """Timestamped lines on stdout, problems on stderr; always flushed. ``quiet``: only
    problems and the lines said ``always``."""

    def __init__(self, out: TextIO, err: TextIO, quiet: bool = False) -> None:
        self.out, self.err, self.quiet = out, err, quiet

    def line(self, text: str, always: bool = False) -> None:
        if always or not self.quiet:
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} {printable(text, multiline=True)}", file=self.out, flush=True)

    def detail(self, text: str) -> None:
        if not self.quiet:
            print(f"         {printable(text, multiline=True)}", file=self.out, flush=True)

    def problem(self, problem: Problem | str) -> None:
        print(printable(str(problem), multiline=True), file=self.err, flush=True)


class DevSite:
    """The state of a serving session: configuration, warm execution, what pages show."""

    def __init__(self, options: ServeOptions, config: Config, console: Console) -> None:
        from raypress.freeze.run_plan import execution_settings  # the build machinery: lazily

        self.options = options
        self.config = config
        self.console = console
        self.hub = Hub()
        self.warm = WarmExecution(  # Ray posts re-run on save: keep a fresh cluster ready
            lambda: dataclasses.replace(
                execution_settings(self.config, self.console.detail, self.on_progress),
                ray_keep_warm=True,
            ),
            self.console.detail,
        )
        self.run_state = RunState()  # what runs now, shown in the pages' status box
        self.run_lock = threading.Lock()
        self.page_problems: dict[str, tuple[Problem, ...]] = {}
        self.snapshot: Snapshot | None = None  # the last build's output, once there is one
        self.early = False  # this build's pages were told to reload before it wrote
        self.soft = False  # only posts changed: pages may swap their body in place
        self.theme: Theme | None = None  # compiled templates, kept while the config holds
        self.models: ModelsOfPages | None = None  # the last build's, to preview an edit

    @property
    def served(self) -> Served:
        """What the HTTP server serves now."""
        roots = (self.config.root, THEME_PATH)
        return Served(self.config.output_path, self.config.baseurl, self.snapshot, roots)

    def watched(self) -> tuple[list[Path], list[Path]]:
        """Folders watched recursively, and configuration files."""
        folders = [self.config.posts_path, self.config.templates_path, self.config.static_path]
        if self.options.config_file is not None:
            file = self.options.config_file
            files = [file if file.is_absolute() else self.config.root / file]
        else:
            files = [self.config.root / name for name in CONFIG_FILES]
        return folders, files

    def rebuild(self, changed: Iterable[Path] = ()) -> Outcome:
        """Build now (after ``changed`` changed), publish the result to the pages."""
        changed = sorted(set(changed))
        started = time.perf_counter()
        posts = self.config.posts_path
        self.soft = bool(changed) and all(
            p.suffix in POST_SUFFIXES and p.is_relative_to(posts) for p in changed
        )
        problems = self._reload_config(changed)
        if problems:
            self.console.problem(problems[0])
            outcome = Outcome(problems, self.page_problems, False, "configuration problem")
        else:
            for path in changed:
                if path.is_relative_to(self.config.posts_path) and path.suffix not in POST_SUFFIXES:
                    self.warm.forget(path)  # a data file or module that posts may read
            if self.soft:
                self._preview(changed, started)
            outcome = self._build()
        with self.run_lock:
            self.run_state = RunState()
        self.hub.set_running(())
        seconds = time.perf_counter() - started
        shown = self.hub.state
        if (outcome.problems, outcome.page_problems) != (shown.problems, shown.page_problems) or (
            outcome.changed and not self.early
        ):
            self.hub.publish(outcome.problems, outcome.page_problems, self.soft)
        self.page_problems = outcome.page_problems
        what = _describe_changes(changed, self.config.root) if changed else "started"
        self.console.line(f"{what}: {outcome.summary} ({_seconds(seconds)})")
        return outcome

    def close(self) -> None:
        self.warm.close()

    def on_progress(self, event: ProgressEvent) -> None:
        """The engine's steps (from its threads): the pages show what runs now."""
        with self.run_lock:
            self.run_state.apply(event)
            now = time.monotonic()
            state = self.run_state
            running = [
                Running(f"running {p.post} {snippet_text(p)}", now - p.snippet_started)
                if p.snippet is not None
                else Running(f"running {p.post}", now - p.started)
                for p in sorted(state.running.values(), key=lambda p: p.started)
            ]
            if state.cluster_started is not None:
                running.insert(0, Running("starting the Ray cluster", now - state.cluster_started))
        self.hub.set_running(tuple(running))

    def _rendered(self, site: RenderedSite) -> None:
        """The build has rendered the new site (it writes the output folder next): serve
        it from memory now and, when nothing ran (a prose or template edit), reload the
        pages at once, with the problems they had. Kept pages are served from the output
        folder, which the write leaves as they are."""
        from raypress.publish.site_writer import KeptFile

        files, static = site.files, site.static
        kept = [(f.path, f.source) for f in files if isinstance(f, KeptFile)]
        self.snapshot = Snapshot.of(
            ((f.path, f.data) for f in files if not isinstance(f, KeptFile)),
            [*((s.path, s.source) for s in static), *kept],
        )
        self.models = site.models
        if not self.warm.last.ran:
            self.hub.publish((), self.page_problems, self.soft)
            self.early = True

    def _preview(self, changed: list[Path], started: float) -> None:
        """Show the edited posts' pages at once, rendered from the last build's models, and
        reload the pages; the build that follows makes the whole site (and reloads them
        again). Nothing is shown when a post's page cannot be previewed (a new post, a
        snippet to run, ...): the build alone decides then."""
        from raypress.commands.build import preview_post

        if self.models is None or self.theme is None or self.snapshot is None:
            return
        now = datetime.now(self.config.zone)
        pages = [preview_post(p, self.models, self.config, self.theme, now) for p in changed]
        if not pages or any(page is None for page in pages):
            return
        new = {page.path: page.data for page in pages if page}
        last = self.snapshot  # the pages were there already (same URLs): so are their folders
        static = {path: source for path, source in last.static.items() if path not in new}
        self.snapshot = Snapshot({**last.files, **new}, static, last.folders)
        state = self.hub.state  # the problems shown stay until the build says otherwise
        self.hub.publish(state.problems, state.page_problems, soft=True)
        shown = ", ".join(page.path for page in pages if page)
        self.console.line(f"previewed {shown} ({_seconds(time.perf_counter() - started)})")

    def _reload_config(self, changed: list[Path]) -> tuple[Problem, ...]:
        _, files = self.watched()
        if not set(changed) & set(files):
            return ()
        try:
            config = _load(self.options)
        except SourceError as exc:
            return (exc.problem,)
        if config != self.config:
            self.config, self.theme = config, None
        return ()

    def _build(self) -> Outcome:
        from raypress.commands.build import build  # Markdown, Pygments, Jinja2: only when building
        from raypress.publish.render import Theme

        config = self.config
        self.warm.last = RunSummary()
        self.early = False
        try:
            if self.theme is None or self.theme.stale():
                self.theme = Theme(config)
            report = build(
                config,
                datetime.now(config.zone),
                log=self.console.detail,
                executor=self.warm,
                theme=self.theme,
                rendered=self._rendered,
            )
        except Exception as exc:  # a bug, or an engine that cannot start: keep serving
            self.console.problem(traceback.format_exc().rstrip())
            problem = Problem("raypress", None, f"internal error: {type(exc).__name__}: {exc}")
            return Outcome((problem,), self.page_problems, False, "build crashed")
        for problem in report.problems + report.execution_problems:
            self.console.problem(problem)
        for warning in report.warnings:  # an unknown layout, a record that could not be used
            self.console.problem(f"warning: {warning}")
        if report.problems:
            count = len(report.problems)
            summary = f"build failed: {count} problem{'s' if count != 1 else ''}, serving the "
            summary += "previous site"
            return Outcome(report.problems, self.page_problems, False, summary)
        pages, elsewhere = _pages_of(report.execution_problems, config)
        write = report.write
        written = "up to date" if report.up_to_date else "no page changed"
        if write is not None and write.changed:
            written = f"{write.written} file{'s' if write.written != 1 else ''} written"
            written += f", {write.removed} removed" if write.removed else ""
        summary = f"{report.posts} posts, {written}; {_ran(self.warm.last)}"
        if report.execution_problems:
            count = len(report.execution_problems)
            summary += f"; {count} snippet problem{'s' if count != 1 else ''}"
        changed = bool(write and write.changed)
        return Outcome(elsewhere, pages, changed, summary)


def serve(options: ServeOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the preview server until Ctrl-C (or SIGTERM); returns the exit status."""
    console = Console(out, err, options.quiet)
    try:
        config = _load(options)
    except SourceError as exc:
        console.problem(exc.problem)
        return 1
    from raypress.preview.file_watcher import SourceWatcher

    site = DevSite(options, config, console)
    try:
        server = DevServer(options.host, options.port, lambda: site.served, site.hub)
    except OSError as exc:
        console.problem(f"cannot serve on {options.host}:{options.port}: {exc.strerror}")
        return 1
    # Ctrl-C and SIGTERM stop the server, even when started with SIGINT ignored (``cmd &``)
    previous = signal.signal(signal.SIGTERM, _interrupt), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = SourceWatcher(*site.watched(), console.problem)
    try:
        server.start()
        _announce(console, options, server.port, config)
        watcher.start()
        site.rebuild()
        while True:
            changed = watcher.get(timeout=1.0)
            if changed:
                site.rebuild(changed)
                if not watcher.watches(*site.watched()):  # the config moved a source folder
                    watcher.close()
                    watcher = SourceWatcher(*site.watched(), console.problem)
                    watcher.start()
    except KeyboardInterrupt:
        console.line("stopping")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        try:
            watcher.close()
            server.stop()
            site.close()
        finally:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
    console.line("stopped")
    return 0


def _load(options: ServeOptions) -> Config:
    return load_config(options.root, options.config_file, **dict(options.overrides or {}))


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _announce(console: Console, options: ServeOptions, port: int, config: Config) -> None:
    host = options.host
    wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}
    shown = wildcard.get(host, host).strip("[]")
    shown = f"[{shown}]" if ":" in shown else shown
    console.line(f"serving http://{shown}:{port}{config.baseurl}/ (Ctrl-C to stop)", True)
    if not is_loopback(host):
        console.problem(
            f"warning: listening on {host}, not on loopback: other machines can reach this "
            "server (drafts included); use --host 127.0.0.1 to keep it local"
        )
    shown_too = [w for w, on in (("drafts", config.drafts), ("future posts", config.future)) if on]
    if shown_too:
        console.detail(f"showing {' and '.join(shown_too)}; `build.py` leaves them out")


def _pages_of(
    problems: tuple[Problem, ...], config: Config
) -> tuple[dict[str, tuple[Problem, ...]], tuple[Problem, ...]]:
    """Failed snippets grouped by the output file of their post's page, and those whose
    page cannot be told (shown on every page)."""
    from raypress.publish.posts import read_post
    from raypress.publish.reading import available_layouts

    pages: dict[str, tuple[Problem, ...]] = {}
    elsewhere: list[Problem] = []
    layouts = available_layouts(config)
    for source in sorted({p.path for p in problems}):
        own = tuple(p for p in problems if p.path == source)
        try:
            pages[read_post(config.root / source, config, layouts).output_file] = own
        except (SourceError, OSError):
            elsewhere += own
    return pages, tuple(elsewhere)


def _ran(summary: RunSummary) -> str:
    """``ran posts/x.md (8 snippets: 630 ms, in all 677 ms)``, or ``ran nothing``."""
    ran = summary.ran
    if not ran:
        return "ran nothing"
    count = sum(1 for e in ran for s in e.snippets if s.status not in NOT_RUN)
    own = sum(s.wall_s for e in ran for s in e.snippets)
    what = ran[0].post if len(ran) == 1 else f"{len(ran)} posts"
    return f"ran {what} ({count} snippets: {_seconds(own)}, in all {_seconds(summary.seconds)})"


def _describe_changes(changed: list[Path], root: Path) -> str:
    names = [display_path(p, root) for p in changed]
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "") + " changed"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
