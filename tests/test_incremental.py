"""Incremental builds: after any sequence of edits, the output folder is byte for byte what
a cold build of the same inputs writes, and an edit re-renders only the pages that show
what changed."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from conftest_publishing import EXAMPLE_POSTS, TEMPLATES, Project, post_text

from raypress.commands.build import BuildReport, build
from raypress.config import load_config

POSTS = 12  # posts_per_page is 4 below: three index pages


def _post(number: int, title: str | None = None, date: str | None = None, **extra: str) -> str:
    tags = extra.pop("tags", "[alpha]" if number % 2 else "[beta, gamma]")
    body = (
        f"Paragraph one of post {number}, with **bold** words.\n\n"
        "```python\n#| eval: false\nprint('hello')\n```\n\n"
        f"Paragraph two of post {number}.\n"
    )
    return post_text(
        body,
        title=f'"{title or f"Post {number}"}"',
        date=date or f"2025-03-{number:02d}",
        tags=tags,
        **extra,
    )


def _build(project: Project, execute: bool = False) -> BuildReport:
    config = load_config(project.root, execute=execute)
    report = build(config)
    assert report.ok, (report.problems, report.execution_problems)
    return report


def _pages(project: Project) -> set[str]:
    """Every file made by a template, and the highlighting stylesheet."""
    pages = {name for name in project.files() if name.endswith((".html", ".xml"))}
    return pages | {"assets/pygments.css", "robots.txt"}


def _post_pages_linking_to(project: Project, url: str) -> set[str]:
    """The other posts' pages with a link to ``url``: its neighbours, the posts that list
    it among their related posts."""
    return {
        name
        for name in project.files()
        if name.startswith("2025/")
        and name.endswith("/index.html")
        and not name.startswith(url.strip("/"))
        and f'href="{url}"' in (project.site / name).read_text(encoding="utf-8")
    }


def _cold_tree(project: Project, make_project, name: str) -> dict[str, bytes]:
    """Build a copy of ``project``'s inputs from nothing; its output tree."""
    cold = make_project(name)
    for folder in ("posts", "templates", "static", "snippets"):
        shutil.rmtree(cold.root / folder, ignore_errors=True)
        if (project.root / folder).is_dir():
            shutil.copytree(project.root / folder, cold.root / folder)
    shutil.copyfile(project.root / "site.toml", cold.root / "site.toml")
    _build(cold)
    return cold.tree()


