"""Put each snippet's figure, and what executing it produced, into a parsed body's HTML.

Everything that came from execution is escaped here (text) or sanitised (HTML from
``_repr_html_``): a snippet printing ``</pre><script>`` shows that text, nothing more.
Only a site that sets ``trust_html_output`` gets snippets' HTML raw, scripts included
(interactive plotly, bokeh and altair figures); see :mod:`raypress.publish.rich_outputs`
for how each rich output is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

from raypress.execution.model import (
    FAILED,
    NOT_RUN,
    InlineResult,
    PostExecution,
    Snippet,
    SnippetResult,
    StreamOutput,
    format_duration,
)
from raypress.publish.markdown import ParsedBody
from raypress.publish.rich_outputs import (
    Figure,
    OutputPage,
    display_html,
    folded_pre,
    strip_ansi,
)

_PLACEHOLDER = re.compile(r"<!--(raypress:[0-9a-f]+):([sx])(\d+)(?::(open|close))?-->")


@dataclass(frozen=True, slots=True)
class EmbeddedBody:
    html: str
    figures: tuple[Figure, ...]
    scripts: tuple[str, ...] = ()  # libraries the page must load once (e.g. "plotly")


def embed_results(
    body: ParsedBody,
    execution: PostExecution | None = None,
    trust_html: bool = False,
    output_lines: int = 30,
) -> EmbeddedBody:
    """The final body HTML: snippets in their figures, with outputs when executed.
    ``trust_html``: the site's ``trust_html_output`` (snippets' HTML shown raw). Text
    outputs longer than ``output_lines`` (a snippet's ``output-lines`` wins; 0: never) are
    folded after that many lines."""
    results = {r.index: r for r in execution.snippets} if execution else {}
    inline = {r.index: r for r in execution.inline} if execution else {}
    page = OutputPage(trust_html)
    figures = page.figures

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
        return _figure_close(snippet, result, page, output_lines)

    html = _PLACEHOLDER.sub(replace, body.html)
    return EmbeddedBody(html, tuple(figures), tuple(dict.fromkeys(page.scripts)))


def _visible(snippet: Snippet, result: SnippetResult | None) -> bool:
    return snippet.options.echo or _has_output(snippet, result)


def _has_output(snippet: Snippet, result: SnippetResult | None) -> bool:
    if result is None:
        return False
    if result.error is not None or result.notes or result.status in FAILED:
        return True
    return snippet.options.output and bool(result.outputs)


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
    snippet: Snippet, result: SnippetResult | None, page: OutputPage, output_lines: int
) -> str:
    if not _visible(snippet, result):
        return ""
    parts: list[str] = []
    if result is not None and _has_output(snippet, result):
        limit = snippet.options.output_lines
        parts.append('<div class="snippet-output">')
        parts += _outputs(snippet, result, page, output_lines if limit is None else limit)
        parts.append("</div>")
    parts.append(_caption(snippet, result))
    return "\n".join(parts) + "\n</figure>"


def _outputs(snippet: Snippet, result: SnippetResult, page: OutputPage, limit: int) -> list[str]:
    parts: list[str] = []
    notices: list[str] = []
    if snippet.options.output:
        for output in result.outputs:
            if isinstance(output, StreamOutput):
                parts.append(folded_pre(output.name, output.text, limit))
            else:
                html, notice = display_html(snippet, output, page, limit)
                parts += [html] if html else []
                notices += [notice] if notice and notice not in notices else []
    if result.error is not None:
        parts.append(f'<pre class="error">{_text(result.error.traceback)}</pre>')
    parts += [f'<p class="notice">{escape(note)}</p>' for note in (*result.notes, *notices)]
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


def _text(text: str) -> str:
    return escape(strip_ansi(text), quote=False)
