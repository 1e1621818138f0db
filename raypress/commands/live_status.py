"""What the console shows while posts run (``build`` and ``check``).

Design note: the execution engine reports each step as a
:class:`~raypress.execution.model.ProgressEvent`, from its own threads; :class:`RunState`
keeps what they add up to (under a lock) and :class:`LiveStatus` shows it in one of two
forms, chosen by whether the output is a terminal:

* **A terminal**: a status block redrawn four times a second under the log lines (rich's
  ``Live``, which also keeps the log lines above it): the Ray cluster starting with its
  elapsed time; posts queued, running and done; for each running post, the snippet
  running now and for how long. It disappears when the run ends.
* **No terminal** (CI, a pipe, a file): plain lines, flushed at once: one when a post
  starts (its end is the build's ``ran posts/x.md ...`` line), and a heartbeat every 10 s
  for each snippet still running and for a cluster still starting, so a CI log never goes
  silent for long.

``--quiet`` shows neither: the command does not make a LiveStatus at all.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TextIO

from raypress.execution.model import ProgressEvent
from raypress.terminal import printable

HEARTBEAT_S = 10.0


@dataclass(slots=True)
class PostState:
    """A post that is running: which snippet, since when."""

    post: str
    snippets: int
    started: float
    snippet: int | None = None
    line: int | None = None
    snippet_started: float = 0.0
    heartbeats: int = 0  # heartbeat lines printed for the current snippet


@dataclass(slots=True)
class RunState:
    """What the events so far add up to."""

    queued: int = 0
    done: int = 0
    running: dict[str, PostState] = field(default_factory=dict)
    cluster_started: float | None = None  # while the cluster is starting
    cluster_heartbeats: int = 0

    def apply(self, event: ProgressEvent) -> None:
        kind = event.kind
        if kind == "posts-queued":
            self.queued += event.count
        elif kind == "cluster-starting":
            self.cluster_started, self.cluster_heartbeats = event.at, 0
        elif kind in ("cluster-ready", "cluster-failed"):
            self.cluster_started = None
        elif kind == "post-started":
            self.queued = max(0, self.queued - 1)
            self.running[event.post] = PostState(event.post, event.count, event.at)
        elif kind == "snippet-started" and event.post in self.running:
            state = self.running[event.post]
            state.snippet, state.line, state.snippet_started = event.snippet, event.line, event.at
            state.heartbeats = 0
        elif kind == "snippet-done" and event.post in self.running:
            self.running[event.post].snippet = None
        elif kind == "post-done":
            if self.running.pop(event.post, None) is None:  # it never started
                self.queued = max(0, self.queued - 1)
            self.done += 1


def snippet_text(state: PostState) -> str:
    """``snippet 3 of 8 (line 42)``."""
    where = f" (line {state.line})" if state.line else ""
    return f"snippet {state.snippet} of {state.snippets}{where}"


def seconds_text(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


class LiveStatus:
    """The console while posts run; use as a context manager, pass :meth:`log` and
    :meth:`event` to ``build`` or ``check``."""

    def __init__(
        self, out: TextIO, terminal: bool | None = None, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self.out = out
        if terminal is None:
            terminal = out.isatty() and os.environ.get("TERM", "") != "dumb"
        self.terminal = terminal
        self.heartbeat_s = heartbeat_s
        self.state = RunState()
        # ``lock`` guards the state and is never held while calling rich (whose refresh
        # thread takes its own lock, then ours, to render); ``live_lock`` guards ``live``
        self.lock = threading.Lock()
        self.live_lock = threading.Lock()
        self.live: Any = None  # rich.live.Live, started with the first event
        self.stopped = threading.Event()
        self.ticker: threading.Thread | None = None

    def __enter__(self) -> LiveStatus:
        if not self.terminal:
            self.ticker = threading.Thread(
                target=self._tick, name="raypress-heartbeat", daemon=True
            )
            self.ticker.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopped.set()
        with self.live_lock:
            if self.live is not None:
                self.live.stop()
                self.live = None
        if self.ticker is not None:
            self.ticker.join(timeout=2.0)

    def log(self, line: str) -> None:
        """A line of the build's log, above the status."""
        line = printable(line, multiline=True)  # a snippet's text must not drive the terminal
        with self.live_lock:
            if self.live is not None:
                self.live.console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                print(line, file=self.out, flush=True)

    def event(self, event: ProgressEvent) -> None:
        """What the engine does now (from any thread)."""
        if event.post:  # a file name is shown as text, never as terminal control
            event = dataclasses.replace(event, post=printable(event.post))
        with self.lock:
            self.state.apply(event)
        if self.terminal:
            with self.live_lock:
                if self.live is None and not self.stopped.is_set():
                    self._start_live()
        elif event.kind == "post-started":
            count = f"{event.count} snippet{'s' if event.count != 1 else ''}"
            self.log(f"running {event.post} ({count})")

    # -- a terminal ------------------------------------------------------------------------
    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out, highlight=False)
        self.live = Live(
            get_renderable=self._render,
            console=console,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        with self.lock:
            state = self.state
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="ellipsis", no_wrap=True)
            grid.add_column(justify="right", no_wrap=True)
            if state.cluster_started is not None:
                grid.add_row(
                    Spinner("dots", style="cyan"),
                    Text("Ray cluster starting", style="bold"),
                    Text(seconds_text(now - state.cluster_started), style="cyan"),
                )
            summary = (
                f"posts: {state.queued} queued · {len(state.running)} running · {state.done} done"
            )
            grid.add_row(Spinner("dots", style="green"), Text(summary, style="bold"), "")
            for post in sorted(state.running.values(), key=lambda p: p.started):
                if post.snippet is None:
                    what, since = "starting", post.started
                else:
                    what, since = snippet_text(post), post.snippet_started
                grid.add_row("", Text(f"{post.post}  {what}"), seconds_text(now - since))
            return grid

    # -- no terminal -------------------------------------------------------------------------
    def _tick(self) -> None:
        while not self.stopped.wait(0.5):
            now = time.monotonic()
            lines = []
            with self.lock:
                state = self.state
                if state.cluster_started is not None:
                    due = (state.cluster_heartbeats + 1) * self.heartbeat_s
                    if now - state.cluster_started >= due:
                        state.cluster_heartbeats += 1
                        lines.append(
                            f"execution: the Ray cluster is still starting "
                            f"({seconds_text(now - state.cluster_started)})"
                        )
                for post in sorted(state.running.values(), key=lambda p: p.started):
                    if post.snippet is None:
                        continue
                    due = (post.heartbeats + 1) * self.heartbeat_s
                    if now - post.snippet_started >= due:
                        post.heartbeats += 1
                        lines.append(
                            f"{post.post}: {snippet_text(post)} still running "
                            f"({seconds_text(now - post.snippet_started)})"
                        )
            for line in lines:
                self.log(line)
