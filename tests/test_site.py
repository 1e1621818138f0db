"""The published site: what a real build writes for posts, listings, links and config."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from conftest_publishing import (
    REPO,
    SITE_TITLE,
    SITE_URL,
    Project,
    hrefs,
    parse_page,
    post_text,
    python_command,
    run_command,
)

from raypress.config import load_config
from raypress.execution.model import SnippetOptions
from raypress.publish.markdown import MarkdownSettings, parse_body
from raypress.publish.posts import read_post
from raypress.publish.reading import available_layouts


def h1_texts(html: str) -> list[str]:
    return [
        " ".join(re.sub(r"<[^>]+>", " ", m).split())
        for m in re.findall(r"<h1\b[^>]*>(.*?)</h1>", html, re.DOTALL)
    ]


def title_of(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.DOTALL)
    assert match, "page has no <title>"
    return match.group(1)


def words(count: int, word: str = "word") -> str:
    return " ".join([word] * count)


# -- drafts and future posts ---------------------------------------------------------------


@pytest.fixture
def drafts_project(project: Project) -> Project:
    project.post("2024-01-01-published.md", post_text("Out.\n", title="Published"))
    project.post("2024-01-02-a-draft.md", post_text("Draft.\n", title="A draft", draft="true"))
    project.post("2999-01-01-far-future.md", post_text("Later.\n", title="Far future"))
    return project


def test_drafts_and_future_posts_are_left_out_by_default(drafts_project: Project) -> None:
    result = drafts_project.build_ok()
    assert "1 draft(s) skipped" in result.out and "1 future post(s) skipped" in result.out
    files = drafts_project.files()
    assert "2024/01/01/published/index.html" in files
    assert not any("a-draft" in f or "far-future" in f for f in files)
    everything = b"".join(drafts_project.tree().values())
    assert b"A draft" not in everything and b"Far future" not in everything


def test_drafts_flag_includes_drafts_only(drafts_project: Project) -> None:
    drafts_project.build_ok("--drafts")
    files = drafts_project.files()
    assert "2024/01/02/a-draft/index.html" in files
    assert not any("far-future" in f for f in files)
    assert "noindex" in drafts_project.page("2024/01/02/a-draft/")


def test_future_flag_includes_future_posts_only(drafts_project: Project) -> None:
    drafts_project.build_ok("--future")
    files = drafts_project.files()
    assert "2999/01/01/far-future/index.html" in files
    assert not any("a-draft" in f for f in files)


def test_both_flags_include_everything(drafts_project: Project) -> None:
    drafts_project.build_ok("--drafts", "--future")
    index = drafts_project.page("")
    assert "A draft" in index and "Far future" in index and "Published" in index


# -- baseurl: a site served under a sub-path -----------------------------------------------


def page_url(relative: str, baseurl: str) -> str:
    """The URL path of the built file ``relative`` (``a/index.html`` -> ``/blog/a/``)."""
    path = "/" + relative
    return baseurl + (path[: -len("index.html")] if path.endswith("/index.html") else path)


def file_for(site: Path, path: str) -> Path:
    relative = path.lstrip("/")
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    return site / relative


@pytest.mark.parametrize("baseurl", ["/blog", "/deep/sub/path"])
def test_every_internal_link_starts_with_baseurl_and_resolves(
    project: Project, baseurl: str
) -> None:
    project.configure(title=SITE_TITLE, url=SITE_URL, posts_per_page=2)
    project.add_example_posts()
    project.post(
        "2025-12-01-categorised.md",
        post_text("A categorised post.\n", title="Categorised", categories="[Notes]"),
    )
    project.write("static/files/data.txt", "static data")
    project.build_ok("--baseurl", baseurl)
    site_host = urlsplit(SITE_URL).netloc
    pages = [name for name in project.files() if name.endswith(".html")]
    checked = 0
    for name in pages:
        here = page_url(name, baseurl)
        parsed = parse_page(project.page(name))
        for link in parsed.links:
            value = link.value
            if value.startswith("#"):
                assert value[1:] in parsed.ids, f"{name}: {value} points at no id on the page"
                continue
            parts = urlsplit(value)
            if parts.scheme and parts.scheme not in ("http", "https"):
                continue  # mailto:, data:, ...
            if parts.netloc and parts.netloc != site_host:
                continue  # another site
            if value.startswith("/") and not value.startswith("//"):
                assert value.startswith(baseurl + "/"), f"{name}: {value} ignores the baseurl"
            path = urlsplit(urljoin(SITE_URL + here, value)).path
            assert path.startswith(baseurl + "/"), f"{name}: {value} leaves {baseurl}/"
            target = file_for(project.site, path[len(baseurl) :])
            assert target.is_file(), f"{name}: {value} -> {target} does not exist"
            if parts.fragment and target.suffix == ".html":
                ids = parse_page(target.read_text(encoding="utf-8")).ids
                assert parts.fragment in ids, f"{name}: {value}: no such id"
            checked += 1
    assert checked > 100
    assert (project.site / "files" / "data.txt").read_text(encoding="utf-8") == "static data"


def test_baseurl_reaches_feed_and_canonical_urls(project: Project) -> None:
    project.add_example_posts()
    project.build_ok("--baseurl", "/blog")
    feed = (project.site / "feed.xml").read_text(encoding="utf-8")
    assert f'href="{SITE_URL}/blog/feed.xml"' in feed
    assert f"<id>{SITE_URL}/blog/2025/10/27/using-the-ray-library/</id>" in feed
    page = project.page("2025/10/27/using-the-ray-library/")
    assert f'href="{SITE_URL}/blog/2025/10/27/using-the-ray-library/"' in page


# -- Jekyll conventions, front matter, permalinks -------------------------------------------


def test_date_and_slug_come_from_the_file_name(project: Project) -> None:
    project.post("2024-03-05-hello-world.md", post_text("Hi.\n", title="Hello"))
    project.build_ok()
    page = project.page("2024/03/05/hello-world/")
    assert 'datetime="2024-03-05T00:00:00+00:00"' in page


def test_front_matter_date_and_slug_win_over_the_file_name(project: Project) -> None:
    project.post(
        "2024-03-05-hello-world.md",
        post_text("Hi.\n", title="Hello", date="2024-04-01", slug="greetings"),
    )
    project.build_ok()
    assert project.files().count("2024/04/01/greetings/index.html") == 1
    assert not any("hello-world" in f for f in project.files())


def test_post_without_front_matter_takes_its_title_from_the_first_heading(
    project: Project,
) -> None:
    project.post("2024-03-05-plain.md", "# A Plain Title\n\nJust some text.\n")
    project.build_ok()
    page = project.page("2024/03/05/plain/")
    assert "A Plain Title" in title_of(page)
    assert h1_texts(page).count("A Plain Title") == 1, "the heading became the title, once"
    assert "Just some text." in page


def test_post_without_front_matter_or_heading_takes_its_title_from_the_file_name(
    project: Project,
) -> None:
    project.post("2024-03-06-no-heading-here.md", "Just some text.\n")
    project.build_ok()
    page = project.page("2024/03/06/no-heading-here/")
    assert "No heading here" in title_of(page)
    assert "No heading here" in h1_texts(page)


def test_layout_post_and_custom_layouts_are_accepted(project: Project) -> None:
    project.write(
        "templates/note.html",
        '{% extends "base.html" %}\n{% block content %}'
        '<p class="note-layout">{{ post.title }}</p>{{ post.content }}{% endblock %}\n',
    )
    project.post("2024-01-01-a.md", post_text("A.\n", title="A", layout="post"))
    project.post("2024-01-02-b.md", post_text("B.\n", title="B", layout="note"))
    project.build_ok()
    assert "note-layout" not in project.page("2024/01/01/a/")
    assert '<p class="note-layout">B</p>' in project.page("2024/01/02/b/")


def test_datetime_with_time_zone_keeps_its_offset(project: Project) -> None:
    project.post("tz.md", post_text("Late.\n", title="Late", date="2024-03-05 23:30:00 -05:00"))
    project.build_ok()
    page = project.page("2024/03/05/tz/")
    assert 'datetime="2024-03-05T23:30:00-05:00"' in page
    feed = (project.site / "feed.xml").read_text(encoding="utf-8")
    assert "<updated>2024-03-05T23:30:00-05:00</updated>" in feed


def test_naive_datetime_uses_the_configured_time_zone(project: Project) -> None:
    project.configure(title=SITE_TITLE, url=SITE_URL, timezone="Europe/Paris")
    project.post("tz.md", post_text("Paris.\n", title="Paris", date="2024-03-05 10:00"))
    project.build_ok()
    assert 'datetime="2024-03-05T10:00:00+01:00"' in project.page("2024/03/05/tz/")


def test_permalink_front_matter_overrides_the_url(project: Project) -> None:
    project.post("2024-01-01-a.md", post_text("A.\n", title="A", permalink="/notes/custom/"))
    project.post("2024-01-02-b.md", post_text("B.\n", title="B", permalink="/notes/page.html"))
    project.post("2024-01-03-c.md", post_text("C.\n", title="C", permalink="/about"))
    project.build_ok()
    files = project.files()
    assert {"notes/custom/index.html", "notes/page.html", "about/index.html"} <= set(files)
    index_links = hrefs(project.page(""))
    assert {"/notes/custom/", "/notes/page.html", "/about/"} <= set(index_links)


def test_pretty_permalinks_are_the_default(project: Project) -> None:
    project.add_example_posts()
    project.build_ok()
    expected = {
        "2025/10/27/using-the-ray-library/index.html",
        "2025/11/03/ray-tasks-vs-actors/index.html",
        "2025/11/10/ray-put-and-large-arrays/index.html",
        "2025/11/17/numpy-vectorisation/index.html",
    }
    assert expected <= set(project.files())


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        # Jekyll's styles: :categories lower-cased as written (its URL escapes the space)
        ("date", "ray core/2024/03/05/x.html"),
        ("none", "ray core/x.html"),
        ("ordinal", "ray core/2024/065/x.html"),
        ("pretty", "ray core/2024/03/05/x/index.html"),
        ("/:slugified_categories/:title/", "ray-core/x/index.html"),
        ("/writing/:year/:slug/", "writing/2024/x/index.html"),
    ],
)
def test_permalink_styles(project: Project, style: str, expected: str) -> None:
    project.configure(title=SITE_TITLE, url=SITE_URL, permalink=style)
    project.post("2024-03-05-x.md", post_text("X.\n", title="X", categories="[Ray Core]"))
    project.build_ok()
    assert expected in project.files()


# -- listings -----------------------------------------------------------------------------


def five_posts(project: Project) -> list[str]:
    urls = []
    for day in range(1, 6):
        project.post(
            f"2024-01-0{day}-post-{day}.md",
            post_text(f"Body of post {day}.\n", title=f"Post {day}", tags="[python]"),
        )
        urls.append(f"/2024/01/0{day}/post-{day}/")
    return urls


def test_pagination_splits_the_index_with_prev_and_next_links(project: Project) -> None:
    project.configure(title=SITE_TITLE, url=SITE_URL, posts_per_page=2)
    urls = five_posts(project)
    project.build_ok()
    assert {"index.html", "page/2/index.html", "page/3/index.html"} <= set(project.files())
    assert not (project.site / "page" / "4").exists()
    assert not (project.site / "page" / "1").exists()
    newest_first = urls[::-1]
    pages = {1: project.page(""), 2: project.page("page/2/"), 3: project.page("page/3/")}
    for number, html in pages.items():
        links = set(hrefs(html))
        shown = [u for u in newest_first if u in links]
        assert shown == newest_first[(number - 1) * 2 : number * 2], number
    assert '<link rel="next" href="/page/2/">' in pages[1]
    assert 'rel="prev"' not in pages[1]
    assert '<link rel="prev" href="/">' in pages[2]
    assert '<link rel="next" href="/page/3/">' in pages[2]
    assert '<link rel="prev" href="/page/2/">' in pages[3]
    assert 'rel="next"' not in pages[3]


def test_tag_and_category_pages_list_their_posts(project: Project) -> None:
    project.post("2024-01-01-a.md", post_text("A.\n", title="A", tags="[Ray, Machine Learning]"))
    project.post("2024-01-02-b.md", post_text("B.\n", title="B", tags="[ray]"))
    project.post("2024-01-03-c.md", post_text("C.\n", title="C", categories="[Notes]"))
    project.build_ok()
    ray = set(hrefs(project.page("tags/ray/")))
    assert {"/2024/01/01/a/", "/2024/01/02/b/"} <= ray and "/2024/01/03/c/" not in ray
    ml = set(hrefs(project.page("tags/machine-learning/")))
    assert "/2024/01/01/a/" in ml and "/2024/01/02/b/" not in ml
    assert {"/tags/ray/", "/tags/machine-learning/"} <= set(hrefs(project.page("tags/")))
    assert "/notes/2024/01/03/c/" in hrefs(project.page("categories/notes/"))  # Jekyll's pretty
    assert "/categories/notes/" in hrefs(project.page("categories/"))
    assert "/tags/ray/" in hrefs(project.page("2024/01/01/a/"))


def test_archive_lists_every_post_by_year(project: Project) -> None:
    project.post("2023-06-01-old.md", post_text("Old.\n", title="Old"))
    project.post("2024-01-01-new.md", post_text("New.\n", title="New"))
    project.build_ok()
    archive = project.page("archive/")
    assert {"/2023/06/01/old/", "/2024/01/01/new/"} <= set(hrefs(archive))
    assert archive.index("2024") < archive.index("2023")
    assert re.search(r"<h2[^>]*>\s*2023", archive) and re.search(r"<h2[^>]*>\s*2024", archive)


def test_404_page(project: Project) -> None:
    project.build_ok()
    page = project.page("404.html")
    assert "not found" in page.lower()
    assert '<meta name="robots" content="noindex">' in page
    assert "/" in hrefs(page)


def test_empty_site_builds_its_pages(project: Project) -> None:
    project.build_ok()
    files = set(project.files())
    assert {"index.html", "feed.xml", "sitemap.xml", "404.html", "archive/index.html"} <= files


def test_static_files_are_copied_and_deleted_posts_disappear(project: Project) -> None:
    project.write("static/robots.txt", "User-agent: *\n")
    project.write("static/img/dot.svg", "<svg/>")
    post = project.post("2024-01-01-gone.md", post_text("Bye.\n", title="Gone"))
    project.build_ok()
    assert (project.site / "robots.txt").read_text(encoding="utf-8") == "User-agent: *\n"
    assert (project.site / "img" / "dot.svg").is_file()
    assert (project.site / "assets" / "style.css").is_file()
    post.unlink()
    project.build_ok()
    assert not (project.site / "2024" / "01" / "01" / "gone").exists()
    assert "/2024/01/01/gone/" not in project.page("")


# -- per-post features ----------------------------------------------------------------------


def test_excerpt_is_the_first_paragraph(project: Project) -> None:
    body = "First paragraph, the excerpt.\n\nSecond paragraph, not in the excerpt.\n"
    project.post("2024-01-01-a.md", post_text(body, title="A"))
    project.build_ok()
    index = project.page("")
    assert "First paragraph, the excerpt." in index
    assert "Second paragraph" not in index
    assert "Second paragraph" in project.page("2024/01/01/a/")


def test_excerpt_separator_ends_the_excerpt(project: Project) -> None:
    body = "One.\n\nTwo, still excerpt.\n\n<!--more-->\n\nThree, only on the post page.\n"
    project.post("2024-01-01-a.md", post_text(body, title="A"))
    project.build_ok()
    index = project.page("")
    assert "One." in index and "Two, still excerpt." in index
    assert "Three, only on the post page." not in index
    page = project.page("2024/01/01/a/")
    assert "Three, only on the post page." in page and "<!--more-->" not in page


def toc_navs(html: str) -> list[list[str]]:
    return [nav for nav in parse_page(html).navs if nav and all(h.startswith("#") for h in nav)]


def test_table_of_contents_only_for_long_posts(project: Project) -> None:
    long_body = "Intro.\n\n" + "".join(
        f"## Part {n}\n\nText {n}.\n\n### Detail {n}\n\nMore.\n\n" for n in range(1, 4)
    )
    project.post("2024-01-01-long.md", post_text(long_body, title="Long"))
    project.post("2024-01-02-short.md", post_text("Intro.\n\n## Only\n\nText.\n", title="Short"))
    project.build_ok()
    long_navs = toc_navs(project.page("2024/01/01/long/"))
    assert len(long_navs) == 1
    assert long_navs[0] == [f"#{kind}-{n}" for n in range(1, 4) for kind in ("part", "detail")]
    assert toc_navs(project.page("2024/01/02/short/")) == []


def test_reading_time(project: Project) -> None:
    project.post("2024-01-01-a.md", post_text(words(600) + "\n", title="A"))
    project.post("2024-01-02-b.md", post_text(words(10) + "\n", title="B"))
    project.build_ok()
    assert "3 min read" in project.page("2024/01/01/a/")
    assert "1 min read" in project.page("2024/01/02/b/")
    project.configure(title=SITE_TITLE, url=SITE_URL, words_per_minute=100)
    project.build_ok()
    assert "6 min read" in project.page("2024/01/01/a/")


def test_previous_and_next_links(project: Project) -> None:
    for day in (1, 2, 3):
        project.post(f"2024-01-0{day}-p{day}.md", post_text("Text.\n", title=f"P{day}"))
    project.build_ok()
    urls = {day: f"/2024/01/0{day}/p{day}/" for day in (1, 2, 3)}

    def neighbours(day: int) -> set[str]:
        navs = parse_page(project.page(urls[day])).navs
        return {h for nav in navs for h in nav if h in urls.values()}

    assert neighbours(1) == {urls[2]}
    assert neighbours(2) == {urls[1], urls[3]}
    assert neighbours(3) == {urls[2]}


RAW_HTML_BODY = (
    'Before.\n\n<div class="raw-block">raw <b>html</b></div>\n\nInline <kbd>Ctrl</kbd>.\n'
)


def test_raw_html_is_allowed_by_default(project: Project) -> None:
    project.post("2024-01-01-a.md", post_text(RAW_HTML_BODY, title="A"))
    project.build_ok()
    page = project.page("2024/01/01/a/")
    assert '<div class="raw-block">raw <b>html</b></div>' in page
    assert "<kbd>Ctrl</kbd>" in page


def test_raw_html_is_escaped_when_switched_off(project: Project) -> None:
    project.configure(title=SITE_TITLE, url=SITE_URL, markdown_html=False)
    project.post("2024-01-01-a.md", post_text(RAW_HTML_BODY, title="A"))
    project.build_ok()
    page = project.page("2024/01/01/a/")
    assert "raw-block" in page and '<div class="raw-block">' not in page
    assert "&lt;div class=“raw-block”&gt;" in page  # shown as prose: typography applies
    assert "<kbd>" not in page and "&lt;kbd&gt;Ctrl&lt;/kbd&gt;" in page


def test_front_matter_values_are_data_not_template_source(project: Project) -> None:
    project.post(
        "2024-01-01-a.md",
        post_text(
            "Body {{ 8*8 }} stays {% raw %}literal.\n",
            title="'{{ 7*7 }} <script>alert(1)</script>'",
            description="'{% if true %}yes{% endif %} & <i>'",
            tags="['<b>bold</b>']",
            author="'{{ site.title }}'",
        ),
    )
    project.build_ok()
    for name in ("2024/01/01/a/index.html", "index.html", "archive/index.html", "feed.xml"):
        text = (project.site / name).read_text(encoding="utf-8")
        assert "<script>" not in text, name
        assert "49" not in text and ">64<" not in text, name
        assert "{{ 7*7 }}" in text, name
    page = project.page("2024/01/01/a/")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{% if true %}yes{% endif %} &amp; &lt;i&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert "{{ site.title }}" in page
    assert "Body {{ 8*8 }} stays {% raw %}literal." in page


GFM_BODY = """Intro[^note].

