"""Writing and reading features, asserted on the built HTML: math as MathML, Mermaid
diagrams, the copy button, folded code and outputs, timing badges, scrolling tables, page
bundles, social and search-engine metadata (JSON-LD validated against schema.org), icons,
robots.txt, search, related posts and feeds per tag.

Every test builds a real site with the real command line (conftest_publishing.Project);
tests that need outputs run the snippets for real.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest_publishing import REPO, SITE_URL, Project, parse_page, post_text, run_command
from schema_org import validate

from raypress.theme import THEME_PATH

ATOM = "{http://www.w3.org/2005/Atom}"


def fence(code: str, *options: str, language: str = "python") -> str:
    head = "".join(f"#| {option}\n" for option in options)
    return f"```{language}\n{head}{code.strip(chr(10))}\n```\n"


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def script_sources(html: str) -> list[str]:
    return re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html)


def meta(html: str, key: str) -> list[str]:
    """The content of every <meta property|name=key>."""
    pattern = rf'<meta (?:property|name)="{re.escape(key)}" content="([^"]*)">'
    return re.findall(pattern, html)


def json_ld(html: str) -> dict:
    (block,) = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    return json.loads(block)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# -- math --------------------------------------------------------------------------------------

MATH_BODY = """\
Einstein wrote $E = mc^2$ in 1905, and it costs $5 and $10 to print.

$$
\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}
$$

A labelled one:

