"""``build.py serve`` in a real browser (headless Debian chromium through Playwright):
the seed post updates by itself after a prose edit and a snippet edit, a failing snippet
and a bad save show an overlay naming ``posts/FILE.md:LINE``, fixing them clears it.
Screenshots are kept in tests/_artifacts/."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import REPO, SEED, SEED_URL, ServeProcess, example_project

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("RAYPRESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "tests" / "_artifacts"
OVERLAY = "#raypress-error-overlay"
WAIT_MS = 120_000

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    """A page of a headless chromium with a fresh profile."""
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 1400},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_seed_post_reloads_itself_and_shows_errors(tmp_path: Path, browser_page: object) -> None:
    page = browser_page
    root = example_project(tmp_path / "site")
    post = root / SEED
    original = post.read_text(encoding="utf-8")
    fence = "```python\nray_results\n```"
    assert fence in original
    server = ServeProcess(root)
    try:
        server.wait_for(r" started: ", timeout=600)
        page.goto(f"http://127.0.0.1:{server.port}{SEED_URL}")
        page.wait_for_selector("figure.snippet .snippet-output")
        assert page.locator(OVERLAY).count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-seed-post.png"), full_page=True)

        def shows(text: str) -> None:
            page.wait_for_function(
                "text => document.body.innerText.includes(text)", arg=text, timeout=WAIT_MS
            )

        # prose: the page updates by itself (the test never reloads or navigates), its body
        # swapped in place: not reloaded, although it has JSON-LD and the copy button's script
        page.wait_for_selector("div.highlight button.copy-code")
        page.evaluate("window.raypressNotReloaded = true")
        prose = original.replace("Et voila!", "Et voila, edited while serving!")
        post.write_text(prose, "utf-8")
        shows("Et voila, edited while serving!")
        assert page.evaluate("window.raypressNotReloaded === true")
        page.wait_for_selector("div.highlight button.copy-code")  # set up again after the swap

        # a snippet: its post runs again (on the warm cluster) and the new output shows
        code = "```python\nprint('sum of squares:', sum(ray_results))\nray_results[:3]\n```"
        post.write_text(prose.replace(fence, code), "utf-8")
        shows("sum of squares: 328350")
        shows("[np.int64(0), np.int64(1), np.int64(4)]")
        server.wait_for(rf"{SEED} changed: .*ran {SEED} \(")

        # a failing snippet: an overlay names the post's file and line
        failing = prose.replace(fence, "```python\nraise ValueError('broken on purpose')\n```")
        post.write_text(failing, "utf-8")
        line = _line_of(failing, "raise ValueError")
        overlay = page.wait_for_selector(OVERLAY, timeout=WAIT_MS)
        assert f"{SEED}:{line}" in overlay.inner_text()
        assert "ValueError: broken on purpose" in overlay.inner_text()
        where = overlay.query_selector(".raypress-where")
        assert where is not None and where.get_attribute("title") == "Show the snippet"
        page.screenshot(path=str(ARTIFACTS / "serve-seed-post-error.png"))

        # fixed: the overlay is gone with the next save
        post.write_text(prose, "utf-8")
        page.wait_for_selector(OVERLAY, state="detached", timeout=WAIT_MS)
        page.wait_for_function(  # the last of 100 lines: in the folded part of the output
            "document.querySelector('pre.output-rest')?.textContent.includes('np.int64(9801)]')",
            timeout=WAIT_MS,
        )

        # a bad save (broken front matter): the overlay, the previous page stays
        post.write_text(prose.replace("title: ", "title: [", 1), "utf-8")
        overlay = page.wait_for_selector(OVERLAY, timeout=WAIT_MS)
        assert re.search(rf"{SEED}:\d+ error: malformed YAML", overlay.inner_text())
        assert "Et voila, edited while serving!" in page.inner_text("main")
        post.write_text(original, "utf-8")
        page.wait_for_selector(OVERLAY, state="detached", timeout=WAIT_MS)
        shows("Et voila!")
        page.screenshot(path=str(ARTIFACTS / "serve-seed-post.png"), full_page=True)
        assert server.interrupt() == 0
    finally:
        server.kill()
