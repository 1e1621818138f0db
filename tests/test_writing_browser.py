"""The writing features in a real browser (headless Debian chromium through Playwright):
MathML laid out as math, the Mermaid diagram drawn (and redrawn for the dark scheme), the
copy button putting the code on the clipboard, a folded output opened, and the search page
finding a post. Screenshots are kept in tests/_artifacts/ (writing-*.png)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_publishing import REPO, run_command
from serve_process import free_port

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("RAYPRESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "_artifacts"
FIXTURE = REPO / "tests" / "fixtures" / "writing"
POST_URL = "/2025/11/20/writing-features/"
FRUITS = ["apricot", "blueberry", "cherry", "damson", "elderberry", "fig", "guava"]
WAIT_MS = 60_000

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example posts plus the fixture bundle, built with its snippets run, served by a
    plain static file server on loopback."""
    root = tmp_path_factory.mktemp("writing") / "site"
    shutil.copytree(REPO / "posts", root / "posts")
    shutil.copytree(REPO / "snippets", root / "snippets")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copytree(FIXTURE, root / "posts", dirs_exist_ok=True)
    (root / "site.toml").write_text('title = "raypress examples"\nurl = "http://127.0.0.1"\n')
    done = run_command([sys.executable, "-m", "raypress", "build", "--root", str(root)], root, 600)
    assert done.returncode == 0, done.stdout + done.stderr
    yield from _served(root)


@pytest.fixture(scope="module")
def sharded_site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Seven posts whose search index is split in shards of two posts, served on loopback."""
    root = tmp_path_factory.mktemp("sharded") / "site"
    for day, word in enumerate(FRUITS, start=1):
        post = f"---\ntitle: {word.title()}\n---\n\nFruit of the day: {word}.\n"
        (root / "posts").mkdir(parents=True, exist_ok=True)
        (root / "posts" / f"2025-01-0{day}-{word}.md").write_text(post)
    (root / "site.toml").write_text('title = "Fruits"\nsearch_shard_size = 2\n')
    done = run_command([sys.executable, "-m", "raypress", "build", "--root", str(root)], root, 600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "_site/pagefind/3/pagefind-entry.json").is_file()
    yield from _served(root)


def _served(root: Path) -> Iterator[str]:
    """The URL of ``root/_site`` served by a plain static file server on loopback."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", "_site"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = 50
        while (
            deadline
            and run_command(
                [sys.executable, "-c", f"import urllib.request as u; u.urlopen('{url}/')"], root
            ).returncode
        ):
            deadline -= 1
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: object, scheme: str = "light", width: int = 1100) -> object:
    context = browser.new_context(viewport={"width": width, "height": 1200}, color_scheme=scheme)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    return context.new_page()


def test_math_is_laid_out_as_mathml(site_url: str, browser: object) -> None:
    page = new_page(browser)
    page.goto(site_url + POST_URL)
    layout = page.evaluate(
        """() => {
        const frac = document.querySelector('.math-display mfrac');
        const [top, bottom] = [...frac.children].map(c => c.getBoundingClientRect());
        const inline = document.querySelector('p math');
        return {
          ns: frac.namespaceURI,
          stacked: top.bottom <= bottom.top + 1,  // the numerator above the denominator
          sameColumn: Math.abs((top.left + top.right) - (bottom.left + bottom.right)) < 4,
          inlineHeight: inline.getBoundingClientRect().height,
          display: getComputedStyle(document.querySelector('.math-display math')).display,
        };
    }"""
    )
    assert layout["ns"] == "http://www.w3.org/1998/Math/MathML"
    assert layout["stacked"] and layout["sameColumn"], layout
    assert layout["display"].startswith("block") and layout["inlineHeight"] > 0, layout
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".math-display").first.screenshot(path=str(ARTIFACTS / "writing-math.png"))


def test_mermaid_diagram_is_drawn_and_follows_dark_mode(site_url: str, browser: object) -> None:
    page = new_page(browser)
    page.goto(site_url + POST_URL)
    # diagrams.js marks the page once mermaid.run has drawn every diagram
    page.wait_for_function("document.documentElement.dataset.diagrams === 'light'", timeout=WAIT_MS)
    labels = page.evaluate("document.querySelector('pre.mermaid svg').textContent")
    for label in ("Write", "Run?", "Publish"):
        assert label in labels, labels

    def node_fill() -> str:
        return page.evaluate(
            "getComputedStyle(document.querySelector('pre.mermaid svg .node rect, "
            "pre.mermaid svg .node polygon')).fill"
        )

    light = node_fill()
    page.locator(".diagram").screenshot(path=str(ARTIFACTS / "writing-diagram-light.png"))
    page.emulate_media(color_scheme="dark")  # the reader's scheme changes: redrawn
    page.wait_for_function("document.documentElement.dataset.diagrams === 'dark'", timeout=WAIT_MS)
    page.wait_for_selector("pre.mermaid svg", timeout=WAIT_MS)
    assert node_fill() != light
    page.locator(".diagram").screenshot(path=str(ARTIFACTS / "writing-diagram-dark.png"))
    page.screenshot(path=str(ARTIFACTS / "writing-post-dark.png"), full_page=True)


