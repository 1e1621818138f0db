"""Build-process side of one session: spawn it, read its output and events, enforce limits.

One thread per running post. It multiplexes the session's channel and its two output
pipes, applies the per-snippet and whole-post deadlines (a timeout SIGKILLs the whole
process group through the fork server, then the pipes are drained so the output printed
so far is kept), notices a dead session or a dead Ray cluster, and assembles the
PostExecution.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from raypress.errors import Problem
from raypress.execution.capture import SegmentedStream, clean_text
from raypress.execution.environment import MachineInfo, environment
from raypress.execution.forkclient import ForkServerClient
from raypress.execution.model import (
    PostExecution,
    PostRun,
    PostStatus,
    SnippetResult,
)
from raypress.execution.protocol import (
    Finished,
    FrameReader,
    InlineDone,
    Note,
    RayJob,
    SessionEvent,
    SessionPlan,
    SnippetDone,
    SnippetStarted,
    decode_event,
)
from raypress.execution.results import (
    describe_death,
    inline_results,
    interrupted_result,
    snippet_problem,
    snippet_result,
)

_PIPE_SIZE = 1 << 20
_READ_SIZE = 1 << 20
_DRAIN_GRACE_S = 2.0  # after a kill, how long to wait for the pipes to close
_F_SETPIPE_SZ = 1031


@dataclass(frozen=True, slots=True)
class Limits:
    """Deadlines of one post (seconds; None: no limit)."""

    snippet_timeouts: dict[int, float]
    post_timeout: float | None
    output_cap: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """A session's result, the Ray jobs it connected as (for cleaning up after it), and
    when things happened (seconds after the spawn request; for benchmarks)."""

    execution: PostExecution
    ray_jobs: tuple[str, ...]
    timeline: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class _Progress:
    events: list[SessionEvent] = field(default_factory=list)
    running: SnippetStarted | None = None
    running_since: float = 0.0
    finished: Finished | None = None
    kill_reason: str | None = None  # "timed-out" or "died"
    kill_note: str = ""
    ended: float | None = None  # when it was killed or closed its channel
    first_event: float | None = None
    notify: Callable[[SessionEvent], None] | None = None  # snippets starting and ending


def drive(
    server: ForkServerClient,
    run: PostRun,
    plan: SessionPlan,
    limits: Limits,
    machine: MachineInfo,
    cluster_failure: Callable[[], str | None] = lambda: None,
    notify: Callable[[SessionEvent], None] | None = None,
) -> Outcome:
    """Run ``plan`` in a new session and return what it did; ``notify`` hears each
    SnippetStarted and SnippetDone as it arrives (for a live status)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    start = time.perf_counter()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    for fd in (out_w, err_w):
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    channel, child_channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = server.spawn(plan, child_channel.fileno(), out_w, err_w)
        spawned = time.perf_counter() - start
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        channel.close()
        raise
    finally:
        child_channel.close()
        os.close(out_w)
        os.close(err_w)
    streams = {
        out_r: SegmentedStream(plan.marker, limits.output_cap),
        err_r: SegmentedStream(plan.marker, limits.output_cap),
    }
    progress = _Progress(notify=notify)
    try:
        _pump(server, pid, channel, streams, limits, start, progress, cluster_failure)
    finally:
        channel.close()
        for fd in streams:
            os.close(fd)
    drained = time.perf_counter() - start
    status = server.wait_exit(pid, timeout=5.0)
    reaped = time.perf_counter() - start
    execution = _assemble(
        run, limits, machine, progress, streams[out_r], streams[err_r], status, started_at, start
    )
    jobs = tuple(e.job_id for e in progress.events if isinstance(e, RayJob))
    timeline = (
        ("spawned", spawned),
        ("first event", progress.first_event - start if progress.first_event else drained),
        ("last event", (progress.ended or start + drained) - start),
        ("output drained", drained),
        ("exit reported", reaped),
        ("assembled", time.perf_counter() - start),
    )
    return Outcome(execution, jobs, timeline)


def _pump(
    server: ForkServerClient,
    pid: int,
    channel: socket.socket,
    streams: dict[int, SegmentedStream],
    limits: Limits,
    start: float,
    progress: _Progress,
    cluster_failure: Callable[[], str | None],
) -> None:
    reader = FrameReader(channel)
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    killed = False
    give_up_at: float | None = None  # once the session is gone: how long to wait for EOF
    try:
        while selector.get_map():
            now = time.perf_counter()
            if give_up_at is not None and now > give_up_at:
                break  # a process outside the session's group holds the pipes open
            if not killed and progress.finished is None:
                reason = _deadline_passed(limits, start, progress, now) or _cluster(cluster_failure)
                if reason is not None:
                    progress.kill_reason, progress.kill_note = reason
                    server.kill(pid)
                    killed = True
                    progress.ended = progress.ended or now
                    give_up_at = now + _DRAIN_GRACE_S
            wait = _wait_time(limits, start, progress, now)
            if give_up_at is not None:
                wait = min(wait, max(0.0, give_up_at - now))
            for key, _ in selector.select(wait):
                if key.fileobj is channel:
                    reader.fill()
                    for frame in reader.frames():
                        _on_event(progress, frame)
                    if reader.closed:
                        selector.unregister(channel)
                        progress.ended = progress.ended or time.perf_counter()
                        if give_up_at is None:
                            give_up_at = time.perf_counter() + _DRAIN_GRACE_S
                else:
                    fd = key.fd
                    data = os.read(fd, _READ_SIZE)
                    if data:
                        streams[fd].feed(data)
                    else:
                        streams[fd].finish()
                        selector.unregister(fd)
    finally:
        selector.close()
    for stream in streams.values():
        if not stream.eof:
            stream.finish()


