"""Put each snippet's figure, and what executing it produced, into a parsed body's HTML.

Everything that came from execution is escaped here (text) or sanitised again (HTML from
``_repr_html_``): a snippet printing ``</pre><script>`` shows that text, nothing more.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from html import escape

import nh3

from raypress.execution.model import (
    FAILED,
    IMAGE_EXTENSIONS,
    NOT_RUN,
    Image,
    InlineResult,
    PostExecution,
    Snippet,
    SnippetResult,
    format_duration,
)
from raypress.publish.markdown import ParsedBody

_PLACEHOLDER = re.compile(r"<!--(raypress:[0-9a-f]+):([sx])(\d+)(?::(open|close))?-->")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]")


@dataclass(frozen=True, slots=True)
class Figure:
    """An image file produced by a snippet, written next to the post's page."""

    name: str  # file name inside the post's folder
    data: bytes


@dataclass(frozen=True, slots=True)
class EmbeddedBody:
    html: str
    figures: tuple[Figure, ...]


def embed_results(
    body: ParsedBody, execution: PostExecution | None = None, output_lines: int = 30
) -> EmbeddedBody:
    """The final body HTML: snippets in their figures, with outputs when executed.
    Text outputs longer than ``output_lines`` (a snippet's ``output-lines`` wins; 0:
    never) are folded after that many lines."""
    results = {r.index: r for r in execution.snippets} if execution else {}
    inline = {r.index: r for r in execution.inline} if execution else {}
    figures: list[Figure] = []

    def replace(match: re.Match[str]) -> str:
        marker, kind, index, part = match.group(1), match.group(2), int(match.group(3)), match[4]
        if marker != body.marker:  # the same comment written by hand in the post: keep it
            return match.group(0)
        if kind == "x":
            return _inline_html(body.inline[index].source, inline.get(index))
        snippet = body.snippets[index]
        result = results.get(index)
        if part == "open":
            return _figure_open(snippet, result)
        return _figure_close(snippet, result, figures, output_lines)

    return EmbeddedBody(_PLACEHOLDER.sub(replace, body.html), tuple(figures))


def strip_ansi(text: str) -> str:
    """Remove terminal colour and cursor escape sequences."""
    return _ANSI.sub("", text)


def _visible(snippet: Snippet, result: SnippetResult | None) -> bool:
    return snippet.options.echo or _has_output(snippet, result)


def _has_output(snippet: Snippet, result: SnippetResult | None) -> bool:
    if result is None:
        return False
    if result.error is not None or result.notes or result.status in FAILED:
        return True
    return snippet.options.output and bool(
        result.stdout or result.stderr or result.value or result.value_html or result.images
    )


def _figure_open(snippet: Snippet, result: SnippetResult | None) -> str:
    if not _visible(snippet, result):
        return ""
    classes = ["snippet"]
    if result is not None:
        if result.status in NOT_RUN:
            classes.append("not-run")
        elif result.status == "timed-out":
            classes.append("timed-out")
        elif result.status in FAILED:
            classes.append("failed")
    elif not snippet.options.eval:
        classes.append("not-run")
    label = snippet.options.label
    attributes = f' data-label="{escape(label)}"' if label else ""
    return (
        f'<figure class="{" ".join(classes)}" id="snippet-{snippet.index + 1}" '
        f'data-line="{snippet.line}"{attributes}>\n'
    )


def _figure_close(
    snippet: Snippet, result: SnippetResult | None, figures: list[Figure], output_lines: int
) -> str:
    if not _visible(snippet, result):
        return ""
    parts: list[str] = []
    if result is not None and _has_output(snippet, result):
        limit = snippet.options.output_lines
        parts.append('<div class="snippet-output">')
        parts += _outputs(snippet, result, figures, output_lines if limit is None else limit)
        parts.append("</div>")
    parts.append(_caption(snippet, result))
    return "\n".join(parts) + "\n</figure>"


