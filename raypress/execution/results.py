"""Build-process side: turn a session's events and captured output into results.

This is where everything a session sent is checked and bounded: output cut at the cap
(per snippet, and the post's whole output cap, its :class:`Budget`) with a note, rich
outputs (MIME bundles) validated, images decoded and checked (PNG by its signature, SVG
through :func:`~raypress.execution.safe_svg.sanitize_svg`), errors turned into console
problems (``posts/x.md:41: ZeroDivisionError: division by zero``). HTML is kept as the
snippet made it: whether a page may show it raw (the site's ``trust_html_output``) or
sanitised is decided when it is embedded.

A snippet's outputs come in *pieces*: the text printed on stdout and stderr up to a
rich output, then that output (``Displayed``); the last piece has no rich output.
"""

from __future__ import annotations

import binascii
import json
import os
import re
import signal

from raypress.errors import Problem
from raypress.execution.capture import Budget, Segment, clean_text, size_text
from raypress.execution.model import (
    BINARY_MIMES,
    DisplayOutput,
    ErrorInfo,
    InlineExpression,
    InlineResult,
    Output,
    RepeatStats,
    Snippet,
    SnippetResult,
    SnippetStatus,
    StreamOutput,
)
from raypress.execution.protocol import Displayed, InlineDone, SnippetDone, unb64
from raypress.execution.ray_logs import split_absl_lines, system_note
from raypress.execution.tracebacks import console_message, looks_like_shell

SHELL_HINT = "this looks like a shell command: fence it as ```bash, or mark it `#| eval: false`"
MAX_DISPLAYS = 200  # rich outputs kept per snippet
RICH_CAP = 20_000_000  # bytes of one image or JSON value of a rich output
_MIME = re.compile(r"^[a-z]+/[A-Za-z0-9][A-Za-z0-9.+_-]{0,126}$")

POST_CAP_NOTE = "the post's output cap was reached (post_output_cap_bytes)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = {  # what a binary image must start with to be published as that type
    "image/png": (PNG_SIGNATURE,),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}

Piece = tuple[Segment, Segment, Displayed | None]  # stdout, stderr, then a rich output


def outputs_of(
    pieces: list[Piece], cap: int, budget: Budget | None = None
) -> tuple[tuple[Output, ...], list[str], bool]:
    """A snippet's outputs in order, notes on what was cut or refused, and whether
    anything was cut. Each stream keeps at most ``cap`` bytes over the whole snippet;
    rich outputs are charged to the post's ``budget`` (streams were, as they were read)."""
    budget = budget if budget is not None else Budget(1 << 62)
    outputs: list[Output] = []
    notes: list[str] = []
    room = {"stdout": cap, "stderr": cap}
    printed = {"stdout": 0, "stderr": 0}
    dropped = {"stdout": False, "stderr": False}
    starved = {"stdout": False, "stderr": False}
    cut = False
    for number, (out, err, shown) in enumerate(pieces):
        for name, segment in (("stdout", out), ("stderr", err)):
            printed[name] += segment.total
            dropped[name] = dropped[name] or segment.dropped
            starved[name] = starved[name] or segment.starved
            text = clean_text(bytes(segment.kept))
            if name == "stderr":  # absl's raw lines are the runtime's, not the program's
                text, runtime = split_absl_lines(text)
                notes.extend(system_note("driver", line) for line in runtime)
            if len(text.encode()) > room[name]:
                text = text.encode()[: room[name]].decode(errors="ignore")
                dropped[name] = True
            room[name] -= len(text.encode())
            if text:
                _add_stream(outputs, name, text)
        if shown is None:
            continue
        if number >= MAX_DISPLAYS:
            notes.append(f"{len(pieces) - 1 - MAX_DISPLAYS} more rich outputs left out")
            cut = True
            continue
        display, display_cut = display_output(shown, cap, notes, budget)
        cut = cut or display_cut
        if display is not None:
            outputs.append(display)
    for name in ("stdout", "stderr"):
        if starved[name]:
            notes.append(f"{name} cut: {size_text(printed[name])} printed; {POST_CAP_NOTE}")
            cut = True
        elif dropped[name]:
            shown_bytes = size_text(cap)
            notes.append(
                f"{name} cut: {size_text(printed[name])} printed, the first {shown_bytes} shown"
            )
            cut = True
    return tuple(outputs), notes, cut


