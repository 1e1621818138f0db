"""An interactive plotly figure in a real browser (headless Debian chromium through
Playwright) on a site that sets ``trust_html_output``: plotly.js (published from the
installed plotly package) draws it. The screenshot is kept in tests/_artifacts/."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_serve_browser import ARTIFACTS, CHROMIUM, FLAGS, playwright_api

from raypress.commands.build import build
from raypress.config import load_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
POST = """---
title: Interactive
---

A scatter plot drawn by plotly.js.

```python
import plotly.express as px
px.scatter(x=[1, 2, 3], y=[3, 1, 2], title="Three points")
```
"""


@pytest.fixture
def served_site(tmp_path: Path) -> Iterator[str]:
    """The built site served over HTTP on loopback; its base URL."""
    root = tmp_path / "site"
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "posts").mkdir()
    (root / "posts" / "2025-01-02-interactive.md").write_text(POST, encoding="utf-8")
    (root / "site.toml").write_text('title = "t"\ntrust_html_output = true\n')
    report = build(load_config(root))
    assert report.ok, (report.problems, report.execution_problems)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / "_site"))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_plotly_figure_is_interactive_in_chromium(served_site: str, tmp_path: Path) -> None:
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 1200},
        )
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{served_site}/2025/01/02/interactive/", wait_until="load")
            figure = page.locator(".plotly-figure")
            page.wait_for_selector(".plotly-figure .main-svg", timeout=60_000)
            assert page.locator(".plotly-figure .scatterlayer .point").count() == 3
            assert "Three points" in (page.locator(".plotly-figure .gtitle").text_content() or "")
            assert page.locator(".plotly-figure .modebar").count() == 1  # its toolbar
            assert page.evaluate("typeof Plotly") == "object" and not errors, errors
            ARTIFACTS.mkdir(exist_ok=True)
            figure.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "plotly-figure.png"), full_page=True)
        finally:
            context.close()
