"""Golden snapshots of the example site: every post page, the index, feed.xml, sitemap.xml.

The repository's own ``posts/``, ``templates/`` and ``snippets/`` (the committed records of
the posts' results) are built with a fixed configuration and a fixed "now", rendering
from the records without running anything (``execute = false``, as ``--no-exec``), and
each page is compared byte for byte with ``tests/golden/``. Nothing is normalised: the
build is deterministic, and the pages show the frozen outputs and timings.

After an intended change to the posts, the theme or the rendering, refresh the snapshots
with::

    RAYPRESS_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

and review ``git diff tests/golden`` before committing it.
"""

from __future__ import annotations

import difflib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_publishing import EXAMPLE_POSTS, TEMPLATES

from raypress.commands.build import build
from raypress.config import load_config

GOLDEN = Path(__file__).parent / "golden"
SNIPPETS = EXAMPLE_POSTS.parent / "snippets"
UPDATE = os.environ.get("RAYPRESS_UPDATE_GOLDEN") == "1"
FIXED_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = """\
title = "raypress examples"
description = "Python and Ray snippets whose output and timings were really measured."
author = "The raypress authors"
url = "https://example.org"
execute = false
"""
REFRESH = "refresh with: RAYPRESS_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py"


def snapshot_names(site: Path) -> list[str]:
    """The built files that have a golden copy: post pages, index pages, feed, sitemap."""
    names = ["feed.xml", "sitemap.xml", "index.html"]
    names += [p.relative_to(site).as_posix() for p in sorted(site.glob("page/*/index.html"))]
    names += [
        p.relative_to(site).as_posix()
        for p in sorted(site.glob("[0-9][0-9][0-9][0-9]/**/index.html"))
    ]
    return names


def golden_names() -> list[str]:
    if not GOLDEN.is_dir():
        return []
    return sorted(p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example site built once for this module (and written to tests/golden/ on update)."""
    root = tmp_path_factory.mktemp("golden") / "project"
    shutil.copytree(TEMPLATES, root / "templates")
    shutil.copytree(EXAMPLE_POSTS, root / "posts")
    shutil.copytree(SNIPPETS, root / "snippets")
    (root / "site.toml").write_text(CONFIG, encoding="utf-8")
    report = build(load_config(root), now=FIXED_NOW)
    assert report.ok, "\n".join(map(str, report.problems))
    assert not report.unrecorded, f"posts without a record in snippets/: {report.unrecorded}"
    assert report.reused == len(list(EXAMPLE_POSTS.glob("*.md")))
    site = root / "_site"
    if UPDATE:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name in snapshot_names(site):
            target = GOLDEN / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(site / name, target)
    return site


def test_golden_files_cover_exactly_the_built_pages(example_site: Path) -> None:
    built = sorted(snapshot_names(example_site))
    assert golden_names() == built, f"the set of snapshot pages changed; {REFRESH}"


def test_every_example_post_has_a_golden_page(example_site: Path) -> None:
    posts = sorted(EXAMPLE_POSTS.glob("*.md"))
    pages = [n for n in golden_names() if n[:4].isdigit()]
    assert len(pages) == len(posts) >= 3


@pytest.mark.parametrize("name", golden_names() or ["(no golden files yet)"])
def test_page_matches_golden(example_site: Path, name: str) -> None:
    golden = GOLDEN / name
    built = example_site / name
    if UPDATE and not golden.is_file():
        pytest.skip("golden files were just written; run again without RAYPRESS_UPDATE_GOLDEN")
    assert golden.is_file(), f"no golden files in {GOLDEN}; {REFRESH}"
    assert built.is_file(), f"{name} was not built any more; {REFRESH}"
    expected, actual = golden.read_bytes(), built.read_bytes()
    if expected != actual:
        diff = difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(keepends=True),
            actual.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"tests/golden/{name}",
            tofile=f"_site/{name}",
        )
        lines = list(diff)
        shown = "".join(lines[:200])
        if len(lines) > 200:
            shown += f"... ({len(lines) - 200} more diff lines)\n"
        pytest.fail(f"{name} differs from its golden copy ({REFRESH}):\n{shown}", pytrace=False)


def test_two_builds_are_identical(tmp_path: Path, example_site: Path) -> None:
    """Determinism: a second build from scratch writes the same bytes (so no normalising)."""
    root = tmp_path / "again"
    shutil.copytree(TEMPLATES, root / "templates")
    shutil.copytree(EXAMPLE_POSTS, root / "posts")
    shutil.copytree(SNIPPETS, root / "snippets")
    (root / "site.toml").write_text(CONFIG, encoding="utf-8")
    assert build(load_config(root), now=FIXED_NOW).ok
    for name in snapshot_names(example_site):
        assert (root / "_site" / name).read_bytes() == (example_site / name).read_bytes(), name
