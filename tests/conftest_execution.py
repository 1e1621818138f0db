"""Helpers and fixtures for the execution tests (imported by conftest.py's execution block)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from raypress.commands.build import post_run_for_file
from raypress.config import load_config
from raypress.execution import ExecutionSettings, InlineExpression, PostRun
from raypress.execution.model import Snippet, SnippetOptions
from raypress.execution.pool import Executor

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


def seed_run(inline: tuple[InlineExpression, ...] | None = None) -> PostRun:
    """The seed post's run exactly as the build makes it (its own inline expressions
    unless ``inline`` replaces them)."""
    run = post_run_for_file(SEED_POST, load_config(ROOT))
    assert run is not None and run.uses_ray
    return run if inline is None else dataclasses.replace(run, inline=inline)


@pytest.fixture(scope="session")
def executor() -> Iterator[Executor]:
    """One execution engine (fork server, no Ray) shared by the session tests."""
    with Executor(ExecutionSettings(jobs=2, snippet_timeout=60, project_root=ROOT)) as engine:
        yield engine


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[Executor]:
    """One execution engine for the Ray tests: each post gets a fresh cluster, and one
    for a plain ``ray.init()`` is kept started ahead (as ``serve`` does)."""
    settings = ExecutionSettings(jobs=2, snippet_timeout=120, project_root=ROOT, ray_keep_warm=True)
    with Executor(settings) as engine:
        engine.keep_cluster_ready()
        yield engine