def test_copy_button_copies_the_code(site_url: str, browser: object) -> None:
    page = new_page(browser)
    page.goto(site_url + POST_URL)
    figure = page.locator("figure.snippet[data-label=squares]")
    button = figure.locator("button.copy-code")
    figure.hover()
    button.click()
    page.wait_for_function(
        "document.querySelector('figure[data-label=squares] .copy-code').textContent === 'Copied'",
        timeout=WAIT_MS,
    )
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == "squares = [i * i for i in range(60)]\nfor value in squares:\n    print(value)"
    said = page.locator("span.visually-hidden[role=status]").text_content()
    assert said == "Code copied to the clipboard"  # what a screen reader announces
    page.wait_for_function("document.documentElement.dataset.diagrams", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "writing-copy.png"))


def test_folded_output_and_code_open_without_script(site_url: str, browser: object) -> None:
    page = new_page(browser)
    page.goto(site_url + POST_URL)
    rest = page.locator(".output-more pre.output-rest")
    assert not rest.is_visible()
    page.get_by_text("Show all 60 lines (30 more)").click()
    assert rest.is_visible() and "3481" in rest.inner_text()  # 59 squared
    fold = page.locator("details.code-fold")
    assert not fold.locator("div.highlight").is_visible()
    fold.locator("summary").click()
    assert "total = sum(squares)" in fold.locator("div.highlight").inner_text()
    page.screenshot(path=str(ARTIFACTS / "writing-post-light.png"), full_page=True)


def test_search_page_finds_posts(site_url: str, browser: object) -> None:
    page = new_page(browser, width=390)
    page.goto(site_url + "/")
    page.fill("#site-search-q", "actors")
    page.press("#site-search-q", "Enter")  # the header's plain form opens /search/?q=actors
    page.wait_for_selector("ol.search-results li", timeout=WAIT_MS)
    assert page.url.endswith("/search/?q=actors")
    titles = page.locator(".search-result-title a").all_inner_texts()
    assert "Ray tasks vs actors: when does your code need state?" in titles, titles
    assert "found for “actors”" in page.locator(".search-status").inner_text()
    href = page.locator(".search-result-title a").first.get_attribute("href")
    assert href.startswith("/20") and href.endswith("/")
    page.fill("#search-q", "zzzyxnotaword")
    page.wait_for_function(
        "document.querySelector('.search-status').innerText.startsWith('No post found')",
        timeout=WAIT_MS,
    )
    page.screenshot(path=str(ARTIFACTS / "writing-search-mobile.png"))


def test_search_merges_the_shards_of_a_large_index(sharded_site_url: str, browser: object) -> None:
    page = new_page(browser)
    page.goto(sharded_site_url + "/search/?q=fruit")
    page.wait_for_function(
        "document.querySelectorAll('ol.search-results li').length === 7", timeout=WAIT_MS
    )
    titles = sorted(page.locator(".search-result-title a").all_inner_texts())
    assert titles == sorted(w.title() for w in FRUITS), titles  # every shard answered
    for word in FRUITS:  # each post is found by its own word, whichever shard holds it
        page.fill("#search-q", word)
        page.wait_for_function(
            f"document.querySelector('.search-status').innerText.includes('“{word}”')",
            timeout=WAIT_MS,
        )
        assert page.locator(".search-result-title a").all_inner_texts() == [word.title()]


def test_timings_table_scrolls_sideways_on_a_phone(site_url: str, browser: object) -> None:
    page = new_page(browser, width=390)
    page.goto(site_url + "/timings/")
    box = page.evaluate(
        "(() => { const b = document.querySelector('.table-scroll');"
        " return {scroll: b.scrollWidth, client: b.clientWidth,"
        " page: document.documentElement.scrollWidth}; })()"
    )
    assert box["scroll"] > box["client"], box  # the table is wider than the screen...
    assert box["page"] <= 390, box  # ...but the page is not: the box scrolls
    assert page.locator(".scroll-hint").is_visible()
    page.screenshot(path=str(ARTIFACTS / "writing-timings-mobile.png"))


# -- interactive figures (plotly) ---------------------------------------------------------
# The issue-12 output work adds a plotly figure to the fixture post (see the comment at its
# end) and its check here: the figure's script runs and the plot responds to the mouse.