def test_incremental_output_equals_cold_output_after_every_edit(project: Project, make_project):
    project.configure(title="Incremental", url="https://example.org", posts_per_page=4)
    for number in range(1, POSTS + 1):
        project.post(f"post-{number:02d}.md", _post(number))
    first = _build(project)
    assert set(first.rendered) == _pages(project)

    def edit_and_compare(step: str) -> BuildReport:
        report = _build(project)
        assert project.tree() == _cold_tree(project, make_project, f"cold-{step}"), step
        return report

    # nothing changed: the build stamp says so
    assert _build(project).up_to_date

    # prose: the post, the posts that link to it (its neighbours, the posts that list it
    # as related), and the listings that hold it
    linking = _post_pages_linking_to(project, "/2025/03/06/post-06/")
    assert {"2025/03/05/post-05/index.html", "2025/03/07/post-07/index.html"} <= linking
    path = project.post("post-06.md", _post(6).replace("Paragraph two", "Paragraph 2"))
    prose = edit_and_compare("prose")
    assert set(prose.rendered) == linking | {
        "2025/03/06/post-06/index.html",
        "page/2/index.html",  # posts 8..5, newest first
        "tags/beta/index.html",
        "tags/gamma/index.html",
        "tags/beta/feed.xml",
        "tags/gamma/feed.xml",
        "archive/index.html",
        "feed.xml",
        "timings/index.html",  # lists the posts whose snippets did not run
    }, prose.rendered  # not the sitemap: URLs and dates only

    # title: the same pages show it
    project.post("post-06.md", _post(6, title="A new title"))
    assert set(edit_and_compare("title").rendered) == set(prose.rendered)

    # a snippet of a post shown without running it (--no-exec): its script and notebook
    before = project.tree()
    project.post("post-06.md", _post(6, title="A new title").replace("'hello'", "'hello again'"))
    edit_and_compare("snippet")
    changed = {name for name, data in project.tree().items() if before.get(name) != data}
    assert {"2025/03/06/post-06/post-06.py", "2025/03/06/post-06/post-06.ipynb"} <= changed
    assert not any(name.endswith((".py", ".ipynb")) and "post-06" not in name for name in changed)

    # date: the post moves (new URL), index pages and neighbours change
    project.post("post-06.md", _post(6, date="2025-03-11 12:00:00"))
    edit_and_compare("date")

    # tags: tag pages appear and disappear
    project.post("post-06.md", _post(6, tags="[delta]"))
    edit_and_compare("tags")

    # a new post, then a deleted one
    project.post("post-13.md", _post(13))
    edit_and_compare("add")
    (project.root / "posts" / "post-02.md").unlink()
    edit_and_compare("delete")
    path.unlink()
    edit_and_compare("delete-tagged")

    # the theme: a template of the site overrides the built-in one
    template = project.root / "templates" / "archive.html"
    builtin = Path(__file__).resolve().parents[1] / "raypress" / "theme" / "archive.html"
    template.write_text(builtin.read_text().replace("</h1>", " (all posts)</h1>", 1))
    edit_and_compare("template")

    # the configuration
    project.configure(title="Renamed site", url="https://example.org", posts_per_page=3)
    config_edit = edit_and_compare("config")
    assert set(config_edit.rendered) == _pages(project)

    # a file edited by hand in the output folder is put right
    (project.site / "archive" / "index.html").write_text("tampered")
    project.post("post-07.md", _post(7, title="Seven"))
    edit_and_compare("tampered")


def test_a_page_of_the_output_removed_by_hand_is_written_again(project: Project, make_project):
    for number in range(1, 5):
        project.post(f"post-{number:02d}.md", _post(number))
    _build(project)
    (project.site / "archive" / "index.html").unlink()
    project.post("post-01.md", _post(1, title="Changed"))
    _build(project)
    assert project.tree() == _cold_tree(project, make_project, "cold")


def test_an_interrupted_in_place_write_is_repaired(project: Project, make_project):
    """An in-place write removes the manifest first: if the build dies before writing it
    back, the next build does not trust the output folder and writes it whole."""
    for number in range(1, 9):
        project.post(f"post-{number:02d}.md", _post(number))
    _build(project)
    (project.root / ".raypress-cache" / "site-manifest.json").unlink()  # as if killed
    (project.site / "2025/03/02/post-02/index.html").write_text("half of a page")
    project.post("post-05.md", _post(5, title="After the crash"))
    report = _build(project)
    assert set(report.rendered) == _pages(project)  # nothing trusted, all rendered
    assert project.tree() == _cold_tree(project, make_project, "cold")


