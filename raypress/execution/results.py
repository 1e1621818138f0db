"""Build-process side: turn a session's events and captured output into results.

This is where everything a session sent is checked and bounded: output cut at the cap
with a note, HTML from ``_repr_html_`` sanitised, images decoded, errors turned into
console problems (``posts/x.md:41: ZeroDivisionError: division by zero``).
"""

from __future__ import annotations

import os
import signal
import statistics

from raypress.errors import Problem
from raypress.execution.capture import Segment, clean_text, size_text
from raypress.execution.model import (
    ErrorInfo,
    Image,
    InlineExpression,
    InlineResult,
    RepeatStats,
    Snippet,
    SnippetResult,
    SnippetStatus,
)
from raypress.execution.protocol import InlineDone, SnippetDone, unb64
from raypress.execution.tracebacks import console_message, looks_like_shell

SHELL_HINT = "this looks like a shell command: fence it as ```bash, or mark it `#| eval: false`"


def sanitize_html(html: str) -> str | None:
    """Sanitised HTML (no scripts, styles or event handlers); None without nh3."""
    try:
        import nh3  # optional until declared
    except ImportError:
        return None
    return nh3.clean(html)


def output_text(segment: Segment, stream: str, cap: int) -> tuple[str, list[str]]:
    """A stream's text for one snippet, with a note when it was cut."""
    text = clean_text(bytes(segment.kept))
    if segment.total <= cap:
        return text, []
    return text, [
        f"{stream} cut: {size_text(segment.total)} printed, the first {size_text(cap)} shown"
    ]


def snippet_result(done: SnippetDone, out: Segment, err: Segment, cap: int) -> SnippetResult:
    """The result of a snippet that ran to its end."""
    stdout, notes = output_text(out, "stdout", cap)
    stderr, err_notes = output_text(err, "stderr", cap)
    notes += err_notes + list(done.notes)
    value = done.value
    if value is not None and len(value) > cap:
        notes.append(f"value cut: its repr has {len(value):,} characters")
        value = value[:cap] + "…"
    html = None
    if done.value_html is not None:
        if len(done.value_html) > cap:
            notes.append("HTML representation too large, showing repr")
        else:
            html = sanitize_html(done.value_html)
    images = tuple(
        Image(mime=str(i["mime"]), data=unb64(str(i["data"])), alt=str(i["alt"]))
        for i in done.images
        if i.get("mime") in ("image/png", "image/svg+xml")
    )
    error = None
    if done.error is not None:
        line = done.error.get("line")
        error = ErrorInfo(
            type=str(done.error["type"]),
            message=str(done.error["message"]),
            traceback=clean_text(str(done.error["traceback"]).encode()),
            line=line if isinstance(line, int) else None,
        )
    repeat = None
    if len(done.runs) > 1:
        runs = [float(r) for r in done.runs]
        repeat = RepeatStats(
            n=len(runs),
            median_s=statistics.median(runs),
            min_s=min(runs),
            max_s=max(runs),
            stdev_s=statistics.stdev(runs),
        )
    status: SnippetStatus = done.status  # type: ignore[assignment]
    if status not in ("ok", "error", "expected-error", "missing-expected-error"):
        status = "error"
    return SnippetResult(
        index=done.index,
        status=status,
        stdout=stdout,
        stderr=stderr,
        value=value,
        value_html=html,
        images=images,
        error=error,
        wall_s=float(done.wall_s),
        cpu_s=float(done.cpu_s),
        repeat=repeat,
        truncated=out.total > cap or err.total > cap or any("cut" in n for n in notes),
        notes=tuple(notes),
    )


def interrupted_result(
    index: int, status: SnippetStatus, out: Segment, err: Segment, cap: int, note: str, wall: float
) -> SnippetResult:
    """The result of the snippet that was running when the session timed out or died."""
    stdout, notes = output_text(out, "stdout", cap)
    stderr, err_notes = output_text(err, "stderr", cap)
    return SnippetResult(
        index=index,
        status=status,
        stdout=stdout,
        stderr=stderr,
        wall_s=wall,
        truncated=out.total > cap or err.total > cap,
        notes=(note, *notes, *err_notes),
    )


def snippet_problem(post: str, snippet: Snippet, result: SnippetResult) -> Problem | None:
    """The console line for a snippet that makes the build fail."""
    if result.status == "error" and result.error is not None:
        error = result.error
        hint = None
        if error.type == "SyntaxError" and looks_like_shell(snippet.source):
            hint = SHELL_HINT
        message = console_message(error.type, error.message)
        return Problem(post, error.line or snippet.code_line, message, hint)
    if result.status == "missing-expected-error":
        return Problem(
            post,
            snippet.line,
            "the snippet is marked `error: true` but raised no exception",
            "remove `#| error: true` or make it raise",
        )
    if result.status in ("timed-out", "died"):
        return Problem(post, snippet.line, result.notes[0] if result.notes else result.status)
    return None


def inline_results(
    expressions: tuple[InlineExpression, ...], events: dict[int, InlineDone], post: str
) -> tuple[tuple[InlineResult, ...], list[Problem]]:
    """Inline results in document order; the ones never evaluated say why."""
    results = []
    problems = []
    for expression in expressions:
        event = events.get(expression.index)
        if event is None:
            result = InlineResult(expression.index, None, "not evaluated: the session stopped")
        else:
            result = InlineResult(expression.index, event.text, event.error)
            if event.error:
                problems.append(
                    Problem(post, expression.line, f"inline expression failed: {event.error}")
                )
        results.append(result)
    return tuple(results), problems


def describe_death(status: int | None) -> str:
    """Why a session ended without finishing, from its raw wait status."""
    if status is None:
        return "the session stopped answering"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the session died: killed by {name}{_WHY.get(name, '')}"
    return f"the session exited with status {os.waitstatus_to_exitcode(status)} before finishing"


_WHY = {
    "SIGSEGV": " (segmentation fault)",
    "SIGKILL": " (out of memory?)",
    "SIGABRT": " (aborted)",
    "SIGBUS": " (bus error)",
}
