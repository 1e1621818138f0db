"""The Jupyter display protocol, end to end: real sessions, real plotly, altair, pandas,
IPython and matplotlib, checked on the built pages and the records in snippets/."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from raypress.commands.build import build
from raypress.commands.check import output_text
from raypress.config import load_config
from raypress.execution.capture import SegmentedStream, clean_text
from raypress.execution.model import DisplayOutput, SnippetResult, StreamOutput
from raypress.execution.rich_output import image_size
from raypress.execution.safe_svg import sanitize_svg
from raypress.freeze.records import read_record, record_files

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
POST = "posts/2025-01-02-rich.md"
PAGE = "2025/01/02/rich/index.html"
PIXEL = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
FENCES = {
    "interleaved": 'print("a")\ndisplay("hello")\nprint("b")\n41 + 1',
    "figure": (
        "#| fig-cap: A rising line\n#| fig-alt: A line going up\n"
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n"
        "ax.plot([1, 2, 3])\nax.set_title('Up')\nfig"
    ),
    "show": ("plt.plot([3, 2, 1])\nplt.title('Down')\nprint('before')\nplt.show()\nprint('after')"),
    "svg": "#| fig-format: svg\nplt.plot([1, 3, 2])\nplt.title('Vector')",
    "webp": "#| fig-format: webp\nplt.plot([2, 2, 1])",
    "reprs": (
        "class Rich:\n"
        "    def _repr_svg_(self):\n"
        '        return (\'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10" \'\n'
        "                'onload=\"alert(1)\"><script>alert(2)</script>'\n"
        '                \'<rect width="20" height="10"/></svg>\')\n'
        "class Doc:\n"
        "    def _repr_markdown_(self):\n"
        "        return '**bold** <script>alert(3)</script>'\n"
        "class Formula:\n"
        "    def _repr_latex_(self):\n"
        "        return r'$\\frac{a}{b}$'\n"
        "class Pixel:\n"
        "    def _repr_png_(self):\n"
        "        import base64\n"
        f"        return base64.b64decode('{PIXEL}')\n"
        "display(Rich(), Doc(), Formula(), Pixel())"
    ),
    "ipython": (
        "from IPython.display import HTML, JSON, Latex, Markdown\n"
        "display(HTML('<b>x</b><img src=x onerror=alert(1)>'), Markdown('*m*'))\n"
        "display(Latex(r'$$x^2$$'))\n"
        "JSON({'a': 1})"
    ),
    "dataframe": "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [0.5, 1.5]})",
    "plotly": (
        "import plotly.express as px\n"
        "figure = px.scatter(x=[1, 2, 3], y=[3, 1, 2], title='Scatter')\nfigure.show()"
    ),
    "plotly2": "px.bar(x=['a', 'b'], y=[1, 2])",
    "altair": (
        "import altair as alt\n"
        "alt.Chart(pd.DataFrame({'a': [1, 2], 'b': [3, 4]})).mark_point().encode(x='a', y='b')"
    ),
    "tqdm": "from tqdm import tqdm\nfor _ in tqdm(range(3000), mininterval=0):\n    pass",
    "semicolon": "x = 5\nx;",
}


def _post() -> str:
    body = "".join(
        f"Snippet {name}.\n\n```python\n{code}\n```\n\n" for name, code in FENCES.items()
    )
    return f"---\ntitle: Rich\n---\n\n{body}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose one post uses every kind of rich output, built once (executed)."""
    root = tmp_path_factory.mktemp("rich")
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "posts").mkdir()
    (root / POST).write_text(_post(), encoding="utf-8")
    (root / "site.toml").write_text('title = "t"\nurl = "https://example.org"\n')
    report = build(load_config(root))
    assert report.ok, (report.problems, report.execution_problems)
    return root


def _snippet_html(page: str, number: int) -> str:
    """The outputs of snippet ``number`` (its source left out)."""
    start = page.index(f'id="snippet-{number}"')
    end = page.index('<figcaption class="snippet-meta">', start)
    output = page.find('<div class="snippet-output">', start, end)
    return "" if output < 0 else page[output:end]


def _number(name: str) -> int:
    return list(FENCES).index(name) + 1


def _outputs(site: Path, name: str) -> str:
    return _snippet_html((site / "_site" / PAGE).read_text(), _number(name))


def test_display_and_prints_are_interleaved_as_in_a_notebook(site: Path) -> None:
    html = _outputs(site, "interleaved")
    order = [html.index(s) for s in ("a\n</pre>", "'hello'", "b\n</pre>", "Out:</span> 42")]
    assert order == sorted(order), html
    record = json.loads((site / "snippets" / "2025-01-02-rich.json").read_text())
    outputs = record["snippets"][0]["outputs"]
    assert [o["type"] for o in outputs] == ["stream", "display", "stream", "result"]
    assert outputs[1]["data"] == {"text/plain": ["'hello'"]}


