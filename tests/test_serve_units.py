"""``serve``'s parts without a browser: results reused while code is unchanged (and their
line numbers moved with the prose), the injected script, the file watcher, the CLI."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from raypress.cli import _parser
from raypress.errors import Problem
from raypress.execution.model import (
    Environment,
    ErrorInfo,
    ExecutionSettings,
    PostExecution,
    PostRun,
    Snippet,
    SnippetOptions,
    SnippetResult,
    stream_outputs,
)
from raypress.preview.file_watcher import SourceWatcher
from raypress.preview.live_reload import Hub, LiveState, inject
from raypress.preview.warm_executor import WarmExecution, run_key, shift_lines

POST = "posts/2025-01-01-x.md"


def make_run(*snippets: tuple[int, str], folder: Path = Path("/site/posts")) -> PostRun:
    """A run whose snippets start at the given fence lines."""
    return PostRun(
        POST,
        folder,
        tuple(
            Snippet(POST, i, line, line + 1, "python", source, SnippetOptions())
            for i, (line, source) in enumerate(snippets)
        ),
    )


def failed_execution(line: int) -> PostExecution:
    """The post failed in its second snippet, at post line ``line``."""
    trace = f'Traceback (most recent call last):\n  File "{POST}", line {line}, in <module>\n'
    error = ErrorInfo("ZeroDivisionError", "division by zero", trace, line)
    return PostExecution(
        POST,
        "failed",
        (
            SnippetResult(0, "ok", stream_outputs("4\n", f"{POST}:{line - 8}: UserWarning: w\n")),
            SnippetResult(1, "error", error=error),
        ),
        (),
        Environment(),
        "2025-01-01T00:00:00+00:00",
        0.5,
        problems=(Problem(POST, line, "ZeroDivisionError: division by zero"),),
    )


class FakeEngine:
    """Records what it was asked to run; returns a result per post."""

    def __init__(self) -> None:
        self.ran: list[list[str]] = []
        self.closed = False
        self.failure: str | None = None

    def run(self, runs: Sequence[PostRun], progress: object = None) -> list[PostExecution]:
        self.ran.append([r.post for r in runs])
        return [dataclasses.replace(failed_execution(20), post=r.post) for r in runs]

    def close(self) -> None:
        self.closed = True


def test_prose_edits_do_not_change_the_key_code_edits_do() -> None:
    base = make_run((10, "x = 1\n"), (18, "1 / 0\n"))
    moved = make_run((13, "x = 1\n"), (21, "1 / 0\n"))  # three lines of prose added above
    assert run_key(base) == run_key(moved)
    assert run_key(base) != run_key(make_run((10, "x = 2\n"), (18, "1 / 0\n")))
    labelled = dataclasses.replace(
        base,
        snippets=(
            dataclasses.replace(base.snippets[0], options=SnippetOptions(label="a")),
            base.snippets[1],
        ),
    )
    assert run_key(base) != run_key(labelled)


def test_reused_results_follow_the_prose() -> None:
    old = make_run((10, "x = 1\n"), (18, "1 / 0\n"))
    new = make_run((13, "x = 1\n"), (25, "1 / 0\n"))  # 3 lines above, 4 more between
    moved = shift_lines(failed_execution(19), old, new)
    error = moved.snippets[1].error
    assert error is not None and error.line == 26
    assert f'File "{POST}", line 26,' in error.traceback
    assert moved.problems[0].line == 26
    assert moved.snippets[0].stderr == f"{POST}:14: UserWarning: w\n"  # line 11 moved by 3
    assert shift_lines(failed_execution(19), old, old) == failed_execution(19)


def test_warm_execution_runs_only_changed_posts() -> None:
    engines: list[FakeEngine] = []

    def start(_settings: ExecutionSettings, _runs: Sequence[PostRun]) -> FakeEngine:
        engines.append(FakeEngine())
        return engines[-1]

    settings = ExecutionSettings(jobs=1)
    warm = WarmExecution(lambda: settings, start=start)
    first = make_run((10, "x = 1\n"), (18, "1 / 0\n"))
    other = dataclasses.replace(first, post="posts/other.md")
    warm.run([first, other])
    assert engines[0].ran == [[POST, "posts/other.md"]]
    prose = make_run((12, "x = 1\n"), (20, "1 / 0\n"))
    results = warm.run([prose, other])
    assert engines[0].ran == [[POST, "posts/other.md"]]  # nothing ran again
    assert warm.last.ran == () and warm.last.reused == (POST, "posts/other.md")
    assert results[0].problems[0].line == 22  # moved with the prose
    code = make_run((12, "x = 2\n"), (20, "1 / 0\n"))
    warm.run([code, other])
    assert engines[0].ran[-1] == [POST]  # only the edited post, on the same engine
    assert len(engines) == 1
    assert warm.forget(Path("/site/posts/data.csv")) == [POST, "posts/other.md"]
    warm.run([code])
    assert engines[0].ran[-1] == [POST]
    settings = ExecutionSettings(jobs=2)  # the configuration changed: all run again
    warm.run([code])
    assert engines[0].closed and len(engines) == 2
    warm.close()
    assert engines[1].closed


def test_inject_places_the_script_before_the_last_body_end() -> None:
    state = LiveState("v1", (Problem("posts/a.md", 3, "bad </script>"),))
    html = b"<html><body><pre></body></pre></body></html>"
    out = inject(html, state, None)
    assert out.startswith(b"<html><body><pre></body></pre><script")
    assert out.endswith(b"</script></body></html>")
    assert b"bad </script>" not in out and b"bad \\u003c/script\\u003e" in out
    assert inject(b"plain", state, None).startswith(b"plain<script")


def test_hub_versions_and_waiting() -> None:
    hub = Hub()
    first = hub.state.version
    assert hub.wait(first, timeout=0.01) is None
    published = hub.publish((), {}, soft=True)
    assert hub.wait(first, timeout=0.01) == published and published.soft
    hub.close()
    assert hub.wait(published.version, timeout=5) is None


def test_serve_command_line_defaults() -> None:
    options = _parser().parse_args(["serve"])
    assert (options.host, options.port, options.drafts, options.future) == (
        "127.0.0.1",
        8000,
        True,
        True,
    )
    options = _parser().parse_args(
        ["serve", "--port", "0", "--host", "0.0.0.0", "--no-drafts", "--no-future", "--no-exec"]
    )
    assert (options.port, options.drafts, options.future, options.execute) == (
        0,
        False,
        False,
        False,
    )
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--port", "70000"])


def _wait_for(watcher: SourceWatcher, wanted: Path, timeout: float = 10) -> set[Path]:
    deadline = time.monotonic() + timeout
    seen: set[Path] = set()
    while time.monotonic() < deadline:
        seen |= watcher.get(timeout=0.2) or set()
        if wanted in seen:
            return seen
    raise AssertionError(f"{wanted} not reported; saw {seen}")


def test_watcher_reports_sources_config_and_new_folders(tmp_path: Path) -> None:
    posts, static = tmp_path / "posts", tmp_path / "static"
    posts.mkdir()
    (tmp_path / "_site").mkdir()
    config = tmp_path / "site.toml"
    config.write_text("")
    watcher = SourceWatcher([posts, tmp_path / "templates", static], [config])
    watcher.start()
    try:
        time.sleep(0.3)
        post = posts / "2025-01-01-a.md"
        post.write_text("# A\n")
        _wait_for(watcher, post)
        config.write_text('title = "x"\n')
        _wait_for(watcher, config)
        (tmp_path / "_site" / "index.html").write_text("ignored")
        (posts / ".2025-01-01-a.md.swp").write_text("editor noise")
        assert watcher.get(timeout=0.3) is None
        static.mkdir()  # a source folder that did not exist: watched from now on
        _wait_for(watcher, static)
        time.sleep(0.3)
        (static / "robots.txt").write_text("User-agent: *\n")
        _wait_for(watcher, static / "robots.txt")
    finally:
        watcher.close()
    assert all(not t.is_alive() for t in watcher.threads)