| Name | Value |
|------|------:|
| a    | 1     |

~~struck~~ text.

- [ ] open task
- [x] done task

## A Heading

[^note]: The footnote text.
"""


def test_tables_strikethrough_footnotes_task_lists_and_heading_anchors(project: Project) -> None:
    project.post("2024-01-01-gfm.md", post_text(GFM_BODY, title="GFM"))
    project.build_ok()
    page = project.page("2024/01/01/gfm/")
    assert re.search(r"<table>.*<th>Name</th>.*<td>a</td>.*</table>", page, re.DOTALL)
    assert re.search(r"<(s|del)>struck</(s|del)>", page)
    assert re.search(r'href="#fn1"', page) and "The footnote text." in page
    assert re.search(r'<input[^>]*type="checkbox"[^>]*>\s*open task', page)
    assert re.search(r"<input[^>]*checked[^>]*>\s*done task", page)
    assert '<h2 id="a-heading">' in page and 'href="#a-heading"' in page


def test_repeated_headings_get_unique_ids(project: Project) -> None:
    body = "## Setup\n\nA.\n\n## Setup\n\nB.\n\n## Setup-1\n\nC.\n\n## Setup\n\nD.\n"
    project.post("2024-01-01-a.md", post_text(body, title="A"))
    project.build_ok()
    ids = re.findall(r'<h2 id="([^"]+)"', project.page("2024/01/01/a/"))
    assert ids == ["setup", "setup-1", "setup-1-1", "setup-2"]


HIGHLIGHT_BODY = """Python:

```python
def square(x):
    return x ** 2
```

Shell:

```bash
echo "hi" | grep h
```
"""


def test_pygments_highlights_python_and_bash_without_scripts(project: Project) -> None:
    project.post("2024-01-01-code.md", post_text(HIGHLIGHT_BODY, title="Code"))
    project.add_example_posts()
    project.build_ok()
    page = project.page("2024/01/01/code/")
    assert '<span class="k">def</span>' in page
    assert '<span class="nf">square</span>' in page
    assert '<span class="nb">echo</span>' in page
    assert 'data-lang="bash"' in page and 'data-lang="python"' in page
    # highlighting needs no script: the only ones are JSON-LD data, the copy button on
    # pages that show code and the search page's own
    allowed = {"/assets/copy-code.js", "/assets/search.js", None}
    for name in project.files():
        if name.endswith((".html", ".xml")):
            text = (project.site / name).read_text(encoding="utf-8")
            for tag in re.findall(r"<script\b[^>]*>", text):
                src = re.search(r'src="([^"]*)"', tag)
                if 'type="application/ld+json"' in tag:
                    continue
                assert src and src.group(1) in allowed, f"{name} has {tag}"


def test_pygments_css_has_a_dark_scheme(project: Project) -> None:
    project.build_ok()
    css = (project.site / "assets" / "pygments.css").read_text(encoding="utf-8")
    light, _, dark = css.partition("@media (prefers-color-scheme: dark)")
    assert dark, "no prefers-color-scheme: dark block"
    assert ".highlight .k " in light and ".highlight .k " in dark
    assert "pygments.css" in project.page("")


# -- snippets ------------------------------------------------------------------------------

SNIPPETS_POST = """---
title: Snippets
date: 2024-01-02
---