def _outputs(
    snippet: Snippet, result: SnippetResult, figures: list[Figure], limit: int
) -> list[str]:
    parts: list[str] = []
    if snippet.options.output:
        if result.stdout:
            parts.append(_folded_pre("stdout", result.stdout, limit))
        if result.stderr:
            parts.append(_folded_pre("stderr", result.stderr, limit))
        if result.value_html:
            parts.append(f'<div class="result-html">{_sanitise(result.value_html)}</div>')
        elif result.value is not None:
            prompt = '<span class="prompt">Out:</span> '
            parts.append(_folded_pre("result", result.value, limit, prompt))
        for number, image in enumerate(result.images, start=1):
            figure = _figure_file(snippet, number, image)
            figures.append(figure)
            alt = image.alt or f"Figure {number} produced by snippet {snippet.index + 1}"
            parts.append(f'<img class="figure" src="{figure.name}" alt="{escape(alt)}">')
    if result.error is not None:
        parts.append(f'<pre class="error">{_text(result.error.traceback)}</pre>')
    parts += [f'<p class="notice">{escape(note)}</p>' for note in result.notes]
    if result.truncated and not any("trunc" in n for n in result.notes):
        parts.append('<p class="notice">Output truncated.</p>')
    return parts


def _caption(snippet: Snippet, result: SnippetResult | None) -> str:
    number = snippet.index + 1
    link = f'<a href="#snippet-{number}">snippet {number}</a>'
    if result is None or result.status in NOT_RUN or result.wall_s <= 0:
        return f'<figcaption class="snippet-meta">{link}</figcaption>'  # nothing was timed
    wall, cpu = format_duration(result.wall_s), format_duration(result.cpu_s)
    if result.status in ("timed-out", "died"):  # stopped from outside: CPU time unknown
        timing = wall
        title = f"wall time {wall} until the session was stopped (CPU time not measured)"
    elif result.repeat is not None:
        stats = result.repeat
        spread = format_duration(stats.stdev_s)
        timing = f"{wall} ± {spread} (median of {stats.n})"
        title = (
            f"median wall time of {stats.n} runs; "
            f"min {format_duration(stats.min_s)}, max {format_duration(stats.max_s)}"
        )
    else:
        timing, title = wall, f"wall time {wall} (CPU time {cpu})"
    cpu_badge = ""
    if result.status not in ("timed-out", "died"):
        cpu_badge = (
            f' <span class="timing-cpu" title="CPU time of the post\'s own process and its '
            f'children; Ray workers run elsewhere">CPU {escape(cpu)}</span>'
        )
    return (
        f'<figcaption class="snippet-meta"><span class="timing-badge">'
        f'<span class="timing" title="{escape(title)}">{escape(timing)}</span>'
        f' <span class="timing-label">wall</span>{cpu_badge}</span> {link}</figcaption>'
    )


def _folded_pre(kind: str, text: str, limit: int, prompt: str = "") -> str:
    """``<pre class=kind>`` for an output; past ``limit`` lines (0: never) the rest is in a
    ``<details>`` below it: "show all" works without JavaScript, and the first lines stay
    where the reader expects the output."""
    text = strip_ansi(text)
    lines = text.split("\n")
    count = len(lines) - (lines[-1] == "")
    if not limit or count <= limit:
        return f'<pre class="{kind}">{prompt}{escape(text, quote=False)}</pre>'
    head = "\n".join(lines[:limit]) + "\n"
    rest = "\n".join(lines[limit:])
    hidden = count - limit
    return (
        f'<div class="output-fold"><pre class="{kind}">{prompt}{escape(head, quote=False)}</pre>'
        f'<details class="output-more"><summary>'
        f'<span class="when-closed">Show all {count} lines ({hidden} more)</span>'
        f'<span class="when-open">Hide the last {hidden} lines</span></summary>'
        f'<pre class="{kind} output-rest">{escape(rest, quote=False)}</pre></details></div>'
    )


def _inline_html(source: str, result: InlineResult | None) -> str:
    if result is None:
        return f'<code class="inline-expression">{escape(source)}</code>'
    if result.error is not None or result.text is None:
        message = result.error or "no value"
        return (
            f'<code class="inline-expression failed" title="{escape(message)}">'
            f"{escape(source)}</code>"
        )
    return f'<span class="inline-result">{_text(result.text)}</span>'


def _figure_file(snippet: Snippet, number: int, image: Image) -> Figure:
    extension = IMAGE_EXTENSIONS.get(image.mime, "bin")
    digest = hashlib.sha256(image.data).hexdigest()[:10]
    return Figure(f"snippet-{snippet.index + 1}-{number}-{digest}.{extension}", image.data)


def _text(text: str) -> str:
    return escape(strip_ansi(text), quote=False)


def _sanitise(fragment: str) -> str:
    return nh3.clean(fragment)