def test_a_figure_as_last_expression_is_one_2x_image_with_caption_alt_and_size(
    site: Path,
) -> None:
    html = _outputs(site, "figure")
    assert html.count("<img") == 1 and "Out:" not in html and "Figure(" not in html
    match = re.search(
        r'<figure class="output-figure"><img class="figure" src="([^"]+\.png)" '
        r'alt="A line going up" width="(\d+)" height="(\d+)" loading="lazy" decoding="async">'
        r"<figcaption>A rising line</figcaption></figure>",
        html,
    )
    assert match, html
    png = (site / "_site" / "2025/01/02/rich" / match.group(1)).read_bytes()
    width, height = image_size(png)  # type: ignore[misc]
    assert (width, height) == (2 * int(match.group(2)), 2 * int(match.group(3)))


def test_plt_show_puts_the_figure_where_it_is_called(site: Path) -> None:
    html = _outputs(site, "show")
    assert html.index("before") < html.index("<img") < html.index("after")
    assert 'alt="Down"' in html


def test_svg_figures_are_vector_and_sanitised_and_webp_is_lossless_2x(site: Path) -> None:
    folder = site / "_site" / "2025/01/02/rich"
    svg_name = re.search(r'src="([^"]+\.svg)"', _outputs(site, "svg")).group(1)  # type: ignore[union-attr]
    svg = (folder / svg_name).read_text()
    assert svg.startswith("<svg") and "<path" in svg and "<script" not in svg
    webp_html = _outputs(site, "webp")
    webp_name = re.search(r'src="([^"]+\.webp)" alt="[^"]*" width="(\d+)"', webp_html)
    assert webp_name, webp_html
    data = (folder / webp_name.group(1)).read_bytes()
    assert data[12:16] == b"VP8L"  # lossless
    assert image_size(data)[0] == 2 * int(webp_name.group(2))  # type: ignore[index]


def test_repr_methods_are_honoured_and_sanitised(site: Path) -> None:
    html = _outputs(site, "reprs")
    assert "object at 0x" not in html
    svg_name = re.search(r'src="([^"]+\.svg)"[^>]*width="20" height="10"', html)
    assert svg_name, html
    svg = (site / "_site" / "2025/01/02/rich" / svg_name.group(1)).read_text()
    assert "<rect" in svg and "script" not in svg and "onload" not in svg
    assert '<div class="output-markdown"><p><strong>bold</strong>' in html
    assert "<script" not in html  # escaped: Markdown output is rendered without raw HTML
    assert "<mfrac><mrow><mi>a</mi></mrow><mrow><mi>b</mi></mrow></mfrac>" in html
    assert re.search(r'src="[^"]+\.png"[^>]*width="1" height="1"', html)


def test_ipython_display_objects(site: Path) -> None:
    html = _outputs(site, "ipython")
    assert '<div class="output-html"><b>x</b><img src="x"></div>' in html
    assert '<div class="output-markdown"><p><em>m</em></p>' in html
    assert "<msup><mi>x</mi><mn>2</mn></msup>" in html
    assert '<pre class="output-json">{\n  "a": 1\n}</pre>' in html
    assert "onerror" not in html


def test_a_dataframe_is_a_table_without_its_inline_style(site: Path) -> None:
    html = _outputs(site, "dataframe")
    assert '<div class="result-html">' in html and "<table>" in html and "<th>b</th>" in html
    assert "<style" not in html and "Out:" not in html
    css = (site / "_site" / "assets" / "style.css").read_text()
    assert ":is(.result-html, .output-html) tbody tr:nth-child(even)" in css


def test_interactive_output_is_static_with_a_reason_unless_the_site_trusts_it(
    site: Path,
) -> None:
    page = (site / "_site" / PAGE).read_text()
    plotly = _snippet_html(page, _number("plotly"))
    assert "This plotly output is interactive" in plotly and "trust_html_output = true" in plotly
    outputs = "".join(re.findall(r'<div class="snippet-output">.*?</figure>', page, re.S))
    assert "<script" not in outputs and not (site / "_site" / "assets" / "vendor").exists()
    assert not re.findall(r'<script src="[^"]*plotly', page)  # the theme's own scripts only
    altair = _snippet_html(page, _number("altair"))  # vl-convert's static SVG, then the reason
    assert re.search(r'<img class="figure" src="[^"]+\.svg"', altair), altair
    assert "(here: a static image of it)" in altair

    (site / "site.toml").write_text(
        'title = "t"\nurl = "https://example.org"\ntrust_html_output = true\n'
    )
    try:
        report = build(load_config(site))
        assert report.ok and report.executed == 0  # the record keeps the raw output
        trusted = (site / "_site" / PAGE).read_text()
    finally:
        (site / "site.toml").write_text('title = "t"\nurl = "https://example.org"\n')
        build(load_config(site))
    assert trusted.count('class="plotly-figure"') == 2
    scripts = [s for s in re.findall(r'<script src="([^"]+)"', trusted) if "plotly" in s]
    assert scripts == [
        f"/assets/vendor/plotly-{_plotly_version()}.min.js",
        "/assets/plotly-figures.js",
    ]
    data = re.search(r'<script type="application/json" class="plotly-data">(.*?)</script>', trusted)
    assert data and json.loads(data.group(1))["layout"]["title"]["text"] == "Scatter"
    altair = _snippet_html(trusted, _number("altair"))
    assert "vegaEmbed" in altair or "vega-embed" in altair  # altair's own HTML, raw
    assert "<b>x</b><img src=x onerror=alert(1)>" in _snippet_html(trusted, _number("ipython"))


