"""The data that goes into and comes out of execution: frozen, picklable, JSON-friendly."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from raypress.errors import Problem
from raypress.execution.durations import format_duration

SnippetStatus = Literal[
    "ok",
    "error",
    "expected-error",
    "missing-expected-error",
    "timed-out",
    "not-run",
    "skipped",
    "died",
]
NOT_RUN: frozenset[str] = frozenset({"not-run", "skipped"})  # shown, not executed this time
FAILED: frozenset[str] = frozenset({"error", "missing-expected-error", "timed-out", "died"})
# "infrastructure": it could not run for a reason outside the post (a lost node, an
# unreachable cluster); such a run never replaces the post's record
PostStatus = Literal["ok", "failed", "died", "timed-out", "infrastructure"]
RayMode = Literal["shared", "isolated"]
NetworkMode = Literal["auto", "isolated", "host"]

GIB = 1 << 30
COMPARE_MODES = ("strict", "loose", "none")
IMAGE_EXTENSIONS = {  # an image's file extension from its type (records, figures on pages)
    "image/png": "png",
    "image/svg+xml": "svg",
    "image/jpeg": "jpg",
    "image/gif": "gif",
}

__all__ = [  # format_duration is re-exported for the other stages
    "GIB",
    "Environment",
    "ErrorInfo",
    "ExecutionSettings",
    "ExecutionUnavailable",
    "Image",
    "InlineExpression",
    "InlineResult",
    "PostExecution",
    "PostRun",
    "ProgressEvent",
    "RepeatStats",
    "Snippet",
    "SnippetOptions",
    "SnippetResult",
    "format_duration",
]


@dataclass(frozen=True, slots=True)
class SnippetOptions:
    """Per-snippet options; every field has the default a plain fence gets."""

    label: str | None = None
    eval: bool = True  # run it (False: show only)
    echo: bool = True  # show the source (False: hidden setup code)
    output: bool = True  # show what it printed
    error: bool = False  # an exception is expected
    timeout: float | None = None  # seconds; None: the post's or the build's default
    repeat: int = 1  # time the snippet this many times (median and spread)
    deps: tuple[str, ...] = ()  # files the snippet reads, relative to the post
    compare: str = "strict"  # how `check` compares its output: strict, loose or none


@dataclass(frozen=True, slots=True)
class Snippet:
    """One runnable Python fence of a post.

    ``line`` is the 1-based line of the opening fence in the post file and
    ``code_line`` the line of the first line of ``source`` (after the options),
    so tracebacks can name lines of the post.
    """

    post: str  # the post's path relative to the project root, e.g. "posts/x.md"
    index: int  # 0-based position among the post's snippets
    line: int
    code_line: int
    language: str
    source: str
    options: SnippetOptions = field(default_factory=SnippetOptions)


@dataclass(frozen=True, slots=True)
class InlineExpression:
    """An inline `` `{python} expr` `` in the prose, evaluated in the post's session
    right after snippet ``after_snippet`` has run (-1: before any snippet)."""

    index: int
    line: int
    source: str
    after_snippet: int


class ExecutionUnavailable(RuntimeError):
    """The execution engine cannot start for a reason outside the posts (the cluster at
    the given address is unreachable, Ray Client is missing): nothing runs, no record is
    touched, and the build or check exits 2 (worth retrying)."""


@dataclass(frozen=True, slots=True)
class PostRun:
    """One post to execute: its snippets in document order and its inline expressions."""

    post: str  # relative path, e.g. "posts/x.md"
    post_dir: Path  # absolute folder holding the post (readable by the session)
    snippets: tuple[Snippet, ...]
    inline: tuple[InlineExpression, ...] = ()
    timeout: float | None = None  # the post's default per-snippet timeout
    uses_ray: bool = False  # also detected from the snippets' imports
    ray_mode: RayMode = "shared"
    # what the post's session asks of the cluster (front matter `resources`), as
    # (name, amount): num_cpus, num_gpus, memory (bytes) or a custom resource
    resources: tuple[tuple[str, float], ...] = ()
    resources_line: int | None = None  # its front-matter line, for problems


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """How to execute: parallelism, limits, the Ray cluster to use."""

    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    snippet_timeout: float = 300.0  # seconds per snippet unless the snippet or post says
    post_timeout: float | None = None  # seconds for a whole post
    memory_limit_bytes: int | None = 4 * GIB  # RLIMIT_DATA of each session (None: none)
    output_cap_bytes: int = 100_000  # per stream and snippet
    ray_address: str | None = None  # an existing cluster: sessions run on its nodes
    executor: str = "local"  # "ray": sessions run on a cluster even without ray_address
    ship_raypress: bool = True  # send raypress to the cluster's nodes with the job
    ray_num_cpus: int | None = None  # logical CPUs of the build's cluster (None: max(8, cores))
    ray_object_store_bytes: int | None = None  # None: min(2 GiB, a tenth of the memory)
    network: NetworkMode = "auto"  # "auto": a loopback-only namespace where available
    prewarm: tuple[str, ...] = ()  # imported by the fork server besides what posts import
    temp_root: Path | None = None  # where session folders go (None: the system's)
    log: Callable[[str], None] | None = field(default=None, compare=False)
    # what runs now, for a live status (called from the engine's threads; must be quick)
    progress: Callable[[ProgressEvent], None] | None = field(default=None, compare=False)


ProgressKind = Literal[
    "posts-queued",  # count: posts about to run (sent by the build, not the engine)
    "cluster-starting",
    "cluster-ready",
    "cluster-failed",
    "post-started",  # count: the snippets it runs
    "snippet-started",  # snippet: 1-based number; line: the fence's line in the post
    "snippet-done",  # status: the snippet's
    "post-done",  # status: the post's
]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of execution as it happens (ExecutionSettings.progress)."""

    kind: ProgressKind
    post: str = ""
    snippet: int | None = None
    line: int | None = None
    count: int = 0
    status: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Image:
    """A figure produced by a snippet."""

    mime: str  # "image/png"
    data: bytes
    alt: str


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception raised by a snippet, its traceback trimmed and mapped to post lines."""

    type: str
    message: str
    traceback: str
    line: int | None  # line of the post file


@dataclass(frozen=True, slots=True)
class RepeatStats:
    """Timing of a snippet run ``n`` times (``repeat: n``)."""

    n: int
    median_s: float
    min_s: float
    max_s: float
    stdev_s: float


@dataclass(frozen=True, slots=True)
class SnippetResult:
    """What one snippet did."""

    index: int
    status: SnippetStatus
    stdout: str = ""
    stderr: str = ""
    value: str | None = None  # repr of a final bare expression
    value_html: str | None = None  # its sanitised _repr_html_
    images: tuple[Image, ...] = ()
    error: ErrorInfo | None = None
    wall_s: float = 0.0  # the median when repeated
    cpu_s: float = 0.0  # the session's CPU time, children included
    repeat: RepeatStats | None = None
    truncated: bool = False
    notes: tuple[str, ...] = ()  # shown with the output, e.g. "timed out after 5 s"


@dataclass(frozen=True, slots=True)
class InlineResult:
    """The text of an inline expression, or why there is none."""

    index: int
    text: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Environment:
    """What the outputs were measured on."""

    python: str = ""
    platform: str = ""
    cpu: str = ""
    cpu_count: int = 0
    packages: tuple[tuple[str, str], ...] = ()  # (name, version) of what the session imported
    ray_version: str | None = None
    ray_cluster_cpus: float | None = None
    node: str | None = None  # the cluster node the session ran on (sessions as cluster work)


@dataclass(frozen=True, slots=True)
class PostExecution:
    """Everything one post's session produced."""

    post: str
    status: PostStatus
    snippets: tuple[SnippetResult, ...]
    inline: tuple[InlineResult, ...]
    environment: Environment
    started_at: str  # ISO 8601, UTC
    wall_s: float
    messages: tuple[str, ...] = ()  # notes for the build log, not the page
    problems: tuple[Problem, ...] = ()  # errors for the console, e.g. file:line: Type: message

    @property
    def failed(self) -> bool:
        """True when the build should exit non-zero because of this post."""
        return self.status != "ok"
