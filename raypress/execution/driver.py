"""Build-process side of one session: spawn it, read its output and events, enforce limits.

One thread per running post. It multiplexes the session's channel and its two output
pipes, applies the per-snippet and whole-post deadlines (a timeout SIGKILLs the whole
process group through the fork server, then the pipes are drained so the output printed
so far is kept), bounds what the session may send (the post's output cap: a larger
message on the channel kills the session), notices a dead session or a dead Ray
cluster, and assembles the PostExecution. A post ends when its session ends: whatever
the snippets left running dies with the session's PID namespace, or, past a short grace
period, is no longer waited for. A session's requests for a Ray cluster (``RayRequest``)
are answered on its channel by a helper thread, through the post's :class:`RayBroker`;
the running snippet's deadline is paused while the cluster starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from raypress.errors import Problem
from raypress.execution.capture import Budget, SegmentedStream, clean_text, size_text
from raypress.execution.environment import MachineInfo, environment
from raypress.execution.forkclient import ForkServerClient
from raypress.execution.model import (
    PostExecution,
    PostRun,
    PostStatus,
    SnippetResult,
)
from raypress.execution.protocol import (
    Displayed,
    Finished,
    FrameReader,
    InlineDone,
    Note,
    RayJob,
    RayRelease,
    RayReply,
    RayRequest,
    SessionEvent,
    SessionPlan,
    SnippetDone,
    SnippetStarted,
    decode_event,
    encode_ray_reply,
    send_frame,
)
from raypress.execution.results import (
    Piece,
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
_CLUSTER_GRACE_S = 1.0  # how long a dead session's cluster may take to be reported dead


@dataclass(frozen=True, slots=True)
class Limits:
    """Deadlines of one post (seconds; None: no limit) and its output caps (bytes)."""

    snippet_timeouts: dict[int, float]
    post_timeout: float | None
    output_cap: int  # per snippet and stream
    post_output_cap: int = 5_000_000  # everything the post shows

    @property
    def frame_limit(self) -> int:
        """The largest message a session may send (base64 images included)."""
        return self.post_output_cap * 2 + (1 << 20)


class RayBroker(Protocol):
    """The Ray clusters of one post's session (``ray_pool.PostClusters``)."""

    def starting(self, index: int) -> None:
        """Snippet ``index`` is about to run (a cluster may be started for it)."""

    def request(self, event: RayRequest) -> RayReply:
        """A cluster for ``ray.init`` (blocks while it starts)."""
        ...

    def release(self) -> None:
        """The session called ``ray.shutdown()``."""

    def failure(self) -> str | None:
        """Why the session's cluster died, if it did."""
        ...


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
    paused_since: float | None = None  # a RayRequest is being answered since then
    paused: float = 0.0  # seconds of the running snippet spent waiting for a cluster


def drive(
    server: ForkServerClient,
    run: PostRun,
    plan: SessionPlan,
    limits: Limits,
    machine: MachineInfo,
    cluster_failure: Callable[[], str | None] = lambda: None,
    notify: Callable[[SessionEvent], None] | None = None,
    explain_death: Callable[[int | None], str | None] = lambda _status: None,
    ray: RayBroker | None = None,
) -> Outcome:
    """Run ``plan`` in a new session and return what it did; ``notify`` hears each
    SnippetStarted and SnippetDone as it arrives (for a live status); ``explain_death``
    gives a better reason than the exit status for a session that died (e.g. its memory
    cgroup's)."""
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
    budget = Budget(limits.post_output_cap)
    streams = {
        out_r: SegmentedStream(plan.marker, limits.output_cap, budget),
        err_r: SegmentedStream(plan.marker, limits.output_cap, budget),
    }
    progress = _Progress(notify=notify)
    if ray is not None:
        cluster_failure = ray.failure
    try:
        _pump(server, pid, channel, streams, limits, start, progress, cluster_failure, ray)
    finally:
        channel.close()
        for fd in streams:
            os.close(fd)
    drained = time.perf_counter() - start
    _blame_the_cluster(progress, cluster_failure)
    status = server.wait_exit(pid, timeout=5.0)
    reaped = time.perf_counter() - start
    if progress.finished is None and progress.kill_reason is None and plan.ray is not None:
        _await_cluster_news(cluster_failure)
    execution = _assemble(
        run,
        limits,
        machine,
        progress,
        (streams[out_r], streams[err_r], budget),
        status,
        started_at,
        start,
        lambda status: explain_death(status) or cluster_failure(),
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
    ray: RayBroker | None = None,
) -> None:
    reader = FrameReader(channel, limits.frame_limit)
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
                        event = _on_event(progress, frame)
                        if ray is not None and event is not None:
                            _serve_ray(ray, event, channel, progress)
                    if reader.oversized and not killed:
                        progress.kill_reason = "died"
                        progress.kill_note = (
                            f"the session was stopped: it sent {size_text(reader.oversized)} "
                            f"of results at once, over the post's output cap"
                        )
                        server.kill(pid)
                        killed = True
                        progress.ended = progress.ended or time.perf_counter()
                        give_up_at = time.perf_counter() + _DRAIN_GRACE_S
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


def _await_cluster_news(cluster_failure: Callable[[], str | None], wait: float = 1.0) -> None:
    """A Ray driver dies within milliseconds of its cluster; the news of the cluster's
    death may come a moment later: give it that moment, to name the right cause."""
    deadline = time.perf_counter() + wait
    while cluster_failure() is None and time.perf_counter() < deadline:
        time.sleep(0.05)


