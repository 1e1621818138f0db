"""How a rich output (a MIME bundle a snippet displayed) appears on a page.

One representation of each bundle is shown, the richest the page may show, as
nbconvert's HTML exporter picks one:

* **trusted** (the site sets ``trust_html_output = true``): a plotly figure is drawn by
  plotly.js (copied from the installed plotly package to ``/assets/vendor/``, loaded
  once by each page that has one); HTML is put in raw, scripts included (altair's and
  bokeh's own output); then as below.
* **untrusted** (the default): HTML sanitised (no scripts, styles or event handlers),
  Markdown rendered without raw HTML, SVG (sanitised when it was received) and other
  images as files with their CSS size, lazily loaded, LaTeX as MathML, JSON and text as
  text. An interactive output (plotly, Vega-Lite, bokeh, widgets, HTML with scripts)
  shows its static image where the library gave one, and a notice saying why it is
  static.

``fig-cap`` wraps each image in a ``<figure>`` with its ``<figcaption>``; ``fig-alt``
gives its alt text (else the figure's title, else "Figure N of snippet M").
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from html import escape

import nh3

from raypress.execution.model import IMAGE_EXTENSIONS, DisplayOutput, Snippet
from raypress.execution.rich_output import image_size

_IMAGES = ("image/svg+xml", "image/png", "image/webp", "image/jpeg", "image/gif")
_INTERACTIVE = {
    "application/vnd.plotly.v1+json": "plotly",
    "application/vnd.bokehjs_exec.v0+json": "bokeh",
    "application/vnd.bokehjs_load.v0+json": "bokeh",
    "application/vnd.jupyter.widget-view+json": "Jupyter widget",
    "application/javascript": "JavaScript",
}
_VEGA = re.compile(r"^application/vnd\.vega(lite)?\.v\d+(\.\d+)*\+?json$")
_SCRIPT = re.compile(r"<script\b", re.I)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]")
_SVG_SIZE = re.compile(
    r'<svg[^>]*?\swidth="([\d.]+)(px|pt)?"[^>]*?\sheight="([\d.]+)(px|pt)?"', re.S
)
_MATHML_TAGS = frozenset(
    [
        "math",
        "mi",
        "mn",
        "mo",
        "ms",
        "mtext",
        "mrow",
        "msup",
        "msub",
        "msubsup",
        "mfrac",
        "msqrt",
        "mroot",
        "mover",
        "munder",
        "munderover",
        "mtable",
        "mtr",
        "mtd",
        "mspace",
        "mstyle",
        "mpadded",
        "mphantom",
        "menclose",
        "semantics",
        "annotation",
        "mfenced",
        "merror",
    ]
)
_MATHML_ATTRIBUTES = frozenset(
    [
        "display",
        "xmlns",
        "mathvariant",
        "stretchy",
        "fence",
        "separator",
        "lspace",
        "rspace",
        "columnalign",
        "rowalign",
        "columnspacing",
        "rowspacing",
        "columnlines",
        "rowlines",
        "frame",
        "width",
        "height",
        "depth",
        "accent",
        "accentunder",
        "linethickness",
        "displaystyle",
        "scriptlevel",
        "minsize",
        "maxsize",
        "movablelimits",
        "notation",
        "encoding",
        "form",
        "symmetric",
        "largeop",
        "open",
        "close",
        "separators",
    ]
)
SCRIPTS_REMOVED = (
    ": this site shows the HTML of snippet output sanitised. Set trust_html_output = true "
    "in the site's configuration to keep them."
)
UNTRUSTED_NOTE = (
    "This {library} output is interactive, but this site shows the HTML of snippet output "
    "sanitised, without scripts{fallback}. Set trust_html_output = true in the site's "
    "configuration to show it."
)


@dataclass(frozen=True, slots=True)
class Figure:
    """An image file produced by a snippet, written next to the post's page."""

    name: str  # file name inside the post's folder
    data: bytes


