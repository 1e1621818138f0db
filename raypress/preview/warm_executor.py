"""Execution for a long-lived process (``serve``): one warm Executor, last results reused.

:class:`WarmExecution` is handed to :func:`raypress.commands.build.build` as its ``executor``.
It starts an :class:`~raypress.execution.pool.Executor` (fork server, Ray cluster) the
first time a post must run and keeps it until :meth:`WarmExecution.close`, so the Ray
cluster stays warm across rebuilds. It also remembers each post's last result: a post
whose code, options and inline expressions are unchanged is not run again (a prose edit
runs nothing), only its line numbers are moved when prose above a snippet grew or shrank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from raypress.execution.model import ExecutionSettings, PostExecution, PostRun, StreamOutput

Progress = Callable[[PostExecution], None]


class Engine(Protocol):
    """What runs posts: an :class:`~raypress.execution.pool.Executor`."""

    failure: str | None  # its fork server died during the last run

    def run(
        self, runs: Sequence[PostRun], progress: Progress | None = None
    ) -> list[PostExecution]: ...

    def close(self) -> None: ...


def start_executor(settings: ExecutionSettings, runs: Sequence[PostRun]) -> Engine:
    """A new engine (fork server warmed with what ``runs`` import, or a cluster's)."""
    from raypress.execution import new_engine  # starts processes: only when needed

    return new_engine(settings, runs)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the last :meth:`WarmExecution.run` did, for the console."""

    ran: tuple[PostExecution, ...] = ()
    reused: tuple[str, ...] = ()  # posts whose previous results were reused
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Entry:
    run: PostRun
    key: str  # run_key(run)
    execution: PostExecution


def run_key(run: PostRun) -> str:
    """What decides a post's results, line numbers left out: code, options, inline code."""
    snippets = [(s.index, s.language, s.source, s.options) for s in run.snippets]
    inline = [(i.index, i.source, i.after_snippet) for i in run.inline]
    fields = (run.post, str(run.post_dir), snippets, inline, run.timeout, run.uses_ray)
    return hashlib.sha256(repr((*fields, run.ray_mode, run.resources)).encode()).hexdigest()


def shift_lines(execution: PostExecution, old: PostRun, new: PostRun) -> PostExecution:
    """``execution`` (made from ``old``) with post line numbers moved to ``new``'s layout:
    error lines, tracebacks, stderr (warnings) and problems."""
    moves = [
        (o.line, o.code_line + o.source.count("\n"), n.line - o.line)
        for o, n in zip(old.snippets, new.snippets, strict=True)
    ] + [(o.line, o.line, n.line - o.line) for o, n in zip(old.inline, new.inline, strict=True)]
    if not any(delta for _, _, delta in moves):
        return execution

    def move(line: int | None) -> int | None:
        for first, last, delta in moves:
            if line is not None and first <= line <= last:
                return line + delta
        return line

    name = re.escape(execution.post)
    pattern = re.compile(rf'("{name}", line |{name}:)(\d+)')

    def text(value: str) -> str:
        return pattern.sub(lambda m: f"{m[1]}{move(int(m[2]))}", value)

    snippets = []
    for result in execution.snippets:
        error = result.error
        if error is not None:
            moved = {"line": move(error.line), "traceback": text(error.traceback)}
            error = dataclasses.replace(error, **moved)
        outputs = tuple(
            dataclasses.replace(o, text=text(o.text))
            if isinstance(o, StreamOutput) and o.name == "stderr"
            else o
            for o in result.outputs
        )
        snippets.append(dataclasses.replace(result, error=error, outputs=outputs))
    problems = tuple(
        dataclasses.replace(p, line=move(p.line), message=text(p.message))
        if p.path == execution.post
        else p
        for p in execution.problems
    )
    return dataclasses.replace(execution, snippets=tuple(snippets), problems=problems)


class WarmExecution:
    """Runs posts on one Executor kept for the process's lifetime; reuses unchanged results.

    ``settings`` is called at each :meth:`run` for the settings wanted now; when they
    differ from the running Executor's (the configuration changed), it is replaced.
    """

    def __init__(
        self,
        settings: Callable[[], ExecutionSettings],
        announce: Callable[[str], None] | None = None,
        start: Callable[[ExecutionSettings, Sequence[PostRun]], Engine] = start_executor,
    ) -> None:
        self.settings = settings
        self.announce = announce or (lambda _line: None)
        self.start = start
        self.executor: Engine | None = None  # started on first need
        self.executor_settings: ExecutionSettings | None = None
        self.entries: dict[str, _Entry] = {}  # by post source path
        self.last = RunSummary()
        self.lock = threading.Lock()
        self.failure: str | None = None  # the engine died during the last run

    def run(self, runs: Sequence[PostRun], progress: Progress | None = None) -> list[PostExecution]:
        """Results for ``runs`` in their order; only posts whose code changed are executed."""
        started = time.perf_counter()
        wanted = self.settings()
        if self.executor_settings is not None and wanted != self.executor_settings:
            self.announce("execution settings changed: restarting the execution engine")
            self.close()
            self.forget_all()
        self.failure = None
        results: dict[int, PostExecution] = {}
        to_run: list[int] = []
        reused: list[str] = []
        keys = [run_key(run) for run in runs]
        for i, run in enumerate(runs):
            entry = self.entries.get(run.post)
            if entry is not None and entry.key == keys[i]:
                results[i] = shift_lines(entry.execution, entry.run, run)
                reused.append(run.post)
            else:
                to_run.append(i)
        ran: list[PostExecution] = []
        if to_run:
            names = ", ".join(runs[i].post for i in to_run)
            self.announce(f"running {len(to_run)} post{'s' if len(to_run) != 1 else ''}: {names}")
            executor = self._executor(wanted, [runs[i] for i in to_run])
            fresh = executor.run([runs[i] for i in to_run], progress)
            self.failure = executor.failure
            if self.failure:  # the next rebuild starts a fresh engine
                self.close()
            for i, execution in zip(to_run, fresh, strict=True):
                results[i] = execution
                ran.append(execution)
                if execution.status != "died":  # a session that could not start: retry
                    self.entries[runs[i].post] = _Entry(runs[i], keys[i], execution)
                else:
                    self.entries.pop(runs[i].post, None)
        self.last = RunSummary(tuple(ran), tuple(reused), time.perf_counter() - started)
        return [results[i] for i in range(len(runs))]

    def forget(self, changed: Path) -> list[str]:
        """Drop the results of posts whose folder holds ``changed`` (a data file or module
        a post may read); returns their paths."""
        gone = [
            post
            for post, entry in self.entries.items()
            if changed.is_relative_to(Path(entry.run.post_dir))
        ]
        for post in gone:
            del self.entries[post]
        return gone

    def forget_all(self) -> None:
        self.entries.clear()

    def close(self) -> None:
        """Stop the Executor: sessions, fork server and the Ray cluster it started."""
        with self.lock:
            executor, self.executor = self.executor, None
            self.executor_settings = None
        if executor is None:
            return
        from raypress.execution.forkclient import ForkServerError

        # closed by a Ctrl-C during a run: its children died with it (its folders are gone)
        with contextlib.suppress(ForkServerError):
            executor.close()

    def _executor(self, wanted: ExecutionSettings, runs: Sequence[PostRun]) -> Engine:
        if self.executor is None:
            with self.lock:
                self.executor = self.start(wanted, runs)
                self.executor_settings = wanted
        return self.executor