def _plotly_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("plotly")


def test_tqdm_shows_its_final_state(site: Path) -> None:
    html = _outputs(site, "tqdm")
    assert re.search(r'<pre class="stderr">100%\|[^\n]*\| 3000/3000 \[', html), html
    assert "cut" not in html and html.count("3000/3000") == 1


def test_a_trailing_semicolon_hides_the_value(site: Path) -> None:
    assert "Out:" not in _outputs(site, "semicolon")


def test_records_round_trip_and_check_compares_outputs_in_order(site: Path) -> None:
    config = load_config(site)
    record = read_record(record_files(config, POST), POST)
    assert record is not None
    first = record.execution.snippets[0]
    assert first.stdout == "a\nb\n" and first.value == "42"
    text = output_text(first)
    assert (
        text.index("[stdout]\na") < text.index("[display 1]\n'hello'") < text.index("[value]\n42")
    )
    swapped = SnippetResult(0, "ok", (first.outputs[1], first.outputs[0], *first.outputs[2:]))
    assert output_text(swapped) != text  # the order is part of what is compared


def test_format_1_records_still_load(tmp_path: Path) -> None:
    """A record written before outputs were ordered (stdout, value, images fields)."""
    from raypress.freeze.records import parse_record

    images = tmp_path / "x.images"
    images.mkdir()
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000002000000030806000000")
    import hashlib

    digest = hashlib.sha256(png).hexdigest()
    (images / f"{digest}.png").write_bytes(png)
    snippet = {
        "index": 0,
        "line": 3,
        "code_line": 4,
        "code_lines": 1,
        "source_sha256": "0" * 64,
        "status": "ok",
        "stdout": ["hi\n"],
        "stderr": [],
        "value": ["1"],
        "value_html": None,
        "images": [{"sha256": digest, "file": f"{digest}.png", "mime": "image/png", "alt": "T"}],
        "error": None,
        "wall_s": 0.1,
        "cpu_s": 0.1,
        "repeat": None,
        "truncated": False,
        "notes": [],
    }
    from raypress.freeze.inputs import Inputs

    inputs = Inputs(snippets=("s",), inline="i", post="p")
    data = {
        "format": 1,
        "post": "posts/x.md",
        "inputs": {
            "digest": inputs.digest,
            "snippets": ["s"],
            "inline": "i",
            "post": "p",
            "files": {},
        },
        "environment": {
            "python": "3",
            "platform": "p",
            "cpu": "c",
            "cpu_count": 1,
            "packages": {},
            "installed": {},
            "ray_version": None,
            "ray_cluster_cpus": None,
        },
        "run": {"status": "ok", "started_at": "2025-01-01T00:00:00+00:00", "wall_s": 1},
        "snippets": [snippet],
        "inline": [],
    }
    result = parse_record(data, "posts/x.md", images).execution.snippets[0]
    assert [type(o) for o in result.outputs] == [StreamOutput, DisplayOutput, DisplayOutput]
    assert result.stdout == "hi\n" and result.value == "1"
    (image,) = result.images
    assert image.alt == "T" and image.data == png


def test_carriage_returns_are_resolved_as_a_terminal_would_while_reading() -> None:
    stream = SegmentedStream("\x1eMARK", cap=1000)
    for i in range(5001):
        stream.feed(f"\r{i:5d}/5000 |{'#' * (i // 500)}".encode())
    stream.feed(b"\nabcdef\rXY")
    stream.feed(b"Z\r1\n")
    stream.finish()
    segment = stream.current
    assert not segment.dropped and segment.total > 50_000
    assert clean_text(bytes(segment.kept)) == " 5000/5000 |##########\n1YZdef\n"


def test_sanitize_svg_keeps_drawing_and_removes_active_content() -> None:
    dirty = (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        b'viewBox="0 0 10 10" onload="alert(1)"><script>alert(2)</script>'
        b'<a xlink:href="javascript:alert(3)"><rect width="5" height="5"/></a>'
        b'<rect clip-path="url(#c)" style="fill:url(https://tracker.example/x)"/>'
        b"<foreignObject><p>html</p></foreignObject>"
        b"<style>@import url(https://x.example/a.css); rect{fill:red}</style>"
        b'<use href="#c"/><image href="https://x.example/i.png"/></svg>'
    )
    cleaned = sanitize_svg(dirty)
    assert cleaned is not None
    clean = cleaned.decode()
    assert 'viewBox="0 0 10 10"' in clean and '<rect width="5" height="5"' in clean
    assert 'clip-path="url(#c)"' in clean and 'href="#c"' in clean
    for bad in (
        "alert",
        "javascript",
        "script",
        "tracker",
        "foreignObject",
        "@import",
        "x.example",
    ):
        assert bad not in clean, (bad, clean)
    assert sanitize_svg(b"<svg><unclosed") is None  # refused, never passed through
    assert sanitize_svg(b"<html/>") is None
