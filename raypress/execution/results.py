"""Build-process side: turn a session's events and captured output into results.

This is where everything a session sent is checked and bounded: output cut at the cap
(per snippet, and the post's whole output cap) with a note, HTML from ``_repr_html_``
sanitised, images decoded and checked (PNG by its signature, SVG through
:func:`~raypress.execution.safe_svg.sanitize_svg`), errors turned into console problems
(``posts/x.md:41: ZeroDivisionError: division by zero``).
"""

from __future__ import annotations

import os
import signal
import statistics

from raypress.errors import Problem
from raypress.execution.capture import Budget, Segment, clean_text, size_text
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
from raypress.execution.safe_svg import sanitize_svg
from raypress.execution.tracebacks import console_message, looks_like_shell

SHELL_HINT = "this looks like a shell command: fence it as ```bash, or mark it `#| eval: false`"


def sanitize_html(html: str) -> str | None:
    """Sanitised HTML (no scripts, styles or event handlers); None without nh3."""
    try:
        import nh3  # optional until declared
    except ImportError:
        return None
    return nh3.clean(html)


POST_CAP_NOTE = "the post's output cap was reached (post_output_cap_bytes)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def output_text(segment: Segment, stream: str, cap: int) -> tuple[str, list[str]]:
    """A stream's text for one snippet, with a note when it was cut."""
    text = clean_text(bytes(segment.kept))
    if segment.starved:
        return text, [f"{stream} cut: {size_text(segment.total)} printed; {POST_CAP_NOTE}"]
    if segment.total <= cap:
        return text, []
    return text, [
        f"{stream} cut: {size_text(segment.total)} printed, the first {size_text(cap)} shown"
    ]


def snippet_result(
    done: SnippetDone, out: Segment, err: Segment, cap: int, budget: Budget | None = None
) -> SnippetResult:
    """The result of a snippet that ran to its end (values and images are charged to the
    post's ``budget``; what does not fit is left out with a note)."""
    budget = budget if budget is not None else Budget(1 << 62)
    stdout, notes = output_text(out, "stdout", cap)
    stderr, err_notes = output_text(err, "stderr", cap)
    notes += err_notes + list(done.notes)
    value = done.value
    if value is not None and len(value) > cap:
        notes.append(f"value cut: its repr has {len(value):,} characters")
        value = value[:cap] + "…"
    if value is not None and budget.take(len(value)) < len(value):
        notes.append(f"value left out: {POST_CAP_NOTE}")
        value = None
    html = None
    if done.value_html is not None:
        if len(done.value_html) > cap:
            notes.append("HTML representation too large, showing repr")
        elif budget.take(len(done.value_html)) < len(done.value_html):
            notes.append(f"HTML representation left out: {POST_CAP_NOTE}")
        else:
            html = sanitize_html(done.value_html)
    images, image_notes = checked_images(done.images, budget)
    notes += image_notes
    error = None
    if done.error is not None:
        line = done.error.get("line")
        error = ErrorInfo(
            type=str(done.error["type"])[:200],
            message=str(done.error["message"])[:cap],
            traceback=clean_text(str(done.error["traceback"])[:cap].encode()),
            line=line if isinstance(line, int) and not isinstance(line, bool) else None,
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
        truncated=out.total > cap
        or err.total > cap
        or out.starved
        or err.starved
        or any("cut" in n or "left out" in n for n in notes),
        notes=tuple(notes),
    )


def checked_images(
    sent: list[dict[str, object]], budget: Budget
) -> tuple[tuple[Image, ...], list[str]]:
    """The images a session sent that are what they claim: PNG with a PNG signature, SVG
    sanitised; each charged to the post's budget."""
    images: list[Image] = []
    notes: list[str] = []
    for number, item in enumerate(sent, start=1):
        mime, alt = item.get("mime"), str(item.get("alt", ""))
        try:
            data = unb64(str(item.get("data", "")))
        except ValueError:
            notes.append(f"figure {number} left out: its data is not base64")
            continue
        if mime == "image/svg+xml":
            cleaned = sanitize_svg(data)
            if cleaned is None:
                notes.append(f"figure {number} left out: not an SVG document raypress can check")
                continue
            data = cleaned
        elif mime != "image/png" or not data.startswith(PNG_SIGNATURE):
            notes.append(f"figure {number} left out: not a PNG or SVG image")
            continue
        if budget.take(len(data)) < len(data):
            notes.append(f"figure {number} left out: {POST_CAP_NOTE}")
            continue
        images.append(Image(mime=str(mime), data=data, alt=alt))
    return tuple(images), notes


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
        truncated=out.total > cap or err.total > cap or out.starved or err.starved,
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
