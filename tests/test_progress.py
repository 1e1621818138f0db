"""Progress on long work: a live status on a terminal (a real pty), plain lines and a
heartbeat every 10 s without one (CI), and ``serve``'s status box in a real browser; each
around a real 30 s snippet and a real Ray cluster's start."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest_publishing import REPO
from serve_process import ServeProcess

from raypress.commands.live_status import LiveStatus, RunState
from raypress.execution.model import ProgressEvent

SLOW_POST = """---
title: Slow
date: 2024-01-01
---

A quick snippet, then a long one.

```python
print("quick")
```

```python
import time

time.sleep({seconds})
print("slept")
```
"""
SLOW_LINE = 12  # the long snippet's fence
RAY_POST = """---
title: Ray
date: 2024-01-02
---

```python
import ray

ray.init()
print(ray.get(ray.put(41)) + 1)
```
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]")


def site(folder: Path, seconds: float, with_ray: bool) -> Path:
    (folder / "posts").mkdir(parents=True)
    (folder / "posts" / "slow.md").write_text(SLOW_POST.format(seconds=seconds), "utf-8")
    if with_ray:
        (folder / "posts" / "ray.md").write_text(RAY_POST, "utf-8")
    (folder / "site.toml").write_text('title = "progress"\n', "utf-8")
    return folder


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYPRESS_", "RAY_ADDRESS"))}
    env.update(extra)
    return env


# -- what the events add up to -----------------------------------------------------------


def test_run_state_counts_queued_running_and_done() -> None:
    state = RunState()
    for event in (
        ProgressEvent("posts-queued", count=3),
        ProgressEvent("cluster-starting", count=8, at=1.0),
        ProgressEvent("post-started", "posts/a.md", count=2, at=2.0),
        ProgressEvent("snippet-started", "posts/a.md", snippet=1, line=7, at=3.0),
        ProgressEvent("post-started", "posts/b.md", count=1, at=4.0),
    ):
        state.apply(event)
    assert (state.queued, len(state.running), state.done) == (1, 2, 0)
    assert state.cluster_started == 1.0
    running = state.running["posts/a.md"]
    assert (running.snippet, running.line, running.snippet_started) == (1, 7, 3.0)
    state.apply(ProgressEvent("cluster-ready"))
    state.apply(ProgressEvent("snippet-done", "posts/a.md", snippet=1, status="ok"))
    state.apply(ProgressEvent("post-done", "posts/a.md", status="ok"))
    state.apply(ProgressEvent("post-done", "posts/c.md", status="died"))  # never started
    assert state.cluster_started is None
    assert (state.queued, list(state.running), state.done) == (0, ["posts/b.md"], 2)


def test_plain_heartbeats_name_the_running_snippet(tmp_path: Path) -> None:
    out = (tmp_path / "out.txt").open("w+", encoding="utf-8")
    with LiveStatus(out, terminal=False, heartbeat_s=0.4) as status:
        status.event(ProgressEvent("post-started", "posts/a.md", count=2))
        status.event(ProgressEvent("snippet-started", "posts/a.md", snippet=2, line=12))
        time.sleep(1.2)
        status.event(ProgressEvent("snippet-done", "posts/a.md", snippet=2, status="ok"))
        time.sleep(0.6)
    out.seek(0)
    lines = out.read().splitlines()
    assert lines[0] == "running posts/a.md (2 snippets)"
    beat = re.compile(r"posts/a\.md: snippet 2 of 2 \(line 12\) still running \((\d\.\d) s\)")
    found = [beat.fullmatch(line) for line in lines[1:]]
    assert all(found), lines
    seconds = [float(m.group(1)) for m in found if m]
    assert 2 <= len(seconds) <= 3, lines  # every 0.4 s while it ran, none once it ended
    assert seconds == sorted(seconds) and seconds[0] >= 0.4


# -- a real 30 s snippet -----------------------------------------------------------------


def read_pty(command: list[str], cwd: Path, env: dict[str, str]) -> list[tuple[float, str]]:
    """Run ``command`` with a pseudo-terminal as its stdout and stderr; what it wrote, in
    chunks with their arrival time (seconds after the start), ANSI controls removed."""
    primary, secondary = pty.openpty()
    os.set_blocking(primary, True)
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    chunks: list[tuple[float, str]] = []
    while True:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            text = ANSI.sub("", data.decode("utf-8", "replace"))
            chunks.append((time.monotonic() - started, text))
        elif process.poll() is not None:
            break
    os.close(primary)
    assert process.wait(timeout=60) == 0, "".join(text for _, text in chunks)
    return chunks


