"""Live-preview benchmark: from saving a post to the reloaded page showing the change.

    python bench/bench_serve.py [--posts 200] [--edits 10] [--ray-edits 5] [--no-ray]

``build.py serve`` runs as a child process, exactly as an author runs it; a headless
Debian chromium (driven by Playwright) shows a post. Each edit writes a unique token into
the post and notes the wall-clock time of the write; the page records when it has
painted after each load (``performance.timeOrigin + performance.now()`` in the first
animation frame after DOMContentLoaded), and the benchmark polls the page until the token
is there. Latency = paint time of the page showing the token - time the write finished.

* **prose edit**: a sentence added in the middle of one post of a ``--posts`` corpus
  (bench/corpus.py; its fences do not run). Target: under 300 ms.
* **code edit of a Ray post**: on a copy of the example site, the seed post's
  ``ray_results`` snippet gets a ``print`` with the token, so the post runs again on the
  server's warm Ray cluster. Target: under 1.5 s plus the snippets' own time (from the
  server's console line ``ran ... (N snippets: X, in all Y)``).

Figures are printed, nothing is asserted. Corpora go to ``bench/_work/serve/``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import corpus as corpus_module
from playwright.sync_api import BrowserContext, Error, Page, sync_playwright

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SEED = "posts/2025-10-27-using-the-ray-library.md"
SEED_URL = "/2025/10/27/using-the-ray-library/"
CHROMIUM = os.environ.get("RAYPRESS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAINTED = """
const painted = () => requestAnimationFrame(() => {
  window.__paintedAt = performance.timeOrigin + performance.now();
});
addEventListener("DOMContentLoaded", painted);  // a whole page reloaded
document.addEventListener("raypress:updated", painted);  // a post's page updated in place
"""
_REBUILT = re.compile(r" changed: .*\((\d+(?:\.\d+)?) (ms|s)\)$")
_NUMBER = r"(\d+(?:\.\d+)?) (ms|s)"
_RAN = re.compile(rf"ran \S+ \(\d+ snippets: {_NUMBER}, in all {_NUMBER}\)")


@dataclass(frozen=True, slots=True)
class Sample:
    latency_s: float  # file written -> page painted with the change
    rebuild_s: float | None  # the server's own figure for the rebuild
    snippets_s: float | None = None  # the snippets' own time (code edits)


class Server:
    """``python -m raypress serve`` as a child process; its console lines kept."""

    def __init__(self, root: Path, port: int, *flags: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "raypress", "serve", "--root", str(root)]
        self.process = subprocess.Popen(
            [*command, "--port", str(port), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=root,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, pattern: str, after: int = 0, timeout: float = 300) -> tuple[int, str]:
        """The first line from index ``after`` on that matches ``pattern``."""
        found = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for index in range(after, len(self.lines)):
                    if found.search(self.lines[index]):
                        return index, self.lines[index]
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server output:\n" + "\n".join(self.lines))
                self.changed.wait(0.5)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def browser() -> Iterator[BrowserContext]:
    """A headless chromium with a fresh profile."""
    profile = tempfile.mkdtemp(prefix="raypress-bench-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
            )
            context.add_init_script(PAINTED)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def seconds(value: str, unit: str) -> float:
    return float(value) / (1000 if unit == "ms" else 1)


def edit_and_wait(page: Page, server: Server, edit: Callable[[str], None], token: str) -> Sample:
    """Make an edit holding ``token``; wait for the page to show it; what it took."""
    mark = len(server.lines)
    page.evaluate("window.__paintedAt = null")
    edit(token)
    written = time.time() * 1000
    deadline = time.monotonic() + 300
    while True:
        try:
            shown, painted = page.evaluate(
                "token => [document.body.innerText.includes(token), window.__paintedAt]", token
            )
        except Error:  # the page is being reloaded
            shown, painted = False, None
        if shown and painted:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the page never showed the edit:\n" + "\n".join(server.lines))
        time.sleep(0.005)
    _, line = server.wait_for(r" changed: ", after=mark, timeout=60)
    rebuilt = _REBUILT.search(line)
    ran = _RAN.search(line)
    return Sample(
        (painted - written) / 1000,
        seconds(rebuilt[1], rebuilt[2]) if rebuilt else None,
        seconds(ran[1], ran[2]) if ran else None,
    )


def prose_edits(context: BrowserContext, posts: int, edits: int, work: Path) -> list[Sample]:
    """Edits of one post's prose in a ``posts``-post corpus."""
    written = corpus_module.write_corpus(work / "prose", posts, pelican=False)
    root = written.raypress_root
    middle = sorted((root / "posts").glob("*.md"))[posts // 2]
    server = Server(root, free_port())
    try:
        server.wait_for(r" started: ")
        page = context.new_page()
        page.goto(server.url + _url_of(server, root, middle))
        original = middle.read_text(encoding="utf-8")
        blocks = original.split("\n\n")
        where = len(blocks) // 2

        def edit(token: str) -> None:
            changed = [*blocks]
            changed[where] = f"{changed[where]} {token} was measured again."
            middle.write_text("\n\n".join(changed), encoding="utf-8")

        samples = []
        for number in range(edits + 1):
            sample = edit_and_wait(page, server, edit, f"Prose{number}x{time.time_ns()}")
            if number:  # the first edit warms the server and the browser's cache
                samples.append(sample)
            time.sleep(1.5)
        return samples
    finally:
        server.stop()


def ray_edits(context: BrowserContext, edits: int, work: Path) -> list[Sample]:
    """Code edits of the seed post (a Ray post) on a copy of the example site."""
    root = work / "ray"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name in ("posts", "templates"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    post = root / SEED
    original = post.read_text(encoding="utf-8")
    fence = "```python\nray_results\n```"
    assert fence in original, "the seed post's ray_results snippet moved"
    server = Server(root, free_port())
    try:
        server.wait_for(r" started: ", timeout=600)
        page = context.new_page()
        page.goto(server.url + SEED_URL)

        def edit(token: str) -> None:
            changed = f"```python\nprint('{token}')\nray_results\n```"
            post.write_text(original.replace(fence, changed), encoding="utf-8")

        samples = []
        for number in range(edits + 1):
            sample = edit_and_wait(page, server, edit, f"Code{number}x{time.time_ns()}")
            if number:
                samples.append(sample)
            time.sleep(0.5)
        return samples
    finally:
        server.stop()


def _url_of(server: Server, root: Path, post: Path) -> str:
    from raypress.config import load_config
    from raypress.publish.posts import read_post

    config = load_config(root)
    return config.baseurl + read_post(post, config, frozenset({"post"})).url


def describe(name: str, values: list[float], unit: str = "ms") -> str:
    scale = 1000 if unit == "ms" else 1
    shown = sorted(v * scale for v in values)
    p90 = shown[min(len(shown) - 1, round(0.9 * (len(shown) - 1)))]
    fmt = "{:.0f}" if unit == "ms" else "{:.2f}"
    parts = [
        f"median {fmt.format(statistics.median(shown))}",
        f"best {fmt.format(shown[0])}",
        f"p90 {fmt.format(p90)}",
        f"worst {fmt.format(shown[-1])}",
    ]
    return f"  {name:<34} {', '.join(parts)} {unit} (n={len(shown)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=200, help="corpus size (prose edits)")
    parser.add_argument("--edits", type=int, default=10, help="prose edits measured")
    parser.add_argument("--ray-edits", type=int, default=5, help="code edits measured")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray code edits")
    parser.add_argument("--work", type=Path, default=BENCH / "_work" / "serve")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    with browser() as context:
        prose = prose_edits(context, args.posts, args.edits, args.work)
        print(f"\nprose edit, {args.posts}-post site (target: under 150 ms for 1,000 posts)")
        print(describe("save -> page shows the change", [s.latency_s for s in prose]))
        rebuilds = [s.rebuild_s for s in prose if s.rebuild_s is not None]
        print(describe("server's rebuild (its console)", rebuilds))
        if not args.no_ray:
            ray = ray_edits(context, args.ray_edits, args.work)
            print("\ncode edit of the seed Ray post, cluster warm (target: 1.5 s + snippets)")
            print(describe("save -> page shows the new output", [s.latency_s for s in ray], "s"))
            own = [s.snippets_s for s in ray if s.snippets_s is not None]
            print(describe("the snippets' own time", own, "s"))
            over = [s.latency_s - s.snippets_s for s in ray if s.snippets_s is not None]
            print(describe("overhead (latency - snippets)", over, "s"))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
