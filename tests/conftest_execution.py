"""Helpers and fixtures for the execution tests (imported by conftest.py's execution block)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from raypress.execution import ExecutionSettings, InlineExpression, PostRun
from raypress.execution.pool import Executor
from raypress.snippets import Snippet, SnippetOptions

ROOT = Path(__file__).resolve().parents[1]
SEED_POST = ROOT / "posts" / "2025-10-27-using-the-ray-library.md"


def make_run(
    name: str,
    *sources: str,
    folder: Path | None = None,
    options: dict[int, SnippetOptions] | None = None,
    inline: tuple[InlineExpression, ...] = (),
    timeout: float | None = None,
    first_line: int = 10,
) -> PostRun:
    """A post named ``posts/<name>.md`` whose fences hold ``sources``.

    Fences are laid out as in a file: fence line, code, closing fence, a blank line.
    """
    snippets = []
    line = first_line
    for index, source in enumerate(sources):
        snippets.append(
            Snippet(
                post=f"posts/{name}.md",
                index=index,
                line=line,
                code_line=line + 1,
                language="python",
                source=source if source.endswith("\n") else source + "\n",
                options=(options or {}).get(index, SnippetOptions()),
            )
        )
        line += source.count("\n") + 4
    return PostRun(
        post=f"posts/{name}.md",
        post_dir=folder or ROOT / "posts",
        snippets=tuple(snippets),
        inline=inline,
        timeout=timeout,
    )


def python_fences(path: Path) -> list[tuple[int, int, str]]:
    """(fence line, first code line, code) of each ```python fence of a markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fences, i = [], 0
    while i < len(lines):
        opening = re.match(r"^```\s*(\w+)", lines[i])
        if opening:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if opening.group(1) == "python":
                fences.append((i + 1, i + 2, "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return fences


def seed_run(inline: tuple[InlineExpression, ...] = ()) -> PostRun:
    """The seed post's python fences, as the parse stage would hand them over."""
    post = "posts/" + SEED_POST.name
    snippets = tuple(
        Snippet(post, i, line, code_line, "python", source, SnippetOptions())
        for i, (line, code_line, source) in enumerate(python_fences(SEED_POST))
    )
    return PostRun(post, SEED_POST.parent, snippets, inline, uses_ray=True)


@pytest.fixture(scope="session")
def executor() -> Iterator[Executor]:
    """One execution engine (fork server, no Ray) shared by the session tests."""
    with Executor(ExecutionSettings(jobs=2, snippet_timeout=60)) as engine:
        yield engine


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[Executor]:
    """One execution engine with its Ray cluster, started once per test session."""
    with Executor(ExecutionSettings(jobs=2, snippet_timeout=120)) as engine:
        engine.start_ray()
        yield engine