def read_pipe(command: list[str], cwd: Path, env: dict[str, str]) -> list[tuple[float, str]]:
    """Run ``command`` with pipes (as in CI); its stdout lines with their arrival times."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    lines = [(time.monotonic() - started, line.rstrip("\n")) for line in process.stdout]  # type: ignore[union-attr]
    assert process.wait(timeout=60) == 0, lines
    return lines


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_30_s_snippet_shows_live_progress_on_a_terminal_and_heartbeats_in_ci(
    tmp_path: Path,
) -> None:
    raypress = str(Path(sys.executable).parent / "raypress")
    results: dict[str, list[tuple[float, str]]] = {}

    def terminal() -> None:
        root = site(tmp_path / "terminal", 30, with_ray=True)
        env = environment(TERM="xterm-256color", COLUMNS="110", LINES="30")
        results["terminal"] = read_pty([raypress, "build"], root, env)

    thread = threading.Thread(target=terminal)
    thread.start()
    root = site(tmp_path / "ci", 30, with_ray=False)
    ci = read_pipe([raypress, "build"], root, environment(CI="true", TERM="dumb"))
    thread.join(timeout=600)

    # CI: a line when the post starts and ends, a heartbeat every 10 s while it runs
    text = [line for _, line in ci]
    when = {line: at for at, line in ci}
    assert "running posts/slow.md (2 snippets)" in text, text
    beats = [line for line in text if "still running" in line]
    prefix = f"posts/slow.md: snippet 2 of 2 (line {SLOW_LINE}) still running ("
    assert [line[len(prefix) :] for line in beats] == ["10 s)", "20 s)"], beats
    ended = next(line for line in text if line.startswith("ran posts/slow.md: 2 snippets in "))
    started = when["running posts/slow.md (2 snippets)"]
    assert 9 <= when[beats[0]] - started <= 16, ci  # told while it ran, not afterwards
    assert 19 <= when[beats[1]] - started <= 26, ci
    assert when[ended] - started >= 29, ci

    # a terminal: the status is redrawn while the snippet runs
    chunks = results["terminal"]
    screen = "".join(text for _, text in chunks)
    assert re.search(r"Ray cluster starting +\d+(\.\d)? s", screen), screen[-3000:]
    assert re.search(r"posts: \d queued · \d running · \d done", screen)
    row = re.compile(rf"posts/slow\.md +snippet 2 of 2 \(line {SLOW_LINE}\) +(\d+)(?:\.\d)? s")
    shown = [(at, int(m.group(1))) for at, text in chunks for m in row.finditer(text)]
    assert shown, screen[-3000:]
    assert max(seconds for _, seconds in shown) >= 25  # counted up to the end
    assert len({seconds for _, seconds in shown}) >= 20  # a new figure every second or so

    def first_shown(figure: int) -> float:
        return min(at for at, seconds in shown if seconds >= figure)

    assert first_shown(20) - first_shown(10) >= 8, "drawn as it ran, not at the end"
    assert "ran posts/ray.md: 1 snippet" in screen
    assert "ran posts/slow.md: 2 snippets" in screen
    assert screen.rstrip().splitlines()[-1].startswith("built 2 posts")
    assert "still running" not in screen  # heartbeats are for logs, not terminals


@pytest.mark.slow
def test_quiet_prints_nothing_while_posts_run(tmp_path: Path) -> None:
    root = site(tmp_path / "quiet", 1, with_ray=False)
    raypress = str(Path(sys.executable).parent / "raypress")
    result = subprocess.run(
        [raypress, "build", "--quiet"],
        cwd=root,
        env=environment(CI="true"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# -- serve: the pages say what runs ---------------------------------------------------------

CHROMIUM = os.environ.get("RAYPRESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
def test_serve_shows_the_running_snippet_on_the_page(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    root = site(tmp_path / "serve", 1, with_ray=False)
    server = ServeProcess(root)
    try:
        server.wait_for(r" started: ", timeout=300)
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.port}/2024/01/01/slow/")
                page.wait_for_selector("figure.snippet .snippet-output")
                post = root / "posts" / "slow.md"
                post.write_text(SLOW_POST.format(seconds=12), "utf-8")
                page.wait_for_selector("#raypress-status", timeout=60_000)
                expected = f"running posts/slow.md snippet 2 of 2 (line {SLOW_LINE})\u2026"
                page.wait_for_function(
                    "(text) => document.getElementById('raypress-status')?.textContent"
                    ".includes(text)",
                    arg=expected,
                    timeout=60_000,
                )
                # each "running" event redraws the box: read the current one, not a handle
                current = "document.getElementById('raypress-status')?.innerText"
                first = page.evaluate(current)
                page.wait_for_timeout(2500)
                assert page.evaluate(current) != first, "the elapsed time counts up"
                page.screenshot(path=str(artifacts() / "serve-running-status.png"))
                page.wait_for_selector("#raypress-status", state="detached", timeout=120_000)
            finally:
                browser.close()
    finally:
        server.interrupt()


def artifacts() -> Path:
    folder = REPO / "tests" / "_artifacts"
    folder.mkdir(exist_ok=True)
    return folder
