"""``relative_urls = true``: a site that works opened from disk (``file://``), checked link by
link and in a real browser (headless Debian chromium through Playwright)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest_publishing import SITE_TITLE, SITE_URL, Project, parse_page, post_text

CHROMIUM = os.environ.get("RAYPRESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
BODY_LINKS = (  # Markdown links get the baseurl; raw HTML is as written ({base})
    "Back to [the first post](/2024/01/01/first/), the [tags](/tags/), "
    "[an anchor](/2024/01/01/first/#part-two), [a file](/notes.txt), "
    '<a href="{base}/archive/">raw HTML</a> and [elsewhere](https://example.com/x/).\n'
)


def relative_site(project: Project, baseurl: str = "", **config: object) -> Project:
    project.add_example_posts()
    project.post(
        "2024-01-01-first.md",
        post_text("Hello.\n\n## Part two\n\nMore.\n", title="First", tags="[größe, notes]"),
    )
    body = BODY_LINKS.format(base=baseurl)
    project.post("2024-01-02-second.md", post_text(body, title="Second", tags="[notes]"))
    project.write("static/notes.txt", "plain\n")
    project.configure(
        title=SITE_TITLE,
        url=SITE_URL,
        relative_urls=True,
        posts_per_page=2,
        baseurl=baseurl,
        **config,
    )
    project.build_ok()
    return project


def internal_links(project: Project) -> Iterator[tuple[str, str]]:
    """(page, link) for every href and src of every HTML page that is not external."""
    for name in project.files():
        if not name.endswith(".html") or name == "404.html":  # served at any depth: absolute
            continue
        for link in parse_page(project.page(name)).links:
            value = link.value
            if urlsplit(value).scheme or value.startswith(("#", "//")):
                continue
            yield name, value


@pytest.mark.parametrize("baseurl", ["", "/blog"])
def test_every_internal_link_is_relative_and_names_a_file(project: Project, baseurl: str) -> None:
    relative_site(project, baseurl=baseurl)
    checked = 0
    for page, link in internal_links(project):
        assert not link.startswith("/"), f"{page}: {link}"
        path = unquote(urlsplit(link).path)
        target = (project.site / page).parent / path
        assert target.is_file(), f"{page}: {link} -> {target} is not a file"
        checked += 1
    assert checked > 200


def test_links_in_post_bodies_pagination_and_feed_are_relative(project: Project) -> None:
    relative_site(project)
    second = project.page("2024/01/02/second/")
    hrefs = [link.value for link in parse_page(second).links if link.attribute == "href"]
    assert "../../01/first/index.html" in hrefs
    assert "../../01/first/index.html#part-two" in hrefs
    assert "../../../../tags/index.html" in hrefs
    assert "../../../../notes.txt" in hrefs
    assert "../../../../archive/index.html" in hrefs
    assert "https://example.com/x/" in hrefs
    assert "../../../../feed.xml" in hrefs
    index_hrefs = [link.value for link in parse_page(project.page("")).links]
    assert "page/2/index.html" in index_hrefs
    page_two = [link.value for link in parse_page(project.page("page/2/")).links]
    assert "../../index.html" in page_two and "../3/index.html" in page_two
    tag = [link.value for link in parse_page(project.page("tags/größe/")).links]
    assert "../../2024/01/01/first/index.html" in tag
    feed = (project.site / "feed.xml").read_text(encoding="utf-8")
    assert f"{SITE_URL}/2024/01/02/second/" in feed  # a feed keeps absolute URLs
    not_found = [link.value for link in parse_page(project.page("404.html")).links]
    assert "/assets/style.css" in not_found  # 404.html is served for /any/depth/


def test_without_the_option_links_stay_site_absolute(project: Project) -> None:
    project.post("2024-01-02-second.md", post_text(BODY_LINKS.format(base=""), title="Second"))
    project.build_ok()
    hrefs = [link.value for link in parse_page(project.page("2024/01/02/second/")).links]
    assert "/2024/01/01/first/" in hrefs and "/assets/style.css" in hrefs


@pytest.mark.slow
def test_the_site_opened_from_disk_is_styled_and_navigable(project: Project) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    relative_site(project)
    index = (project.site / "index.html").as_uri()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))

            def styled() -> bool:
                script = "getComputedStyle(document.documentElement).getPropertyValue('--measure')"
                return page.evaluate(script).strip() == "70ch"

            page.goto(index)
            assert styled(), "style.css was not applied to index.html"
            page.click("a.pagination-older")
            page.wait_for_url("**/page/2/index.html")
            assert styled()
            page.click("h2.post-summary-title a")
            page.wait_for_url("**/index.html")
            assert page.locator("h1.post-title").count() == 1
            assert styled()
            page.click("nav.site-nav >> text=Tags")
            page.wait_for_url("**/tags/index.html")
            page.click("a.term >> text=notes")
            page.wait_for_url("**/tags/notes/index.html")
            page.click("text=Second")
            page.wait_for_url("**/2024/01/02/second/index.html")
            page.click("text=the first post")
            page.wait_for_url("**/2024/01/01/first/index.html")
            assert page.locator("h1.post-title").inner_text().startswith("First")
            page.click("a.site-title")
            page.wait_for_url(index)
            assert styled()
            assert failed == [], failed
        finally:
            browser.close()
