"""The execute stage: which posts run, with what settings, and what their runs report.

It turns Posts and their ParsedBodies into :class:`PostRun` requests for
:mod:`raypress.execution` and its answers into problems for the console.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from raypress.config import Config
from raypress.errors import Problem
from raypress.execution.model import (
    FAILED,
    NOT_RUN,
    ClusterUnavailable,
    ExecutionSettings,
    ExecutionUnavailable,
    PostExecution,
    PostRun,
    ProgressEvent,
    format_duration,
)
from raypress.publish.posts import Post

if TYPE_CHECKING:  # publish.markdown imports markdown-it: not before the CLI starts an engine
    from raypress.publish.markdown import ParsedBody


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """What the execute stage did: results by post source path, and what went wrong."""

    executions: dict[str, PostExecution]
    problems: tuple[Problem, ...]
    messages: tuple[str, ...]
    seconds: float = 0.0
    # failures outside the posts (a lost node, an unreachable cluster): exit status 2
    infrastructure: tuple[Problem, ...] = ()
    unavailable: bool = False  # the engine could not start: nothing ran


def runnable(post: Post, body: ParsedBody | None) -> bool:
    """True when the post has snippets to run and may run them (whether or not it will)."""
    return body is not None and post.execute and any(s.options.eval for s in body.snippets)


def plan_runs(posts: list[Post], bodies: dict[str, ParsedBody], config: Config) -> list[PostRun]:
    """A PostRun for every post that has snippets to run and may run them."""
    if not config.execute:
        return []
    runs: list[PostRun] = []
    for post in posts:
        body = bodies.get(post.source)
        if body is None or not runnable(post, body):
            continue
        runs.append(
            PostRun(
                post=post.source,
                post_dir=(config.root / post.source).parent.resolve(),
                snippets=body.snippets,
                inline=body.inline,
                timeout=post.timeout,
                uses_ray=body.uses_ray,
                ray_mode="isolated" if post.ray_mode == "isolated" else "shared",
                figure_format=config.figure_format,
                resources=post.resources,
                resources_line=post.resources_line,
            )
        )
    return runs


def execution_settings(
    config: Config,
    log: Callable[[str], None] | None,
    events: Callable[[ProgressEvent], None] | None = None,
    require_isolation: bool = False,
) -> ExecutionSettings:
    """ExecutionSettings from the configuration (and ``RAY_ADDRESS`` when not configured);
    ``events`` hears what runs as it runs (a live status); ``require_isolation``: fail
    unless the sandbox is complete (``check --require-isolation``)."""
    return ExecutionSettings(
        jobs=config.jobs or os.cpu_count() or 1,
        snippet_timeout=float(config.snippet_timeout),
        post_timeout=float(config.post_timeout) if config.post_timeout else None,
        memory_limit_bytes=config.memory_limit_mb * (1 << 20),
        output_cap_bytes=config.output_cap_bytes,
        post_output_cap_bytes=config.post_output_cap_bytes,
        ray_address=config.ray_address or os.environ.get("RAY_ADDRESS") or None,
        executor=config.executor,
        ray_num_cpus=config.ray_num_cpus or None,
        ray_start_timeout=float(config.ray_start_timeout),
        temp_root=None,
        sandbox="required" if require_isolation else "auto",
        project_root=config.root,
        log=log,
        progress=events,
    )


class PostExecutor(Protocol):
    """Something that runs posts, e.g. an execution engine kept warm by ``serve``;
    ``failure`` says (one line) if its machinery died during the last run."""

    failure: str | None

    def run(
        self, runs: Sequence[PostRun], progress: Callable[[PostExecution], None] | None = None
    ) -> list[PostExecution]: ...


def execute_runs(
    runs: Sequence[PostRun],
    settings: ExecutionSettings,
    progress: Callable[[PostExecution], None] | None = None,
    executor: PostExecutor | None = None,
) -> tuple[list[PostExecution], list[Problem], list[Problem]]:
    """Run ``runs`` (on ``executor``, else a new engine: local, or on a Ray cluster).

    Returns the results; one problem for the machinery itself if it could not start or
    died (its posts' pages say so; exit status 1); and one if the cluster the sessions
    were to run on could not be reached (nothing ran; exit status 2, worth retrying)."""
    if not runs:
        return [], [], []
    from raypress.execution import new_engine  # starts processes: only when needed
    from raypress.execution.forkclient import ForkServerError

    try:
        if executor is not None:
            results = executor.run(runs, progress)
            failure = executor.failure
        else:
            with new_engine(settings, runs) as engine:
                results = engine.run(runs, progress)
                failure = engine.failure
    except ClusterUnavailable as exc:
        return [], [], [unavailable(exc)]
    except ExecutionUnavailable as exc:
        return [], [Problem("execution", None, str(exc), "see README: Security model")], []
    except ForkServerError as exc:
        return [], [Problem("execution", None, f"the snippets could not run: {exc}")], []
    if not failure:
        return results, [], []
    unfinished = sum(1 for r in results if r.status == "died" and not r.problems)
    message = f"{failure}; {unfinished} post(s) did not finish (their pages say so)"
    return results, [Problem("execution", None, message)], []


def run_posts(
    runs: list[PostRun],
    config: Config,
    progress: Callable[[PostExecution], None] | None = None,
    log: Callable[[str], None] | None = None,
    executor: PostExecutor | None = None,
    events: Callable[[ProgressEvent], None] | None = None,
) -> ExecutionReport:
    """Execute ``runs`` (all posts in parallel sessions); collect results and problems.
    ``executor``: run them there (a long-lived engine) instead of a new one; ``events``
    hears what runs as it runs."""
    if not runs:
        return ExecutionReport({}, (), ())
    if events is not None:
        events(ProgressEvent("posts-queued", count=len(runs)))
    settings = execution_settings(config, log, events)
    results, problems, infrastructure = execute_runs(runs, settings, progress, executor)
    machinery_failed = bool(problems)  # then posts it cut short have no problem of their own
    messages: list[str] = []
    if infrastructure:  # the engine could not reach its cluster: nothing ran
        return ExecutionReport({}, (), (), infrastructure=tuple(infrastructure), unavailable=True)
    for result in results:
        if result.status == "infrastructure":
            infrastructure += result.problems
            messages += [f"{result.post}: {m}" for m in result.messages]
            continue
        problems += result.problems
        if result.status != "ok" and not result.problems and not machinery_failed:
            problems.append(Problem(result.post, None, f"session {result.status}", None))
        messages += [f"{result.post}: {m}" for m in result.messages]
    return ExecutionReport(
        {r.post: r for r in results},
        tuple(problems),
        tuple(messages),
        sum(r.wall_s for r in results),
        tuple(infrastructure),
    )


def unavailable(exc: ClusterUnavailable) -> Problem:
    """The one console line of an engine that could not start (nothing ran)."""
    return Problem("raypress", None, str(exc), "nothing ran; exit status 2: worth running again")


def describe(execution: PostExecution) -> str:
    """One console line for a finished post: what ran, how long, how it ended."""
    ran = [s for s in execution.snippets if s.status not in NOT_RUN]
    failed = [s for s in execution.snippets if s.status in FAILED]
    state = "ok" if execution.status == "ok" else execution.status.upper()
    extra = f", {len(failed)} failed" if failed else ""
    return (
        f"ran {execution.post}: {len(ran)} snippet{'s' if len(ran) != 1 else ''}{extra} "
        f"in {format_duration(execution.wall_s)} [{state}]"
    )
