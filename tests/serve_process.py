"""Helpers for the ``serve`` end-to-end tests: the real command in a child process."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = "posts/2025-10-27-using-the-ray-library.md"
SEED_URL = "/2025/10/27/using-the-ray-library/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def example_project(folder: Path) -> Path:
    """A copy of the repository's example site (posts, templates, configuration)."""
    folder.mkdir(parents=True)
    for name in ("posts", "templates"):
        shutil.copytree(REPO / name, folder / name)
    shutil.copy2(REPO / "pyproject.toml", folder / "pyproject.toml")
    return folder


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids of ``pids`` that are still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


class ServeProcess:
    """``python build.py serve --root ROOT --port PORT ...``, its output collected."""

    def __init__(self, root: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.root = root
        environment = {k: v for k, v in os.environ.items() if not k.startswith("RAYPRESS_")}
        environment.update(env or {}, PYTHONUNBUFFERED="1")
        command = [sys.executable, str(REPO / "build.py"), "serve", "--root", str(root)]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=root,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    def _read(self, stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self.changed:
                lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    @property
    def output(self) -> str:
        return "--- stdout\n" + "\n".join(self.out) + "\n--- stderr\n" + "\n".join(self.err)

    def wait_for(
        self, pattern: str, after: int = 0, timeout: float = 120, err: bool = False
    ) -> str:
        """The first line (of stdout, or stderr) from index ``after`` matching ``pattern``."""
        found = re.compile(pattern)
        lines = self.err if err else self.out
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in lines[after:]:
                    if found.search(line):
                        return line
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no line matching {pattern!r}\n{self.output}")
                self.changed.wait(0.2)

    def get(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C; the exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class EventStream:
    """The live-reload stream, read in a thread: the versions announced so far."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=None)
        self.connection.request("GET", "/__raypress/events")
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        self.events: list[dict[str, object]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_after(-1)  # the current version, sent first

    def _read(self) -> None:
        try:
            for raw in self.response.fp:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    with self.changed:
                        self.events.append(json.loads(line.removeprefix("data: ")))
                        self.changed.notify_all()
        except (OSError, ValueError):
            return

    def next_after(self, count: int, timeout: float = 60) -> dict[str, object]:
        """The event after the first ``count`` ones (-1: the first)."""
        index = max(count, 0)
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.events) > index, timeout):
                raise AssertionError(f"no event after {count}: {self.events}")
            return self.events[index]

    def close(self) -> None:
        self.connection.close()


def page_state(html: str) -> dict[str, object]:
    """The live-reload data injected into a served page."""
    start = html.index('id="raypress-live">') + len('id="raypress-live">')
    return json.loads(html[start : html.index("</script>", start)])