def _on_event(progress: _Progress, frame: bytes) -> SessionEvent | None:
    try:
        event = decode_event(frame)
    except (ValueError, TypeError):
        return None
    progress.events.append(event)
    if progress.first_event is None:
        progress.first_event = time.perf_counter()
    if isinstance(event, SnippetStarted):
        progress.running = event
        progress.running_since = time.perf_counter()
        progress.paused = 0.0
    elif isinstance(event, SnippetDone):
        progress.running = None
    elif isinstance(event, Finished):
        progress.finished = event
    if progress.notify is not None and isinstance(event, SnippetStarted | SnippetDone):
        progress.notify(event)
    return event


def _serve_ray(
    ray: RayBroker, event: SessionEvent, channel: socket.socket, progress: _Progress
) -> None:
    """Answer a session's Ray request in a helper thread (a cluster start takes seconds)."""
    if isinstance(event, SnippetStarted):
        ray.starting(event.index)
    elif isinstance(event, RayRelease):
        ray.release()
    elif isinstance(event, RayRequest):
        progress.paused_since = time.perf_counter()

        def answer() -> None:
            reply = ray.request(event)
            with contextlib.suppress(OSError):  # the session is gone: nobody to tell
                send_frame(channel, encode_ray_reply(reply))
            if progress.paused_since is not None:
                progress.paused += time.perf_counter() - progress.paused_since
                progress.paused_since = None

        threading.Thread(target=answer, name="ray-request", daemon=True).start()


def _deadline_passed(
    limits: Limits, start: float, progress: _Progress, now: float
) -> tuple[str, str] | None:
    if limits.post_timeout is not None and now - start > limits.post_timeout:
        return "timed-out", f"timed out: the post's limit of {_seconds(limits.post_timeout)} s"
    running = progress.running
    if running is not None and progress.paused_since is None:
        timeout = limits.snippet_timeouts.get(running.index)
        if timeout is not None and now - progress.running_since - progress.paused > timeout:
            return "timed-out", f"timed out after {_seconds(timeout)} s"
    return None


def _blame_the_cluster(progress: _Progress, cluster_failure: Callable[[], str | None]) -> None:
    """A Ray driver exits at once when its cluster dies, often before the build has heard
    of the death: a session that ended early while connected says why, if that is why."""
    if progress.finished is not None or progress.kill_reason is not None:
        return
    if not any(isinstance(e, RayJob) for e in progress.events):
        return
    deadline = time.monotonic() + _CLUSTER_GRACE_S
    while (message := cluster_failure()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if message is not None:
        progress.kill_reason, progress.kill_note = "died", message


def _cluster(cluster_failure: Callable[[], str | None]) -> tuple[str, str] | None:
    message = cluster_failure()
    return ("died", message) if message else None


def _wait_time(limits: Limits, start: float, progress: _Progress, now: float) -> float:
    waits = [0.5]  # also how often a dead cluster is noticed
    if limits.post_timeout is not None:
        waits.append(start + limits.post_timeout - now)
    if progress.running is not None:
        timeout = limits.snippet_timeouts.get(progress.running.index)
        if timeout is not None and progress.paused_since is None:
            waits.append(progress.running_since + progress.paused + timeout - now)
    return max(0.0, min(waits))


def _seconds(value: float) -> str:
    return f"{value:g}"


def _pieces(
    out: SegmentedStream, err: SegmentedStream, displays: list[Displayed], last_seq: int
) -> list[Piece]:
    """A snippet's output in order: the text before each rich output, then the rest."""
    pieces: list[Piece] = [(out.take(d.seq), err.take(d.seq), d) for d in displays]
    pieces.append((out.take(last_seq), err.take(last_seq), None))
    return pieces


def _assemble(
    run: PostRun,
    limits: Limits,
    machine: MachineInfo,
    progress: _Progress,
    captured: tuple[SegmentedStream, SegmentedStream, Budget],
    exit_status: int | None,
    started_at: str,
    start: float,
    explain_death: Callable[[int | None], str | None],
) -> PostExecution:
    out, err, budget = captured
    cap = limits.output_cap
    done = {e.index: e for e in progress.events if isinstance(e, SnippetDone)}
    started = {e.index: e for e in progress.events if isinstance(e, SnippetStarted)}
    inline_done = {e.index: e for e in progress.events if isinstance(e, InlineDone)}
    shown: dict[int, list[Displayed]] = {}  # rich outputs per snippet, in order
    for e in progress.events:
        if isinstance(e, Displayed) and isinstance(e.seq, int):
            before = shown.setdefault(e.index, [])
            if not before or e.seq > before[-1].seq:  # each ends a later phase
                before.append(e)
    messages = [e.text for e in progress.events if isinstance(e, Note)]
    jobs = [e for e in progress.events if isinstance(e, RayJob)]
    stopped_note = progress.kill_note
    if progress.finished is None and progress.kill_reason is None:
        stopped_note = explain_death(exit_status) or describe_death(exit_status)
    results: list[SnippetResult] = []
    problems: list[Problem] = []
    for snippet in run.snippets:
        index = snippet.index
        if not snippet.options.eval:
            result = SnippetResult(index, "skipped")
        elif index in done:
            event = done[index]
            displays = [d for d in shown.get(index, []) if d.seq < event.seq]
            pieces = _pieces(out, err, displays, event.seq)
            result = snippet_result(event, pieces, cap, budget)
        elif index in started and progress.finished is None:
            status = "timed-out" if progress.kill_reason == "timed-out" else "died"
            displays = shown.get(index, [])
            seq = displays[-1].seq + 1 if displays else started[index].seq  # the open phase
            wall = (progress.ended or time.perf_counter()) - progress.running_since
            pieces = _pieces(out, err, displays, seq)
            result = interrupted_result(index, status, pieces, cap, stopped_note, wall, budget)
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
        ray_requested=jobs[-1].requested if jobs else None,
        ray_given=jobs[-1].given if jobs else None,
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