$$\\int_0^1 x\\,dx = \\tfrac{1}{2}$$ (half)
"""


def test_math_is_rendered_to_mathml_at_build_time(project: Project) -> None:
    project.post("2025-01-01-math.md", post_text(MATH_BODY, title="Math"))
    project.build_ok()
    html = project.page("2025/01/01/math/")
    inline = re.search(r'<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">', html)
    assert inline, html
    assert "<msup><mi>c</mi><mn>2</mn></msup>" in html  # E = mc^2
    blocks = re.findall(r'<div class="math-display"[^>]*><math [^>]*display="block">', html)
    assert len(blocks) == 2, html
    assert "<mfrac>" in html and "&#x02211;" in html  # the fraction and the sum sign
    assert 'id="half"' in html and 'href="#half"' in html  # a labelled equation has an anchor
    assert "costs $5 and $10 to print" in parse_page(html).text  # dollars, not math
    assert "$E" not in html and "\\frac" not in html
    assert script_sources(html) == []  # no script for math (and no code on the page)


def test_a_formula_that_cannot_be_rendered_names_its_line(project: Project) -> None:
    body = "Fine: $a+b$.\n\nBroken: $\\frac{a}{b$ here.\n\n$$\n\\foo{x}\n$$\n\n$$\\left( x$$\n"
    body += "\n$$\n\\begin{weird} x \\end{weird}\n$$\n"
    text = post_text(body, title="Bad math")
    project.post("2025-01-01-bad.md", text)
    result = project.build()
    assert result.code == 1, str(result)
    lines = result.problem_lines
    where = "posts/2025-01-01-bad.md"
    assert any(
        line.startswith(f"{where}:{line_of(text, 'Broken')}: error: cannot render the formula")
        and "unclosed" in line
        for line in lines
    ), lines
    assert any(f"{where}:{line_of(text, '$$' + chr(10) + chr(92) + 'foo')}" in ln for ln in lines)
    assert any("unknown command \\foo" in line for line in lines), lines
    assert any("extra left or missing right" in line for line in lines), lines
    assert any("environment {weird} is not supported" in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)
    assert not (project.site / "2025").exists()  # nothing was written


def test_math_in_an_excerpt_is_mathml_on_the_index(project: Project) -> None:
    project.post("2025-01-01-m.md", post_text("Area $\\pi r^2$ of a disc.\n", title="M"))
    project.build_ok()
    assert "<mi>&#x003C0;</mi>" in project.page("")  # π on the index, not "$\pi r^2$"


# -- diagrams ----------------------------------------------------------------------------------

DIAGRAM = "graph LR\n  A[Write] --> B{Run?}\n  B -->|yes| C[Publish]\n"


def test_mermaid_fence_loads_the_diagram_script_only_on_its_page(project: Project) -> None:
    project.post("2025-01-01-d.md", post_text(fence(DIAGRAM, language="mermaid"), title="D"))
    project.post("2025-01-02-plain.md", post_text("Just prose.\n", title="Plain"))
    project.build_ok()
    html = project.page("2025/01/01/d/")
    assert '<div class="diagram"><pre class="mermaid">graph LR' in html
    assert "A[Write] --&gt; B{Run?}" in html  # the source is readable text without JS
    assert script_sources(html) == ["/assets/diagrams.js"]
    assert '<script type="module" src="/assets/diagrams.js" data-swap-safe>' in html
    assert script_sources(project.page("2025/01/02/plain/")) == []
    assert script_sources(project.page("")) == []
    files = project.files()
    assert "assets/diagrams.js" in files and "assets/mermaid/mermaid.esm.min.mjs" in files
    chunks = [f for f in files if f.startswith("assets/mermaid/chunks/")]
    assert any("flowDiagram" in f for f in chunks)
    # the script imports the vendored module by a relative path, which resolves here
    script = (project.site / "assets/diagrams.js").read_text()
    assert 'import("./mermaid/mermaid.esm.min.mjs")' in script
    assert "prefers-color-scheme: dark" in script  # the diagrams follow dark mode


def test_mermaid_is_not_published_by_a_site_without_diagrams(project: Project) -> None:
    project.post("2025-01-02-plain.md", post_text("Just prose.\n", title="Plain"))
    project.build_ok()
    assert not any(f.startswith("assets/mermaid/") for f in project.files())


def test_vendored_mermaid_says_its_version_and_licence() -> None:
    folder = THEME_PATH / "assets" / "mermaid"
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", (folder / "VERSION").read_text())
    assert "MIT License" in (folder / "LICENSE").read_text()
    module = (folder / "mermaid.esm.min.mjs").read_text()
    for chunk in re.findall(r'"\./(chunks/mermaid\.esm\.min/[^"]+\.mjs)"', module):
        assert (folder / chunk).is_file(), chunk  # every chunk the module imports is there
    assert "sourceMappingURL" not in module  # no map files to 404 on


# -- copy button and folded code --------------------------------------------------------------


def test_copy_button_script_only_on_pages_with_code(project: Project) -> None:
    project.post("2025-01-01-code.md", post_text(fence("echo hi", language="bash"), title="C"))
    project.post("2025-01-02-hidden.md", post_text(fence("x = 1", "echo: false"), title="H"))
    project.post("2025-01-03-prose.md", post_text("Words.\n", title="P"))
    project.build_ok()
    assert script_sources(project.page("2025/01/01/code/")) == ["/assets/copy-code.js"]
    tag = '<script src="/assets/copy-code.js" defer data-swap-safe>'  # serve: see live_reload
    assert tag in project.page("2025/01/01/code/")
    assert script_sources(project.page("2025/01/02/hidden/")) == []  # no code shown
    assert script_sources(project.page("2025/01/03/prose/")) == []
    script = (project.site / "assets/copy-code.js").read_text()
    assert "navigator.clipboard" in script and 'role", "status"' in script


def test_code_fold_true_and_show_as_quarto_has_them(project: Project) -> None:
    body = (
        fence("folded = 1", "code-fold: true")
        + "\n"
        + fence("shown = 2", "code-fold: show", 'code-summary: "The setup"')
        + "\n"
        + fence("plain = 3", "code-fold: false")
    )
    project.post("2025-01-01-fold.md", post_text(body, title="Fold"))
    project.build_ok()
    html = project.page("2025/01/01/fold/")
    closed = re.search(
        r'<details class="code-fold"><summary>Code</summary>\s*<div class="highlight"', html
    )
    assert closed and "folded" in html[closed.end() : closed.end() + 300], html
    opened = re.search(r'<details class="code-fold" open><summary>The setup</summary>', html)
    assert opened, html
    assert html.count("<details") == 2  # plain = 3 is not folded
    assert "#|" not in html


def test_code_fold_in_front_matter_is_the_posts_default(project: Project) -> None:
    body = fence("folded = 1") + "\n" + fence("open = 2", "code-fold: false")
    project.post("2025-01-01-f.md", post_text(body, title="F", **{"code-fold": "true"}))
    text = post_text(fence("x = 1"), title="Bad", **{"code-fold": "sometimes"})
    project.build_ok()
    html = project.page("2025/01/01/f/")
    assert html.count('<details class="code-fold">') == 1  # the snippet saying false wins
    project.post("2025-01-02-bad.md", text)
    result = project.build()
    assert result.problem_lines == [
        f"posts/2025-01-02-bad.md:{line_of(text, 'code-fold')}: error: 'code-fold' must be "
        "true, false or show, not 'sometimes' (true: the code is folded away; show: folded, "
        "but open)"
    ]


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("code-fold: maybe", "must be true, false or show"),
        ("output-lines: -3", "must be a number of lines or false"),
        ("output-lines: true", "must be a number of lines or false"),
        ("code-summary: [1]", "must be str"),
    ],
)
def test_bad_display_options_name_their_line(project: Project, option: str, words: str) -> None:
    text = post_text(fence("x = 1", option), title="Bad")
    project.post("2025-01-01-bad.md", text)
    result = project.build()
    assert result.code == 1
    (line,) = result.problem_lines
    assert line.startswith(f"posts/2025-01-01-bad.md:{line_of(text, '#| ')}: error: ")
    assert words in line


# -- outputs and timing badges (snippets really run) ------------------------------------------


def test_long_outputs_fold_after_30_lines_with_show_all(project: Project) -> None:
    body = (
        fence("for i in range(100):\n    print('line', i)", "label: long")
        + "\n"
        + fence("print('\\n'.join(str(i) for i in range(12)))", "output-lines: 5")
        + "\n"
        + fence("for i in range(40):\n    print(i)", "output-lines: false")
        + "\n"
        + fence("list(range(30))")
    )
    project.post("2025-01-01-long.md", post_text(body, title="Long"))
    result = project.build(execute=True)
    assert result.code == 0, str(result)
    html = project.page("2025/01/01/long/")
    folds = re.findall(
        r'<div class="output-fold"><pre class="stdout">(.*?)</pre>'
        r'<details class="output-more"><summary>(.*?)</summary>'
        r'<pre class="stdout output-rest">(.*?)</pre></details></div>',
        html,
        re.S,
    )
    assert len(folds) == 2, html  # the 100 lines and the 12 lines; not 40 lines with false
    (head, summary, rest), (head5, summary5, rest5) = folds
    assert head.splitlines() == [f"line {i}" for i in range(30)]
    assert rest.splitlines() == [f"line {i}" for i in range(30, 100)]
    assert "Show all 100 lines (70 more)" in summary and "Hide the last 70 lines" in summary
    assert head5.splitlines() == ["0", "1", "2", "3", "4"] and len(rest5.splitlines()) == 7
    assert "Show all 12 lines" in summary5
    assert '<pre class="stdout">' + "\n".join(map(str, range(40))) in html  # never folded
    # a value of exactly 30 lines (notebook-style wrapping of a 30-item list) is not folded
    value = re.search(
        r'<pre class="result"><span class="prompt">Out:</span> (\[0,.*?)</pre>', html, re.S
    )
    assert value and len(value.group(1).splitlines()) == 30, html


def test_output_lines_from_the_configuration(project: Project) -> None:
    project.configure(url=SITE_URL, output_lines=3)
    project.post("2025-01-01-c.md", post_text(fence("print('a\\nb\\nc\\nd')"), title="C"))
    assert project.build(execute=True).code == 0
    assert "Show all 4 lines (1 more)" in project.page("2025/01/01/c/")


def test_timing_badge_shows_wall_and_cpu_time(project: Project) -> None:
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.05:\n    pass"
    project.post("2025-01-01-t.md", post_text(fence(code), title="T"))
    assert project.build(execute=True).code == 0
    html = project.page("2025/01/01/t/")
    caption = re.search(r'<figcaption class="snippet-meta">(.*?)</figcaption>', html, re.S)
    assert caption, html
    text = parse_page(caption.group(1)).text
    match = re.fullmatch(r"(\d+(?:\.\d+)?) ms wall CPU (\d+(?:\.\d+)?) ms snippet 1", text)
    assert match, text  # both visible as text, not only in a tooltip
    wall, cpu = float(match.group(1)), float(match.group(2))
    assert wall >= 50 and cpu >= 45, text  # it burned 50 ms of CPU


# -- tables ---------------------------------------------------------------------------------


def test_tables_scroll_in_a_labelled_focusable_box(project: Project) -> None:
    table = "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    project.post("2025-01-01-t.md", post_text(table, title="T"))
    project.build_ok()
    html = project.page("2025/01/01/t/")
    assert re.search(
        r'<div class="table-scroll" tabindex="0" role="region" aria-label="Table">\s*<table>',
        html,
    )
    assert re.search(r"</table>\s*</div>", html)


def test_timings_table_scrolls_with_a_hint_and_keeps_numbers_whole(project: Project) -> None:
    project.post("2025-01-01-a.md", post_text(fence("x = 1"), title="A"))
    assert project.build(execute=True).code == 0
    html = project.page("timings/")
    assert re.search(
        r'<div class="table-scroll" tabindex="0" role="region"[^>]*>\s*<table class="timings">',
        html,
    )
    assert "The table scrolls sideways: 6 columns." in html
    css = (THEME_PATH / "assets" / "style.css").read_text()
    assert re.search(r"table\.timings td:is\([^)]*\)[^{]*\{\s*white-space: nowrap;", css)
    assert re.search(r"\.table-scroll \{[^}]*background:[^}]*local", css)  # the scroll shadows


# -- page bundles and files beside posts ------------------------------------------------------

PNG = (REPO / "raypress/theme/assets/favicon-32.png").read_bytes()


def bundle(project: Project) -> str:
    text = post_text(
        "Intro with a ![small plot](plot.png) inline.\n\n"
        "The [raw data](data.csv), and an image in a folder:\n\n"
        "![chart](img/chart.png)\n\n" + fence("print(open('data.csv').read().strip())"),
        title="Bundle",
    )
    project.post("2025-11-01-bundle/index.md", text)
    project.post("2025-11-01-bundle/plot.png", PNG)
    project.post("2025-11-01-bundle/img/chart.png", PNG)
    project.post("2025-11-01-bundle/data.csv", "x,y\n1,2\n")
    project.post("2025-11-01-bundle/notes.md", "# Notes\n\nNot a post of its own.\n")
    return text


def test_page_bundle_publishes_its_files_beside_its_page(project: Project) -> None:
    bundle(project)
    project.build_ok()
    files = project.files()
    assert "2025/11/01/bundle/index.html" in files  # date and slug from the folder
    for name in ("plot.png", "img/chart.png", "data.csv"):
        assert f"2025/11/01/bundle/{name}" in files, name
        assert (project.site / "2025/11/01/bundle" / name).read_bytes() == (
            project.root / "posts/2025-11-01-bundle" / name
        ).read_bytes()
    assert not any("notes" in f for f in files)  # the bundle's other Markdown is no post
    html = project.page("2025/11/01/bundle/")
    assert '<img src="plot.png" alt="small plot" />' in html
    # on the index the excerpt's image points at the post's folder
    assert '<img src="/2025/11/01/bundle/plot.png" alt="small plot" />' in project.page("")


def test_snippets_of_a_bundle_run_in_its_folder(project: Project) -> None:
    bundle(project)
    result = project.build(execute=True)
    assert result.code == 0, str(result)
    assert '<pre class="stdout">x,y\n1,2\n</pre>' in project.page("2025/11/01/bundle/")
    assert (project.root / "snippets/2025-11-01-bundle/index.json").is_file()


def test_relative_images_beside_a_plain_post_are_published(project: Project) -> None:
    project.post("2025-01-01-plain.md", post_text("![a plot](figs/plot.png)\n", title="Plain"))
    project.post("figs/plot.png", PNG)
    project.build_ok()
    assert "2025/01/01/plain/figs/plot.png" in project.files()


def test_a_missing_image_names_its_line_and_nothing_is_written(project: Project) -> None:
    text = post_text("Some words.\n\nThen ![gone](missing.png) here.\n", title="Gone")
    project.post("2025-11-02-gone/index.md", text)
    result = project.build()
    assert result.code == 1
    assert result.problem_lines == [
        f"posts/2025-11-02-gone/index.md:{line_of(text, 'Then')}: error: image 'missing.png' "
        "not found (looked for posts/2025-11-02-gone/missing.png) (image paths are relative "
        "to the post's file)"
    ]
    assert not project.site.exists()


def test_an_image_outside_the_post_folder_is_refused(project: Project) -> None:
    (project.root / "secret.png").write_bytes(PNG)
    text = post_text("![x](../../secret.png)\n", title="Out")
    project.post("2025-11-02-out/index.md", text)
    result = project.build()
    assert result.code == 1
    (line,) = result.problem_lines
    where = f"posts/2025-11-02-out/index.md:{line_of(text, '![x]')}"
    assert line.startswith(f"{where}: error: image '../../secret.png'")
    assert "outside the post's folder" in line


# -- social cards, JSON-LD, icons, robots.txt -------------------------------------------------


def social_project(project: Project) -> Project:
    project.configure(title="Social & <Co>", url=SITE_URL, author="Ada", twitter_site="raypress")
    project.post(
        "2025-01-01-front.md",
        post_text(
            "![first](first.png)\n",
            title='"Front & matter"',
            description='"It\'s <fine> & well"',
            image="cover.png",
            tags="[ray, numpy]",
        ),
    )
    project.post("cover.png", PNG)
    project.post("first.png", PNG)
    project.post(
        "2025-01-02-figure.md",
        post_text("Text.\n\n![An SVG first](d.svg)\n\n![The plot](p.png)\n", title="Figure"),
    )
    project.post("d.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>")
    project.post("p.png", PNG)
    project.post("2025-01-03-bare.md", post_text("Nothing to show.\n", title="Bare"))
    project.build_ok()
    return project


def test_open_graph_and_twitter_tags_with_the_image_precedence(project: Project) -> None:
    social_project(project)
    front = project.page("2025/01/01/front/")
    assert meta(front, "og:title") == ["Front &amp; matter"]
    assert meta(front, "og:description") == ["It&#39;s &lt;fine&gt; &amp; well"]
    assert meta(front, "og:type") == ["article"]
    assert meta(front, "og:url") == [f"{SITE_URL}/2025/01/01/front/"]
    assert meta(front, "og:site_name") == ["Social &amp; &lt;Co&gt;"]
    assert meta(front, "og:image") == [f"{SITE_URL}/2025/01/01/front/cover.png"]  # front matter
    assert meta(front, "twitter:card") == ["summary_large_image"]
    assert meta(front, "twitter:site") == ["@raypress"]
    assert meta(front, "article:published_time") == ["2025-01-01T00:00:00+00:00"]
    assert meta(front, "article:tag") == ["ray", "numpy"]
    assert "2025/01/01/front/cover.png" in project.files()  # a relative image: published
    figure = project.page("2025/01/02/figure/")
    # the first raster figure (social sites do not show SVG)
    assert meta(figure, "og:image") == [f"{SITE_URL}/2025/01/02/figure/p.png"]
    assert meta(figure, "og:image:alt") == ["The plot"]
    bare = project.page("2025/01/03/bare/")
    assert meta(bare, "og:image") == [f"{SITE_URL}/assets/icon-512.png"]  # the site's
    assert meta(bare, "twitter:card") == ["summary"]
    index = project.page("")
    assert meta(index, "og:type") == ["website"] and meta(index, "og:url") == [f"{SITE_URL}/"]


def test_json_ld_blog_posting_is_valid_schema_org(project: Project) -> None:
    social_project(project)
    for url in ("2025/01/01/front/", "2025/01/02/figure/", "2025/01/03/bare/"):
        document = json_ld(project.page(url))
        assert validate(document) == [], (url, document)
        assert document["@type"] == "BlogPosting"
        assert document["url"] == f"{SITE_URL}/{url}"
        assert document["author"] == {"@type": "Person", "name": "Ada"}
        assert document["datePublished"].startswith("2025-01-0")
    front = json_ld(project.page("2025/01/01/front/"))
    assert front["headline"] == "Front & matter"
    assert front["description"] == "It's <fine> & well"
    assert front["image"] == f"{SITE_URL}/2025/01/01/front/cover.png"
    assert front["keywords"] == "ray, numpy"
    assert "<fine>" not in project.page("2025/01/01/front/")  # escaped inside the script


def test_the_schema_org_validator_finds_mistakes() -> None:
    """The validator used above is a real one: it refuses what schema.org does."""
    good = {"@context": "https://schema.org", "@type": "BlogPosting", "headline": "x"}
    assert validate(good) == []
    bad = {
        "@context": "https://schema.org",
        "@type": "BlogPosting",
        "datePublised": "2025-01-01",  # a typo
        "datePublished": "yesterday",  # not a date
        "author": {"@type": "Person", "name": "Ada", "logo": "https://x.org/a.png"},
        "image": "cover.png",  # not a URL, not an ImageObject
        "publisher": {"@type": "Blog", "name": "B"},  # a Blog is no Organization
        "mainEntityOfPage": {"@type": "Webpage"},  # no such class
    }
    problems = "\n".join(validate(bad))
    assert "$.datePublised: not a schema.org property" in problems
    assert "$.datePublished: 'yesterday'" in problems
    assert "$.author.logo: does not apply to Person" in problems
    assert "$.image: 'cover.png' is none of" in problems
    assert "$.publisher: a Blog where" in problems
    assert "$.mainEntityOfPage: @type 'Webpage' is not a schema.org class" in problems


def test_png_and_apple_touch_icons_beside_the_svg(project: Project) -> None:
    project.post("2025-01-01-a.md", post_text("A.\n", title="A"))
    project.build_ok()
    html = project.page("")
    assert '<link rel="icon" type="image/svg+xml" href="/assets/favicon.svg">' in html
    assert '<link rel="icon" type="image/png" sizes="32x32" href="/assets/favicon-32.png">' in html
    assert '<link rel="apple-touch-icon" href="/assets/apple-touch-icon.png">' in html
    sizes = {
        name: png_size((project.site / "assets" / name).read_bytes())
        for name in ("favicon-32.png", "apple-touch-icon.png", "icon-512.png")
    }
    assert sizes == {
        "favicon-32.png": (32, 32),
        "apple-touch-icon.png": (180, 180),
        "icon-512.png": (512, 512),
    }


def test_committed_icons_are_what_the_script_makes_from_the_svg() -> None:
    """The PNGs are reproducible: rasterising favicon.svg again gives the same bytes."""
    done = run_command([sys.executable, "tools/make_icons.py", "--check"], cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_robots_txt_points_at_the_sitemap(project: Project, make_project) -> None:
    project.post("2025-01-01-a.md", post_text("A.\n", title="A"))
    project.build_ok()
    robots = (project.site / "robots.txt").read_text()
    assert robots == f"User-agent: *\nAllow: /\n\nSitemap: {SITE_URL}/sitemap.xml\n"
    assert "sitemap.xml" in project.files()
    other = make_project("no-url")
    other.configure(title="No URL", baseurl="/blog")
    other.post("2025-01-01-a.md", post_text("A.\n", title="A"))
    other.build_ok()
    assert (other.site / "robots.txt").read_text() == "User-agent: *\nAllow: /\n"
    own = make_project("own")
    own.write("static/robots.txt", "User-agent: *\nDisallow: /drafts/\n")
    own.build_ok()
    assert (own.site / "robots.txt").read_text() == "User-agent: *\nDisallow: /drafts/\n"


# -- search, related posts, feeds per tag ------------------------------------------------------


def test_search_index_and_search_box(project: Project) -> None:
    project.add_example_posts()
    project.build_ok()
    files = project.files()
    assert "pagefind/pagefind.js" in files and "pagefind/pagefind-entry.json" in files
    assert any(f.startswith("pagefind/fragment/") for f in files)
    assert not any(f.startswith("pagefind/pagefind-ui") for f in files)  # our own UI
    entry = json.loads((project.site / "pagefind/pagefind-entry.json").read_text())
    assert entry["languages"]["en"]["page_count"] == 4  # the posts, not the listings
    index = project.page("")
    form = re.search(
        r'<form class="site-search" role="search" action="/search/" method="get">.*?</form>',
        index,
        re.S,
    )
    assert (
        form and 'name="q"' in form.group(0) and '<label class="visually-hidden"' in form.group(0)
    )
    assert script_sources(index) == []  # the box is a plain form: no script on other pages
    search = project.page("search/")
    assert script_sources(search) == ["/assets/search.js"]
    assert '<meta name="robots" content="noindex">' in search
    assert "<noscript>" in search and 'href="/archive/"' in search
    post = project.page("2025/10/27/using-the-ray-library/")
    assert '<article class="post" data-pagefind-body>' in post
    assert '<section class="execution not-executed" data-pagefind-ignore>' in post


def test_search_index_is_reused_while_the_posts_content_is_unchanged(project: Project) -> None:
    project.post("2025-01-01-a.md", post_text("Apples and pears.\n", title="A"))
    project.build_ok()
    cache = project.root / ".raypress-cache/search-index/index.pickle"
    made = cache.stat().st_mtime_ns
    index = {n: d for n, d in project.tree().items() if n.startswith("pagefind/")}
    project.write("static/extra.css", "body { color: red }\n")  # not what is searched
    project.build_ok()
    assert cache.stat().st_mtime_ns == made  # Pagefind did not run again
    assert {n: d for n, d in project.tree().items() if n.startswith("pagefind/")} == index
    project.post("2025-01-01-a.md", post_text("Apples and quinces.\n", title="A"))
    project.build_ok()
    assert cache.stat().st_mtime_ns != made  # the words changed: indexed again
    assert {n: d for n, d in project.tree().items() if n.startswith("pagefind/")} != index


WORDS = ["apricot", "blueberry", "cherry", "damson", "elderberry", "fig", "guava"]


def test_search_index_in_shards_reindexes_only_the_edited_shard(project: Project) -> None:
    project.configure(url=SITE_URL, search_shard_size=2)
    for day, word in enumerate(WORDS, start=1):
        body = f"Fruit of the day: {word}.\n\n```python\nprint({day})\n```\n"
        project.post(f"2025-01-0{day}-{word}.md", post_text(body, title=word.title()))
    project.build_ok("--no-exec")
    shards = json.loads((project.site / "pagefind/shards.json").read_text())
    assert shards == ["1/", "2/", "3/"]  # ceil(7 / 2) bundles: the first, then three more
    folders = ["pagefind/", *(f"pagefind/{s}" for s in shards)]
    counts = [
        json.loads((project.site / f / "pagefind-entry.json").read_text())["languages"]["en"][
            "page_count"
        ]
        for f in folders
    ]
    assert sum(counts) == len(WORDS) and all(counts), counts  # every post in one shard
    files = project.files()
    assert "pagefind/pagefind.js" in files
    assert not any(f.startswith("pagefind/1/") and f.endswith(".js") for f in files)

    def bundles() -> dict[str, dict[str, bytes]]:
        tree = project.tree()
        inner = [f for f in folders if f != "pagefind/"]
        found = {f: {n: d for n, d in tree.items() if n.startswith(f)} for f in inner}
        found["pagefind/"] = {
            n: d
            for n, d in tree.items()
            if n.startswith("pagefind/") and not n.startswith(tuple(inner))
        }
        return found

    before = bundles()
    edited = "2025-01-06-fig.md"
    project.post(edited, post_text("Fruit of the day: fig and quince.\n", title="Fig"))
    project.build_ok("--no-exec")
    after = bundles()
    changed = [f for f in folders if after[f] != before[f]]
    assert len(changed) == 1, changed  # the edited post's shard, and no other
    fragments = [  # Pagefind's fragments (a page's text and meta) are gzipped JSON
        gzip.decompress(d) for n, d in after[changed[0]].items() if n.endswith(".pf_fragment")
    ]
    assert any(b"quince" in f for f in fragments), fragments
    project.configure(url=SITE_URL, search_shard_size=100)  # one bundle again
    project.build_ok("--no-exec")
    assert json.loads((project.site / "pagefind/shards.json").read_text()) == []
    assert not any(f.startswith("pagefind/1/") for f in project.files())
    entry = json.loads((project.site / "pagefind/pagefind-entry.json").read_text())
    assert entry["languages"]["en"]["page_count"] == len(WORDS)


@pytest.mark.parametrize("edited", ["one post", "every post"])
def test_a_failing_search_index_leaves_the_previous_site(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, edited: str
) -> None:
    """Pagefind runs while the rest of the site is written; when it fails, nothing of that
    build reaches the output folder (an update in place waits for it; a whole write is
    thrown away before the swap)."""
    for day, word in enumerate(WORDS, start=1):
        project.post(f"2025-01-0{day}-{word}.md", post_text(f"{word}.\n", title=word.title()))
    project.build_ok()
    before = project.tree()
    failing = tmp_path / "pagefind"
    failing.write_text("#!/bin/sh\necho 'Error: the disk is on fire' >&2\nexit 3\n")
    failing.chmod(0o755)
    import pagefind_bin

    monkeypatch.setattr(pagefind_bin, "get_executable", lambda: failing)
    for day, word in enumerate(WORDS[:1] if edited == "one post" else WORDS, start=1):
        text = post_text(f"{word}, edited.\n", title=word.title())
        project.post(f"2025-01-0{day}-{word}.md", text)
    result = project.build()
    assert result.code == 1 and "Pagefind failed: Error: the disk is on fire" in result.err
    assert project.tree() == before
    assert [p.name for p in project.root.iterdir() if p.name.startswith("_site")] == ["_site"]


def test_what_is_searched_of_a_page_is_its_first_main_element() -> None:
    from raypress.publish.search_index import _main_of

    expected = re.compile(rb"<main\b.*?</main>", re.DOTALL)  # what it means, slowly
    for page in (
        b"",
        b"<main>x</main>",
        b"a<mainx>b</main><main id=1>c</main>",
        b"<main",
        b"<main_a>q</main><main>r</main>",
        b"<MAIN>x</MAIN>",
        b"<main>\n</main></main>",
    ):
        found = expected.search(page)
        assert _main_of(page) == (found[0] if found else None), page


def test_pagefind_reads_pages_without_pygments_spans() -> None:
    from raypress.publish.search_index import searchable

    block = b'<div class="highlight" data-lang="python"><pre><code>%s</code></pre></div>'
    code = block % b'<span class="k">def</span> <span class="nf">f</span>():'
    page = b'<p><span aria-hidden="true">#</span> <span class="k">x</span></p>' + code
    assert searchable(page) == page.replace(code, block % b"def f():")  # code blocks only
    for kept in (  # another kind of span: its end tag must stay paired with it
        b'<span class="k">a</span><span data-pagefind-ignore>b</span>',
        b"<span>a</span>",
        b'<SPAN class="x" data-pagefind-meta="title">a</SPAN>',
    ):
        assert searchable(block % kept) == block % kept


def test_search_can_be_switched_off(project: Project) -> None:
    project.configure(url=SITE_URL, search=False)
    project.post("2025-01-01-a.md", post_text("A.\n", title="A"))
    project.build_ok()
    assert not any(f.startswith(("pagefind/", "search/")) for f in project.files())
    assert "site-search" not in project.page("")


def test_search_index_under_a_baseurl(project: Project) -> None:
    project.configure(url=SITE_URL, baseurl="/blog")
    project.post("2025-01-01-a.md", post_text("Find me.\n", title="A"))
    project.build_ok()
    search = project.page("search/")
    assert 'data-bundle="/blog/pagefind/"' in search and 'data-baseurl="/blog/"' in search
    assert 'action="/blog/search/"' in project.page("")


def test_related_posts_share_tags_most_first(project: Project) -> None:
    project.post("2025-01-01-a.md", post_text("A.\n", title="A", tags="[ray, numpy, io]"))
    project.post("2025-01-02-b.md", post_text("B.\n", title="B", tags="[ray]"))
    project.post("2025-01-03-c.md", post_text("C.\n", title="C", tags="[ray, numpy]"))
    project.post("2025-01-04-d.md", post_text("D.\n", title="D", tags="[cooking]"))
    project.post("2025-01-05-e.md", post_text("E.\n", title="E", tags="[numpy]"))
    project.post("2025-01-06-f.md", post_text("F.\n", title="F"))
    project.build_ok()

    def related(url: str) -> list[str]:
        html = project.page(url)
        section = re.search(r'<section class="related-posts".*?</section>', html, re.S)
        return re.findall(r'<a href="[^"]+">(\w)</a>', section.group(0)) if section else []

    assert related("2025/01/01/a/") == ["C", "E", "B"]  # 2 shared, then the newest first
    assert related("2025/01/03/c/") == ["A", "E", "B"]
    assert related("2025/01/04/d/") == []  # no other post is about cooking
    assert related("2025/01/06/f/") == []


def test_related_posts_are_those_of_comparing_every_pair() -> None:
    """``link_related`` counts shared tags per tag; it picks what comparing every pair of
    posts picks (most shared tags, then the newest, then the first listed), ties and
    repeated tags included."""
    import random
    from datetime import UTC, datetime, timedelta

    from markupsafe import Markup

    from raypress.publish.views import PostView, link_related, term

    def pairwise(views: list[PostView], count: int) -> list[list[PostView]]:
        tagged = [(view, {t.slug for t in view.tags}) for view in views]
        chosen = []
        for view, tags in tagged:
            scored = [
                (len(tags & others), other.date.timestamp(), index, other)
                for index, (other, others) in enumerate(tagged)
                if other is not view and tags & others
            ]
            scored.sort(key=lambda item: (-item[0], -item[1], item[2]))
            chosen.append([other for *_, other in scored[:count]])
        return chosen

    randomly = random.Random(13)
    for _ in range(40):
        names = [f"Tag {n}" for n in range(randomly.randint(1, 8))] + ["tag-0"]  # one slug
        views = [
            PostView(
                **dict.fromkeys(("title", "author", "excerpt_text", "source_path", "feed_id"), ""),
                url=f"/{number}/",
                date=datetime(2025, 1, 1, tzinfo=UTC) - timedelta(days=randomly.randint(0, 9)),
                updated=None,
                description=None,
                tags=[term(t, "tag") for t in randomly.choices(names, k=randomly.randint(0, 4))],
                categories=[],
                content=Markup(""),
                excerpt=Markup(""),
                reading_time=1,
                word_count=1,
                snippet_count=0,
                toc=(),
                draft=False,
                future=False,
                extra={},
            )
            for number in range(randomly.randint(1, 60))
        ]
        count = randomly.randint(1, 5)
        expected = pairwise(views, count)
        link_related(views, count)
        assert [view.related for view in views] == expected


def test_related_posts_count_from_the_configuration(project: Project) -> None:
    project.configure(url=SITE_URL, related_posts=1)
    for day in range(1, 4):
        project.post(f"2025-01-0{day}-p{day}.md", post_text("x\n", title=f"P{day}", tags="[t]"))
    project.build_ok()
    assert project.page("2025/01/01/p1/").count('class="related-posts"') == 1
    section = project.page("2025/01/01/p1/").split('class="related-posts"')[1]
    assert section.split("</section>")[0].count("<li>") == 1


def test_a_feed_per_tag_and_category(project: Project) -> None:
    project.post("2025-01-01-a.md", post_text("A.\n", title="A", tags="[ray, numpy]"))
    project.post(
        "2025-01-02-b.md", post_text("B.\n", title="B", tags="[numpy]", categories="[Notes]")
    )
    project.post("2025-01-03-c.md", post_text("C.\n", title="C"))
    project.build_ok()
    for path, title, posts in (
        ("tags/numpy/feed.xml", "raypress test site: numpy", ["B", "A"]),
        ("tags/ray/feed.xml", "raypress test site: ray", ["A"]),
        ("categories/notes/feed.xml", "raypress test site: Notes", ["B"]),
    ):
        root = ET.fromstring((project.site / path).read_bytes())
        assert root.tag == ATOM + "feed"
        assert root.findtext(ATOM + "title") == title
        assert root.findtext(ATOM + "id") == f"{SITE_URL}/{path}"
        links = {link.get("rel"): link.get("href") for link in root.findall(ATOM + "link")}
        assert links == {"self": f"{SITE_URL}/{path}", "alternate": f"{SITE_URL}/{path[:-8]}"}
        entries = [e.findtext(ATOM + "title") for e in root.findall(ATOM + "entry")]
        assert entries == posts, path
    page = project.page("tags/numpy/")
    alternate = (
        '<link rel="alternate" type="application/atom+xml" title="raypress test site: numpy"'
    )
    assert f'{alternate} href="/tags/numpy/feed.xml">' in page
    assert 'href="/tags/numpy/feed.xml" type="application/atom+xml">Atom feed' in page
    main = ET.fromstring((project.site / "feed.xml").read_bytes())
    assert main.findtext(ATOM + "id") != root.findtext(ATOM + "id")
    assert len(main.findall(ATOM + "entry")) == 3


def test_example_site_keeps_its_four_lighthouse_pages_light(tmp_path: Path) -> None:
    """The README's Lighthouse pages need no script but the copy button (the index none)."""
    root = tmp_path / "site"
    shutil.copytree(REPO / "posts", root / "posts")
    shutil.copytree(REPO / "snippets", root / "snippets")
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "site.toml").write_text('title = "x"\nurl = "https://example.org"\n')
    done = run_command(
        [sys.executable, "-m", "raypress", "build", "--no-exec", "--root", str(root)], cwd=root
    )
    assert done.returncode == 0, done.stderr
    index = (root / "_site/index.html").read_text()
    assert script_sources(index) == []
    seed = (root / "_site/2025/10/27/using-the-ray-library/index.html").read_text()
    assert script_sources(seed) == ["/assets/copy-code.js"]


def test_serve_finds_the_search_index_written_after_its_snapshot(tmp_path: Path) -> None:
    """``serve`` shows the pages as soon as they are rendered; the index comes later, from
    the output folder (and only the index: other files stay the snapshot's)."""
    from raypress.preview.http_server import Served, Snapshot, resolve

    (tmp_path / "pagefind").mkdir()
    (tmp_path / "pagefind/pagefind.js").write_text("index")
    (tmp_path / "stale.html").write_text("an old page")
    served = Served(tmp_path, "", Snapshot.of([("index.html", b"new")], []))
    found = resolve("/pagefind/pagefind.js", served)
    assert found.kind == "file" and found.file == str(tmp_path / "pagefind/pagefind.js")
    assert resolve("/stale.html", served).kind == "missing"
    assert resolve("/pagefind/%2e%2e/stale.html", served).kind == "missing"