Intro.

```python
#| label: setup
#| eval: false
import os
```

```py
x = 1
```

```python3
#| echo: false
#| timeout: 2.5
#| repeat: 3
#| deps: [data.csv]
hidden_setup = True
```

```bash
echo not a snippet
```

```{python}
print("quarto style")
```

```pycon
>>> 1 + 1
```

```javascript
console.log("no")
```

    indented = "not a snippet"
"""


def test_python_fences_become_snippets(project: Project) -> None:
    path = project.post("2024-01-02-snippets.md", SNIPPETS_POST)
    config = load_config(project.root)
    post = read_post(path, config, available_layouts(config))
    body = parse_body(post, MarkdownSettings())
    assert body.problems == ()
    got = [(s.index, s.line, s.code_line, s.language, s.source) for s in body.snippets]
    assert got == [
        (0, 8, 11, "python", "import os\n"),
        (1, 14, 15, "py", "x = 1\n"),
        (2, 18, 23, "python3", "hidden_setup = True\n"),
        (3, 30, 31, "python", 'print("quarto style")\n'),
    ]
    assert all(s.post == "posts/2024-01-02-snippets.md" for s in body.snippets)
    assert body.snippets[0].options == SnippetOptions(label="setup", eval=False)
    assert body.snippets[1].options == SnippetOptions()
    assert body.snippets[2].options == SnippetOptions(
        echo=False, timeout=2.5, repeat=3, deps=("data.csv",)
    )
    lines = SNIPPETS_POST.splitlines()
    for snippet in body.snippets:
        assert lines[snippet.line - 1].startswith("```")
        assert lines[snippet.code_line - 1] == snippet.source.splitlines()[0]


def test_snippet_options_are_hidden_and_echo_false_hides_code(project: Project) -> None:
    project.post("2024-01-02-snippets.md", SNIPPETS_POST)
    project.build_ok()
    page = project.page("2024/01/02/snippets/")
    text = parse_page(page).text
    assert "#|" not in page
    assert "hidden_setup" not in page
    assert "import os" in text and "x = 1" in text and "quarto style" in text
    assert "echo not a snippet" in text and "not a snippet" in text
    assert 'data-lang="bash"' in page and 'data-lang="javascript"' in page


# -- configuration -------------------------------------------------------------------------


def test_empty_config_builds_with_defaults(project: Project) -> None:
    project.configure()
    project.post("2024-01-01-a.md", post_text("A.\n", title="A"))
    project.build_ok()
    assert "My raypress blog" in title_of(project.page(""))
    assert (project.site / "2024" / "01" / "01" / "a" / "index.html").is_file()


def test_no_config_file_at_all_builds(project: Project) -> None:
    (project.root / "site.toml").unlink()
    project.build_ok()
    assert "My raypress blog" in project.page("")


def test_unknown_config_key_is_an_error(project: Project) -> None:
    project.write("site.toml", 'title = "x"\npost_per_page = 3\n')
    result = project.build()
    assert result.code == 1
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("site.toml")
    assert "unknown option 'post_per_page'" in result.err and "posts_per_page" in result.err
    assert not project.site.exists()


def test_config_value_of_the_wrong_type_is_an_error(project: Project) -> None:
    project.write("site.toml", 'posts_per_page = "two"\n')
    result = project.build()
    assert result.code == 1
    assert result.err_lines[0].startswith("site.toml") and "posts_per_page" in result.err


def test_invalid_toml_names_the_line(project: Project) -> None:
    project.write("site.toml", 'title = "x"\nurl = \n')
    result = project.build()
    assert result.code == 1
    assert result.err_lines[0].startswith("site.toml:2: error: invalid TOML"), result.err


def test_site_toml_is_read_and_wins_over_pyproject(project: Project) -> None:
    project.write("pyproject.toml", '[tool.raypress]\ntitle = "From pyproject"\n')
    project.configure(title="From site.toml")
    project.build_ok()
    assert "From site.toml" in title_of(project.page(""))
    (project.root / "site.toml").unlink()
    project.build_ok()
    assert "From pyproject" in title_of(project.page(""))


def test_config_option_and_command_line_overrides(project: Project) -> None:
    project.write("other.toml", 'title = "Other config"\noutput_dir = "public"\n')
    project.post("2024-01-01-a.md", post_text("A.\n", title="A"))
    project.build_ok("--config", "other.toml", "--url", "https://other.example")
    index = (project.root / "public" / "index.html").read_text(encoding="utf-8")
    assert "Other config" in title_of(index)
    assert "https://other.example/" in index
    assert not project.site.exists()


# -- rebuilds ------------------------------------------------------------------------------


def test_rebuild_without_changes_writes_nothing(project: Project) -> None:
    project.add_example_posts()
    project.build_ok()
    before = project.stats()
    folder = project.site.stat().st_ino
    result = project.build_ok()
    assert re.search(r"up to date|no changes", result.out), result.out
    assert project.stats() == before
    assert project.site.stat().st_ino == folder
    assert project.leftovers() == []


def test_prose_edit_rewrites_only_that_post_and_listings(project: Project) -> None:
    posts = project.add_example_posts()
    project.build_ok()
    before_stats, before_tree = project.stats(), project.tree()
    edited = posts[0]  # 2025-10-27-using-the-ray-library.md
    text = edited.read_text(encoding="utf-8")
    first = "As my first post"
    assert first in text
    edited.write_text(text.replace(first, "As my very first post", 1), encoding="utf-8")
    result = project.build_ok()
    after_stats, after_tree = project.stats(), project.tree()
    index = re.compile(r"^pagefind/")  # the search index covers the edited words
    assert {n for n in after_tree if not index.match(n)} == {
        n for n in before_tree if not index.match(n)
    }
    content_changed = {name for name in after_tree if after_tree[name] != before_tree.get(name)}
    rewritten = {name for name in after_stats if after_stats[name] != before_stats.get(name)}
    assert rewritten == content_changed, "only files whose bytes changed are rewritten"
    page = "2025/10/27/using-the-ray-library/index.html"
    assert page in content_changed
    listings = re.compile(
        r"^(index\.html|page/.*|tags/.*|categories/.*|archive/.*|feed\.xml|pagefind/.*)$"
    )
    notebook = "2025/10/27/using-the-ray-library/using-the-ray-library.ipynb"  # holds the prose
    unexpected = {name for name in content_changed - {page, notebook} if not listings.match(name)}
    assert unexpected == set(), f"a prose edit changed {unexpected}"
    assert "2025/11/03/ray-tasks-vs-actors/index.html" not in content_changed
    assert "As my very first post" in project.page("2025/10/27/using-the-ray-library/")
    assert f"{len(content_changed)} written" in result.out, result.out


def test_output_folder_has_the_permissions_of_a_normal_folder(project: Project) -> None:
    project.build_ok()
    probe = project.root / "probe"
    probe.mkdir()  # what the umask gives a new folder, e.g. 0755
    expected = probe.stat().st_mode & 0o777
    assert project.site.stat().st_mode & 0o777 == expected, oct(project.site.stat().st_mode)


# -- command line entry points (real processes) ---------------------------------------------


def copy_example_project(target: Path) -> Path:
    shutil.copytree(REPO / "templates", target / "templates")
    shutil.copytree(REPO / "posts", target / "posts")
    shutil.copy2(REPO / "build.py", target / "build.py")
    (target / "site.toml").write_text(f'title = "{SITE_TITLE}"\n', encoding="utf-8")
    return target


@pytest.mark.slow
def test_python_build_py_builds_the_site_running_every_snippet(tmp_path: Path) -> None:
    root = copy_example_project(tmp_path / "project")
    result = run_command(python_command("build.py"), cwd=root)
    assert result.returncode == 0, result.stderr
    assert "built 4 posts" in result.stdout
    assert "ran the snippets of 4 post(s)" in result.stdout
    assert (
        root / "_site" / "2025" / "10" / "27" / "using-the-ray-library" / "index.html"
    ).is_file()


def test_python_dash_m_raypress_reports_bad_input_with_exit_1(tmp_path: Path) -> None:
    root = copy_example_project(tmp_path / "project")
    (root / "posts" / "bad.md").write_text("---\ntitle: x\n---\n", encoding="utf-8")
    result = run_command(
        python_command("-m", "raypress", "build", "--no-exec", "--root", str(root)), cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("posts/bad.md:1: error: missing date")
    assert not (root / "_site").exists()


def test_raypress_console_script(tmp_path: Path) -> None:
    script = Path(python_command()[0]).parent / "raypress"
    assert script.is_file(), f"the raypress console script is not installed next to {script.parent}"
    version = run_command([str(script), "--version"], cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("raypress "), version
    root = copy_example_project(tmp_path / "project")
    result = run_command(
        [str(script), "build", "--root", str(root), "--quiet", "--no-exec"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert (root / "_site" / "index.html").is_file()
