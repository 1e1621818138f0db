"""Put snippets' figures (and, once executed, their results) into a parsed body's HTML."""

from __future__ import annotations

import re
from html import escape

from raypress.markdown import ParsedBody


def embed_results(body: ParsedBody) -> str:
    """The final body HTML: each snippet wrapped in its figure, inline expressions shown."""
    snippets = body.snippets

    def replace(match: re.Match[str]) -> str:
        kind, index, part = match.group(1), int(match.group(2)), match.group(3)
        if kind == "x":
            expression = body.inline[index]
            return f'<code class="inline-expression">{escape(expression.source)}</code>'
        snippet = snippets[index]
        if not snippet.options.echo:
            return ""
        if part == "open":
            label = f' data-label="{escape(snippet.options.label)}"' if snippet.options.label else ""
            return (
                f'<figure class="snippet" id="snippet-{index + 1}" '
                f'data-line="{snippet.line}"{label}>\n'
            )
        return "</figure>"

    pattern = re.compile(rf"<!--{re.escape(body.marker)}:([sx])(\d+)(?::(open|close))?-->")
    return pattern.sub(replace, body.html)