@dataclass(slots=True)
class OutputPage:
    """What the outputs of one page gathered: its image files and the scripts it loads."""

    trust_html: bool
    figures: list[Figure] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    images_per_snippet: dict[int, int] = field(default_factory=dict)


def display_html(
    snippet: Snippet, output: DisplayOutput, page: OutputPage, limit: int = 0
) -> tuple[str, str]:
    """The HTML for one rich output, and a notice to show with it ("" for none); text
    longer than ``limit`` lines (0: never) is folded."""
    library = _interactive_library(output)
    if page.trust_html:
        plotly = output.get("application/vnd.plotly.v1+json")
        if isinstance(plotly, str):
            page.scripts.append("plotly")
            return _plotly_html(snippet, plotly, len(page.scripts)), ""
        html = output.get("text/html")
        if isinstance(html, str):
            return f'<div class="{_html_class(output)}">{html}</div>', ""
        script = output.get("application/javascript")
        if isinstance(script, str):
            return f"<script>{script}</script>", ""
    elif library is not None:
        image = _first(output, _IMAGES)
        if image is not None:
            fallback = " (here: a static image of it)"
            return _image_html(snippet, output, image, page), _untrusted(library, fallback)
        return "", _untrusted(library, "")
    html = output.get("text/html")
    if not page.trust_html and isinstance(html, str) and _SCRIPT.search(html):
        notice = "Scripts were removed from this HTML output" + SCRIPTS_REMOVED
        return _static_html(snippet, output, page, limit), notice
    return _static_html(snippet, output, page, limit), ""


def _untrusted(library: str, fallback: str) -> str:
    return UNTRUSTED_NOTE.format(library=library, fallback=fallback)


def _interactive_library(output: DisplayOutput) -> str | None:
    for mime in output.mimes:
        if mime in _INTERACTIVE:
            return _INTERACTIVE[mime]
        if _VEGA.match(mime):
            return "Vega-Lite (altair)"
    html = output.get("text/html")
    if isinstance(html, str) and _SCRIPT.search(html):
        for hint, library in (
            ("vega", "Vega-Lite (altair)"),
            ("Bokeh", "bokeh"),
            ("Plotly", "plotly"),
        ):
            if hint in html:
                return library
    return None


def _html_class(output: DisplayOutput) -> str:
    return "result-html" if output.result else "output-html"


def _first(output: DisplayOutput, mimes: tuple[str, ...]) -> str | None:
    for mime in mimes:
        if output.get(mime) is not None:
            return mime
    return None


def _static_html(snippet: Snippet, output: DisplayOutput, page: OutputPage, limit: int) -> str:
    mime = _first(
        output,
        ("text/html", "text/markdown", *_IMAGES, "text/latex", "application/json", "text/plain"),
    )
    value = output.get(mime) if mime else None
    if mime is None or value is None:
        return ""
    if mime in _IMAGES:
        return _image_html(snippet, output, mime, page)
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if mime == "text/html":
        return f'<div class="{_html_class(output)}">{nh3.clean(text)}</div>'
    if mime == "text/markdown":
        return f'<div class="output-markdown">{_markdown(text)}</div>'
    if mime == "text/latex":
        return _latex(text, output)
    if mime == "application/json":
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        return f'<pre class="output-json">{escape(pretty, quote=False)}</pre>'
    if output.result:
        return folded_pre("result", text, limit, '<span class="prompt">Out:</span> ')
    return folded_pre("output-text", text, limit)


def _plain(text: str) -> str:
    return escape(strip_ansi(text), quote=False)


def strip_ansi(text: str) -> str:
    """Remove terminal colour and cursor escape sequences."""
    return _ANSI.sub("", text)


def folded_pre(kind: str, text: str, limit: int, prompt: str = "") -> str:
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


