"""The data that goes into and comes out of execution: frozen, picklable, JSON-friendly."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
SandboxMode = Literal["auto", "required", "off"]

GIB = 1 << 30
COMPARE_MODES = ("strict", "loose", "none")
IMAGE_EXTENSIONS = {  # an image's file extension from its type (records, figures on pages)
    "image/png": "png",
    "image/svg+xml": "svg",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
}
BINARY_MIMES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # base64 in JSON
FIGURE_FORMATS = ("png", "svg", "webp")  # what matplotlib figures are saved as (fig-format)

__all__ = [  # format_duration is re-exported for the other stages
    "GIB",
    "ClusterUnavailable",
    "DisplayOutput",
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
    "StreamOutput",
    "format_duration",
    "stream_outputs",
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
    # Figures (Quarto's names: fig-cap, fig-alt, fig-format, fig-dpi)
    fig_cap: str | tuple[str, ...] | None = None  # caption(s): <figure> with <figcaption>
    fig_alt: str | tuple[str, ...] | None = None  # alt text of the figures (else their titles)
    fig_format: str | None = None  # png, svg or webp; None: the site's figure_format
    fig_dpi: int | None = None  # matplotlib dots per inch of the 1x image; None: the figure's
    # how the page shows it (publishing only; never part of a record's inputs)
    code_fold: bool | str | None = None  # True: folded away, "show": folded but open; None: post's
    code_summary: str | None = None  # the folded code's summary text ("Code")
    output_lines: int | None = None  # fold outputs longer than this; 0: never; None: site's


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
    """The execution engine cannot start (or not with the isolation required): nothing
    runs and no record is touched."""


class ClusterUnavailable(ExecutionUnavailable):
    """The Ray cluster the sessions were to run on cannot be used (the address is
    unreachable or not a Ray cluster, Ray Client is missing): a failure outside the
    posts, so the build or check exits 2 (worth running again)."""


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
    figure_format: str = "png"  # matplotlib figures unless a snippet says (fig-format)


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """How to execute: parallelism, limits, the Ray cluster to use."""

    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    snippet_timeout: float = 300.0  # seconds per snippet unless the snippet or post says
    post_timeout: float | None = None  # seconds for a whole post
    memory_limit_bytes: int | None = 4 * GIB  # each session's ceiling (None: none)
    output_cap_bytes: int = 100_000  # per stream and snippet
    post_output_cap_bytes: int = 5_000_000  # everything a post shows: outputs, values, images
    ray_address: str | None = None  # an existing cluster: sessions run on its nodes
    executor: str = "local"  # "ray": sessions run on a cluster even without ray_address
    ship_raypress: bool = True  # send raypress to the cluster's nodes with the job
    ray_num_cpus: int | None = None  # CPUs for a ray.init() that names none (None: Ray's)
    ray_start_timeout: float = 120.0  # seconds a cluster start may take, retries included
    ray_keep_warm: bool = False  # keep a fresh cluster started for the next post (serve)
    network: NetworkMode = "auto"  # "auto": a loopback-only namespace where available
    prewarm: tuple[str, ...] = ()  # imported by the fork server besides what posts import
    temp_root: Path | None = None  # where session folders go (None: the system's)
    sandbox: SandboxMode = "auto"  # "required": fail unless isolation is full
    project_root: Path | None = None  # the folder sessions may read (besides the posts')
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
class StreamOutput:
    """Text a snippet printed on stdout or stderr (Jupyter's ``stream`` output)."""

    name: Literal["stdout", "stderr"]
    text: str


@dataclass(frozen=True, slots=True)
class DisplayOutput:
    """A rich output: one object as a MIME bundle, as Jupyter's ``display_data`` (or, with
    ``result``, the ``execute_result`` of the snippet's final expression).

    ``data`` holds (MIME type, value) pairs: bytes for binary images (``BINARY_MIMES``),
    JSON text for ``application/json`` and ``*+json`` types, text for the rest. Nothing in
    it is sanitised: what is safe to put on a page is decided when it is embedded.
    ``metadata`` is Jupyter's metadata object as JSON text (e.g. an image's CSS
    ``width``/``height``, ``alt``), "" for none.
    """

    data: tuple[tuple[str, str | bytes], ...]
    metadata: str = ""
    result: bool = False

    def get(self, mime: str) -> str | bytes | None:
        """The value for ``mime``, None when the bundle lacks it."""
        for key, value in self.data:
            if key == mime:
                return value
        return None

    @property
    def mimes(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.data)

    @property
    def meta(self) -> dict[str, Any]:
        """``metadata`` decoded (an empty dict when there is none or it is not an object)."""
        if not self.metadata:
            return {}
        try:
            value = json.loads(self.metadata)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def image(self) -> Image | None:
        """The bundle's image (the first of PNG, WebP, JPEG, GIF, SVG), None without one."""
        meta = self.meta
        for mime in ("image/png", "image/webp", "image/jpeg", "image/gif", "image/svg+xml"):
            value = self.get(mime)
            if value is not None:
                data = value if isinstance(value, bytes) else value.encode()
                alt = meta.get("alt") if isinstance(meta.get("alt"), str) else ""
                return Image(mime=mime, data=data, alt=alt)
        return None


Output = StreamOutput | DisplayOutput


@dataclass(frozen=True, slots=True)
class SnippetResult:
    """What one snippet did.

    ``outputs`` is what it showed, in order, as a notebook shows a cell's outputs: text
    printed on stdout and stderr between rich outputs (``display()`` calls, figures, the
    final expression's value). ``stdout``, ``value``, ``images``... are views of it.
    """

    index: int
    status: SnippetStatus
    outputs: tuple[Output, ...] = ()
    error: ErrorInfo | None = None
    wall_s: float = 0.0  # the median when repeated
    cpu_s: float = 0.0  # the session's CPU time, children included
    repeat: RepeatStats | None = None
    truncated: bool = False
    notes: tuple[str, ...] = ()  # shown with the output, e.g. "timed out after 5 s"

    @property
    def stdout(self) -> str:
        """Everything printed on stdout."""
        return "".join(
            o.text for o in self.outputs if isinstance(o, StreamOutput) and o.name == "stdout"
        )

    @property
    def stderr(self) -> str:
        """Everything printed on stderr."""
        return "".join(
            o.text for o in self.outputs if isinstance(o, StreamOutput) and o.name == "stderr"
        )

    @property
    def displays(self) -> tuple[DisplayOutput, ...]:
        """The rich outputs, in order (the final expression's value included)."""
        return tuple(o for o in self.outputs if isinstance(o, DisplayOutput))

    @property
    def value(self) -> str | None:
        """The text repr of a final bare expression (None: there was none)."""
        for output in self.displays:
            if output.result:
                text = output.get("text/plain")
                return text if isinstance(text, str) else ""
        return None

    @property
    def value_html(self) -> str | None:
        """The final expression's ``_repr_html_``, raw (None: it has none)."""
        for output in self.displays:
            if output.result:
                html = output.get("text/html")
                return html if isinstance(html, str) else None
        return None

    @property
    def images(self) -> tuple[Image, ...]:
        """The images among the rich outputs (figures), in order."""
        found = (output.image() for output in self.displays)
        return tuple(image for image in found if image is not None)


def stream_outputs(stdout: str, stderr: str) -> tuple[StreamOutput, ...]:
    """The outputs of a snippet that printed only ``stdout`` then ``stderr``."""
    return tuple(
        StreamOutput(name, text)  # type: ignore[arg-type]
        for name, text in (("stdout", stdout), ("stderr", stderr))
        if text
    )


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
    isolation: str = ""  # "" when full; else "reduced — what the machine could not give"
    ray_requested: str | None = None  # ray.init's resource arguments: "num_cpus=4"
    ray_given: str | None = None  # what the post ran on: "a fresh cluster of 4 CPUs, 0 GPUs"


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