def _add_stream(outputs: list[Output], name: str, text: str) -> None:
    """Append text, merged with the output before it when that is the same stream."""
    last = outputs[-1] if outputs else None
    if isinstance(last, StreamOutput) and last.name == name:
        outputs[-1] = StreamOutput(name, last.text + text)  # type: ignore[arg-type]
    else:
        outputs.append(StreamOutput(name, text))  # type: ignore[arg-type]


def display_output(
    shown: Displayed, cap: int, notes: list[str], budget: Budget | None = None
) -> tuple[DisplayOutput | None, bool]:
    """A rich output checked and bounded (None: nothing usable), and whether it was cut.
    What it keeps is charged to the post's ``budget``; what does not fit is left out."""
    if not isinstance(shown.data, dict):
        return None, False
    budget = budget if budget is not None else Budget(1 << 62)
    data: list[tuple[str, str | bytes]] = []
    cut = False
    for mime, value in shown.data.items():
        if not isinstance(mime, str) or not _MIME.match(mime):
            continue
        kept_before = len(data)
        if mime in BINARY_MIMES:
            try:
                raw = unb64(value) if isinstance(value, str) else None
            except (binascii.Error, ValueError):
                raw = None
            if raw is None or len(raw) > RICH_CAP:
                notes.append(f"an output of type {mime} was left out (not base64 or over 20 MB)")
                cut = True
                continue
            signatures = _SIGNATURES.get(mime)
            if signatures is not None and not raw.startswith(signatures):
                notes.append(f"an output of type {mime} was left out: its bytes are not {mime}")
                cut = True
                continue
            data.append((mime, raw))
        elif mime == "application/json" or mime.endswith("+json"):
            text = json.dumps(value, sort_keys=True, ensure_ascii=False)
            if len(text) > RICH_CAP:
                notes.append(f"an output of type {mime} was left out: {len(text):,} characters")
                cut = True
                continue
            data.append((mime, text))
        elif isinstance(value, str):
            if mime == "image/svg+xml":
                if len(value) > RICH_CAP:
                    notes.append(f"an SVG output was left out: {len(value):,} characters")
                    cut = True
                    continue
                from raypress.execution.safe_svg import sanitize_svg  # xml: 20 ms to import

                cleaned = sanitize_svg(value.encode())
                if cleaned is None:
                    notes.append("an SVG output was left out: not an SVG raypress can check")
                    cut = True
                    continue
                data.append((mime, cleaned.decode("utf-8", "replace")))
            elif mime == "text/plain":
                if len(value) > cap:
                    notes.append(f"value cut: its repr has {len(value):,} characters")
                    value, cut = value[:cap] + "…", True
                data.append((mime, value))
            elif len(value) > cap:
                kind = "HTML" if mime == "text/html" else mime
                notes.append(f"{kind} representation too large, showing repr")
            else:
                data.append((mime, value))
        if len(data) > kept_before:  # the post's output cap pays for what is kept
            size = len(data[-1][1])
            if budget.take(size) < size:
                data.pop()
                notes.append(f"an output of type {mime} was left out: {POST_CAP_NOTE}")
                cut = True
    if not data:
        return None, cut
    metadata = ""
    if isinstance(shown.metadata, dict) and shown.metadata:
        metadata = json.dumps(shown.metadata, sort_keys=True, ensure_ascii=False)[:10_000]
    return DisplayOutput(tuple(data), metadata, bool(shown.result)), cut


def snippet_result(
    done: SnippetDone, pieces: list[Piece], cap: int, budget: Budget | None = None
) -> SnippetResult:
    """The result of a snippet that ran to its end (its rich outputs are charged to the
    post's ``budget``; what does not fit is left out with a note)."""
    outputs, notes, cut = outputs_of(pieces, cap, budget)
    notes += list(done.notes)
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
        import statistics  # only for repeated snippets

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
        outputs=outputs,
        error=error,
        wall_s=float(done.wall_s),
        cpu_s=float(done.cpu_s),
        repeat=repeat,
        truncated=cut,
        notes=tuple(notes),
    )


def interrupted_result(
    index: int,
    status: SnippetStatus,
    pieces: list[Piece],
    cap: int,
    note: str,
    wall: float,
    budget: Budget | None = None,
) -> SnippetResult:
    """The result of the snippet that was running when the session timed out or died."""
    outputs, notes, cut = outputs_of(pieces, cap, budget)
    return SnippetResult(
        index=index,
        status=status,
        outputs=outputs,
        wall_s=wall,
        truncated=cut,
        notes=(note, *notes),
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