def _on_event(progress: _Progress, frame: bytes) -> None:
    try:
        event = decode_event(frame)
    except (ValueError, TypeError):
        return
    progress.events.append(event)
    if progress.first_event is None:
        progress.first_event = time.perf_counter()
    if isinstance(event, SnippetStarted):
        progress.running = event
        progress.running_since = time.perf_counter()
    elif isinstance(event, SnippetDone):
        progress.running = None
    elif isinstance(event, Finished):
        progress.finished = event
    if progress.notify is not None and isinstance(event, SnippetStarted | SnippetDone):
        progress.notify(event)


def _deadline_passed(
    limits: Limits, start: float, progress: _Progress, now: float
) -> tuple[str, str] | None:
    if limits.post_timeout is not None and now - start > limits.post_timeout:
        return "timed-out", f"timed out: the post's limit of {_seconds(limits.post_timeout)} s"
    running = progress.running
    if running is not None:
        timeout = limits.snippet_timeouts.get(running.index)
        if timeout is not None and now - progress.running_since > timeout:
            return "timed-out", f"timed out after {_seconds(timeout)} s"
    return None


def _cluster(cluster_failure: Callable[[], str | None]) -> tuple[str, str] | None:
    message = cluster_failure()
    return ("died", message) if message else None


def _wait_time(limits: Limits, start: float, progress: _Progress, now: float) -> float:
    waits = [0.5]  # also how often a dead cluster is noticed
    if limits.post_timeout is not None:
        waits.append(start + limits.post_timeout - now)
    if progress.running is not None:
        timeout = limits.snippet_timeouts.get(progress.running.index)
        if timeout is not None:
            waits.append(progress.running_since + timeout - now)
    return max(0.0, min(waits))


def _seconds(value: float) -> str:
    return f"{value:g}"


def _assemble(
    run: PostRun,
    limits: Limits,
    machine: MachineInfo,
    progress: _Progress,
    out: SegmentedStream,
    err: SegmentedStream,
    exit_status: int | None,
    started_at: str,
    start: float,
) -> PostExecution:
    cap = limits.output_cap
    done = {e.index: e for e in progress.events if isinstance(e, SnippetDone)}
    started = {e.index: e for e in progress.events if isinstance(e, SnippetStarted)}
    inline_done = {e.index: e for e in progress.events if isinstance(e, InlineDone)}
    messages = [e.text for e in progress.events if isinstance(e, Note)]
    jobs = [e for e in progress.events if isinstance(e, RayJob)]
    stopped_note = progress.kill_note
    if progress.finished is None and progress.kill_reason is None:
        stopped_note = describe_death(exit_status)
    results: list[SnippetResult] = []
    problems: list[Problem] = []
    for snippet in run.snippets:
        index = snippet.index
        if not snippet.options.eval:
            result = SnippetResult(index, "skipped")
        elif index in done:
            event = done[index]
            result = snippet_result(event, out.take(event.seq), err.take(event.seq), cap)
        elif index in started and progress.finished is None:
            status = "timed-out" if progress.kill_reason == "timed-out" else "died"
            seq = started[index].seq
            wall = (progress.ended or time.perf_counter()) - progress.running_since
            result = interrupted_result(
                index, status, out.take(seq), err.take(seq), cap, stopped_note, wall
            )
        else:
            result = SnippetResult(index, "not-run")
        problem = snippet_problem(run.post, snippet, result)
        if problem is not None:
            problems.append(problem)
            if problem.hint:  # e.g. "this looks like a shell command": say it on the page too
                result = dataclasses.replace(result, notes=(*result.notes, problem.hint))
        results.append(result)
    inline, inline_problems = inline_results(run.inline, inline_done, run.post)
    problems += inline_problems
    status: PostStatus
    if progress.kill_reason == "timed-out":
        status = "timed-out"
    elif progress.finished is None:
        status = "died"
        if not any(r.status == "died" for r in results):
            problems.append(Problem(run.post, None, stopped_note))
            leftover = clean_text(bytes(err.current.kept)).strip()
            if leftover:  # e.g. a traceback of the session machinery itself
                messages.append(f"the session's last error output:\n{leftover[-2000:]}")
    elif problems:
        status = "failed"
    else:
        status = "ok"
    packages = progress.finished.packages if progress.finished else []
    env = environment(
        machine,
        tuple((str(name), str(version)) for name, version in packages),
        jobs[-1].ray_version if jobs else None,
        jobs[-1].cluster_cpus if jobs else None,
    )
    return PostExecution(
        post=run.post,
        status=status,
        snippets=tuple(results),
        inline=inline,
        environment=env,
        started_at=started_at,
        wall_s=time.perf_counter() - start,
        messages=tuple(messages),
        problems=tuple(problems),
    )