def _image_html(snippet: Snippet, output: DisplayOutput, mime: str, page: OutputPage) -> str:
    value = output.get(mime)
    data = value if isinstance(value, bytes) else str(value).encode()
    number = page.images_per_snippet.get(snippet.index, 0) + 1
    page.images_per_snippet[snippet.index] = number
    digest = hashlib.sha256(data).hexdigest()[:10]
    name = f"snippet-{snippet.index + 1}-{number}-{digest}.{IMAGE_EXTENSIONS.get(mime, 'bin')}"
    page.figures.append(Figure(name, data))
    meta = output.meta
    options = snippet.options
    alt = (
        _nth(options.fig_alt, number)
        or (meta.get("alt") if isinstance(meta.get("alt"), str) else "")
        or f"Figure {number} produced by snippet {snippet.index + 1}"
    )
    attributes = f'class="figure" src="{name}" alt="{escape(alt)}"'
    size = _css_size(mime, data, meta.get(mime))
    if size is not None:
        attributes += f' width="{size[0]}" height="{size[1]}"'
    image = f'<img {attributes} loading="lazy" decoding="async">'
    caption = _nth(options.fig_cap, number)
    if caption:
        return (
            f'<figure class="output-figure">{image}'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return image


def _nth(option: str | list[str] | tuple[str, ...] | None, number: int) -> str:
    """A figure option for the ``number``-th image: a text applies to the first image, a
    list gives one per image."""
    if isinstance(option, str):
        return option if number == 1 else ""
    if isinstance(option, list | tuple) and number <= len(option):
        return str(option[number - 1])
    return ""


def _css_size(mime: str, data: bytes, meta: object) -> tuple[int, int] | None:
    """An image's CSS size: from its metadata (2x images: half their pixels), else its
    header (images from older records, shown at their pixel size)."""
    if isinstance(meta, dict):
        width, height = meta.get("width"), meta.get("height")
        if isinstance(width, int | float) and isinstance(height, int | float):
            return round(width), round(height)
    if mime == "image/svg+xml":
        found = _SVG_SIZE.search(data[:4000].decode("utf-8", "replace"))
        if found:
            scale = 4 / 3 if found.group(2) == "pt" else 1
            return round(float(found.group(1)) * scale), round(float(found.group(3)) * scale)
        return None
    return image_size(data)


def _markdown(text: str) -> str:
    from raypress.publish.markdown import create_markdown

    return nh3.clean(create_markdown(False).render(text))


def _latex(text: str, output: DisplayOutput) -> str:
    """LaTeX as MathML (latex2mathml); what it cannot convert stays LaTeX source."""
    from latex2mathml.converter import convert

    source = text.strip()
    display = "block"
    for opening, closing, kind in (
        ("$$", "$$", "block"),
        ("\\[", "\\]", "block"),
        ("$", "$", "inline"),
    ):
        if (
            source.startswith(opening)
            and source.endswith(closing)
            and len(source) > 2 * len(opening)
        ):
            source, display = source[len(opening) : -len(closing)].strip(), kind
            break
    try:
        mathml = convert(source, display=display)
    except Exception:  # the converter's own errors are of many types
        return f'<pre class="output-latex">{escape(text, quote=False)}</pre>'
    clean = nh3.clean(
        mathml,
        tags=set(_MATHML_TAGS),
        attributes={tag: set(_MATHML_ATTRIBUTES) for tag in _MATHML_TAGS},
        url_schemes=set(),
    )
    return f'<div class="output-latex">{clean}</div>'


def _plotly_html(snippet: Snippet, spec: str, number: int) -> str:
    """A plotly figure drawn by /assets/plotly-figures.js from its JSON (trusted sites)."""
    data = spec.replace("<", "\\u003c")  # "<" occurs only in JSON strings: nothing closes
    return (
        f'<div class="plotly-figure" id="plotly-{snippet.index + 1}-{number}"></div>'
        f'<script type="application/json" class="plotly-data">{data}</script>'
    )