def test_a_prose_edit_does_not_load_pygments(project: Project):
    """The edited post's fences were highlighted at its last parse: they come back from
    the cache, so a prose edit does not import Pygments' lexers at all."""
    import subprocess
    import sys

    for number in range(1, 4):
        project.post(f"post-{number:02d}.md", _post(number))
    _build(project)
    project.post("post-02.md", _post(2).replace("Paragraph two", "Paragraph 2"))
    script = (
        "import sys; from raypress.cli import main; "
        f"code = main(['build', '--root', {str(project.root)!r}, '--no-exec', '--quiet']); "
        "print(code, sorted(m for m in sys.modules if m.startswith('pygments.lexers')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.split() == ["0", "[]"], result.stdout + result.stderr
    assert "Paragraph 2" in project.page("2025/03/02/post-02/")


@pytest.mark.parametrize("relative", [False, True], ids=["absolute-urls", "relative-urls"])
def test_a_previewed_page_is_the_page_the_build_then_writes(
    project: Project, relative: bool
) -> None:
    """``serve`` shows an edited post's page rendered from the last build's models, ahead
    of the build: that page must be the one the build then writes, byte for byte; and it
    must not be guessed at all where it cannot be right without a build."""
    from datetime import datetime

    from raypress.commands.build import RenderedSite, preview_post
    from raypress.publish.render import Theme

    for number in range(1, 6):
        project.post(f"2025-03-{number:02d}-post-{number}.md", _post(number))
    project.write("static/logo.txt", "a static file the pages may link to\n")
    config = load_config(project.root, execute=False, relative_urls=relative)
    theme = Theme(config)
    seen: list[RenderedSite] = []
    assert build(config, theme=theme, rendered=seen.append).ok
    models = seen[-1].models
    path = project.root / "posts/2025-03-03-post-3.md"
    path.write_text(_post(3).replace("Paragraph two", "Paragraph two, edited,"), "utf-8")
    now = datetime.now(config.zone)
    page = preview_post(path, models, config, theme, now)
    assert page is not None and b"Paragraph two, edited, of post 3" in page.data
    newer = b'href="../../04/post-4/index.html"' if relative else b'href="/2025/03/04/post-4/"'
    assert newer in page.data  # its neighbours, from the last build
    assert build(config, theme=theme).ok
    assert (project.site / page.path).read_bytes() == page.data

    cannot = {  # each needs the build: a snippet to run, a new URL, a broken post
        "snippet": _post(3).replace("print('hello')", "print('changed')"),
        "permalink": _post(3, permalink="/moved/"),
        "front matter": _post(3).replace("title:", "title: [unclosed"),
    }
    for why, text in cannot.items():
        path.write_text(text, "utf-8")
        assert preview_post(path, models, config, theme, now) is None, why
    new = project.root / "posts/2025-03-09-post-9.md"
    new.write_text(_post(9), "utf-8")
    assert preview_post(new, models, config, theme, now) is None  # not in the last build


def test_posts_shown_from_their_records_build_incrementally_as_cold(project: Project, make_project):
    """The example posts shown from their records in snippets/ (--no-exec): after a prose
    edit (the record still applies, its lines moved), a snippet edit (it no longer does:
    the post shows no outputs), the edit undone, a title edit and a deleted post, the
    output is what a cold build of the same posts and records writes."""
    project.configure(title="Recorded", url="https://example.org")
    shutil.copytree(EXAMPLE_POSTS, project.root / "posts", dirs_exist_ok=True)
    shutil.copytree(EXAMPLE_POSTS.parent / "snippets", project.root / "snippets")
    first = _build(project)
    assert first.reused == len(list(EXAMPLE_POSTS.glob("*.md"))) and not first.unrecorded

    def edit_and_compare(step: str) -> BuildReport:
        report = _build(project)
        assert project.tree() == _cold_tree(project, make_project, f"cold-{step}"), step
        return report

    post = project.root / "posts" / "2025-11-17-numpy-vectorisation.md"
    original = post.read_text(encoding="utf-8")
    prose = original.replace("## Why loops are slow", "A new paragraph.\n\n## Why loops are slow")
    post.write_text(prose, encoding="utf-8")
    assert edit_and_compare("prose").reused == first.reused

    snippet = prose.replace("import math\n", "import math  # edited\n", 1)
    assert snippet != prose
    post.write_text(snippet, encoding="utf-8")
    assert edit_and_compare("snippet").unrecorded == ("posts/2025-11-17-numpy-vectorisation.md",)

    post.write_text(original, encoding="utf-8")
    assert not edit_and_compare("undone").unrecorded

    # the record changes, the post does not (a run elsewhere, pulled): new outputs shown
    record = project.root / "snippets" / "2025-11-17-numpy-vectorisation.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    data["snippets"][1]["wall_s"] = 12.5
    data["snippets"][1]["outputs"][0]["text"] = ["an output from another run\n"]
    record.write_text(json.dumps(data, indent=1), encoding="utf-8")
    edit_and_compare("record")
    page = project.page("2025/11/17/numpy-vectorisation/")
    assert "an output from another run" in page and "12.5" in page
    post.write_text(original.replace('title: "Loops,', 'title: "Loops again,', 1))
    edit_and_compare("title")
    (project.root / "posts" / "2025-10-27-using-the-ray-library.md").unlink()
    edit_and_compare("deleted")


PIXEL = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.mark.slow
def test_a_post_with_a_figure_builds_incrementally_as_cold(project: Project, make_project):
    """A post whose snippet made a figure (run for real, then shown from its record with
    --no-exec): the figure is kept beside the page through a prose edit, and removed when
    the snippet is edited (no record applies); each time as a cold build writes it."""
    shutil.rmtree(project.root / "templates", ignore_errors=True)
    shutil.copytree(TEMPLATES, project.root / "templates")
    project.configure(title="Figures", url="https://example.org")
    code = (
        "class Pixel:\n    def _repr_png_(self):\n        import base64\n"
        f"        return base64.b64decode('{PIXEL}')\n\nPixel()"
    )
    text = post_text(f"Before.\n\n```python\n{code}\n```\n\nAfter.\n", title="Pixel")
    post = project.post("2025-01-02-pixel.md", text)
    project.post("2025-01-01-other.md", post_text("Another post.\n", title="Other"))
    _build(project, execute=True)
    figures = [n for n in project.files() if n.startswith("2025/01/02/") and n.endswith(".png")]
    assert len(figures) == 1, project.files()
    assert (project.site / figures[0]).read_bytes() == base64.b64decode(PIXEL)

    def edit_and_compare(step: str) -> dict[str, bytes]:
        _build(project)
        tree = project.tree()
        assert tree == _cold_tree(project, make_project, f"cold-{step}"), step
        return tree

    post.write_text(text.replace("After.", "After, with more words."), encoding="utf-8")
    assert figures[0] in edit_and_compare("prose")
    post.write_text(text.replace("Pixel()", "Pixel();"), encoding="utf-8")
    assert figures[0] not in edit_and_compare("snippet")


def test_fences_kept_apart_in_sixteen_files_and_dropped_when_unused(tmp_path: Path) -> None:
    """The build cache keeps each post's highlighted fences apart from the main file, in
    at most 16 files (not one per post), reads them back, and drops unused ones when it
    writes the whole cache again."""
    import hashlib

    from raypress.publish.parse_cache import FILES_NAME, BuildCache

    keys = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(300)]
    cache = BuildCache(tmp_path)
    for key in keys:
        cache.put_file(key, {("python", key): f"<pre>{key}</pre>"})
    for n in range(100):  # main entries (parsed posts), which the third build will not use
        cache.put(f"post-{n}", n)
    cache.save()
    files = sorted(p.name for p in (tmp_path / FILES_NAME).iterdir())
    assert 1 < len(files) <= 16 and all(len(name) == len("0.pickle") for name in files)
    again = BuildCache(tmp_path)
    assert again.get_file(keys[7]) == {("python", keys[7]): f"<pre>{keys[7]}</pre>"}
    assert again.buckets.keys() == {keys[7][:1]}  # one bucket read, not all
    third = BuildCache(tmp_path)  # a build of ten posts: the whole cache is written again
    for key in keys[:10]:
        third.keep_file(key)
    third.save()
    fourth = BuildCache(tmp_path)
    assert all(fourth.get_file(key) is not None for key in keys[:10])
    assert all(fourth.get_file(key) is None for key in keys[10:])
