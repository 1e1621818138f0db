"""Bad input: each case is refused with exit code 1 and one clear line on stderr naming
``file:line`` and what to do, every problem of a build is reported, and the previous
``_site/`` is left exactly as it was (byte for byte, nothing left beside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest_publishing import (
    TEMPLATES,
    Project,
    eject,
    post_text,
    python_command,
    run_command,
)

GOOD_POST = post_text("Hello, world. This post is fine.\n", title="Good", date="2024-01-01")


@pytest.fixture
def built(project: Project) -> Iterator[Project]:
    """A project with one good post whose site has been built successfully."""
    project.post("2024-01-01-good.md", GOOD_POST)
    project.build_ok()
    yield project


@dataclass(frozen=True)
class Expected:
    """One problem line: where it points (``posts/x.md:4``) and words it must contain."""

    where: str
    words: tuple[str, ...]


def expect(where: str, *words: str) -> Expected:
    return Expected(where, words)


def assert_refused(project: Project, *expected: Expected) -> None:
    """Build (the site was built before, then bad input added): exit 1, exactly the expected
    problem lines, and the old _site/ untouched."""
    before = project.tree()
    result = project.build()
    assert result.code == 1, str(result)
    assert result.out == "", str(result)
    lines = result.problem_lines
    assert len(lines) == len(expected), f"expected {len(expected)} problem line(s):\n{result.err}"
    for item in expected:
        matching = [line for line in lines if line.startswith(f"{item.where}: error: ")]
        assert len(matching) == 1, (
            f"no single line starting '{item.where}: error:' in:\n{result.err}"
        )
        for word in item.words:
            assert word.lower() in matching[0].lower(), f"{word!r} missing from: {matching[0]}"
    assert result.err_lines[-1].startswith("build failed:"), result.err
    assert project.tree() == before, "the previous _site/ changed"
    assert project.leftovers() == []


# -- front matter ------------------------------------------------------------------------

FRONT_MATTER_CASES = {
    "malformed_yaml": (
        "---\ntitle: a: b\ndate: 2024-01-02\n---\n\nBody.\n",
        expect("posts/bad.md:2", "malformed YAML", "fix the YAML"),
    ),
    "malformed_yaml_unclosed_list": (
        "---\ntitle: Bad\ndate: 2024-01-02\ntags: [a, b\n---\n\nBody.\n",
        expect("posts/bad.md:4", "malformed YAML", "fix the YAML"),
    ),
    "front_matter_is_a_list": (
        "---\n- title\n- date\n---\n\nBody.\n",
        expect("posts/bad.md:2", "must be a mapping", "key: value"),
    ),
    "front_matter_is_a_string": (
        "---\njust some words\n---\n\nBody.\n",
        expect("posts/bad.md:2", "must be a mapping", "key: value"),
    ),
    "unclosed_front_matter": (
        "---\ntitle: Bad\ndate: 2024-01-02\n\nBody without a closing line.\n",
        expect("posts/bad.md:1", "never closed", "add a line '---'"),
    ),
    "missing_date": (
        "---\ntitle: Bad\n---\n\nBody.\n",
        expect("posts/bad.md:1", "missing date", "date: YYYY-MM-DD"),
    ),
    "invalid_date_word": (
        "---\ntitle: Bad\ndate: yesterday\n---\n\nBody.\n",
        expect("posts/bad.md:3", "invalid date", "YYYY-MM-DD"),
    ),
    "invalid_date_month_13": (
        "---\ntitle: Bad\ndate: 2024-13-45\n---\n\nBody.\n",
        expect("posts/bad.md:3", "invalid date", "2024-13-45", "YYYY-MM-DD"),
    ),
    "invalid_date_february_30": (
        "---\ntitle: Bad\ntags: [a]\nupdated: 2024-02-30\n---\n\nBody.\n",
        expect("posts/bad.md:4", "invalid date", "YYYY-MM-DD"),
    ),
    "invalid_date_time_zone": (
        "---\ntitle: Bad\ndate: 2024-01-01 10:00:00 +25:00\n---\n\nBody.\n",
        expect("posts/bad.md:3", "invalid date", "YYYY-MM-DD"),
    ),
    "front_matter_nested_too_deeply": (
        "---\ntitle: Bad\ndate: 2024-01-02\nextra: " + "[" * 20_000 + "\n---\n\nBody.\n",
        expect("posts/bad.md:4", "too deeply", "flatten"),
    ),
    "slug_with_dot_dot": (
        "---\ntitle: Bad\ndate: 2024-01-02\nslug: ../../outside\n---\n\nBody.\n",
        expect("posts/bad.md:4", "slug", "one path segment"),
    ),
    "permalink_with_dot_dot": (
        "---\ntitle: Bad\ndate: 2024-01-02\npermalink: /../../x/\n---\n\nBody.\n",
        expect("posts/bad.md:4", "permalink", "'..'", "/notes/my-post/"),
    ),
    "permalink_protocol_relative": (
        "---\ntitle: Bad\ndate: 2024-01-02\npermalink: //evil/\n---\n\nBody.\n",
        expect("posts/bad.md:4", "permalink", "protocol-relative", "/notes/my-post/"),
    ),
    "permalink_windows_drive": (
        "---\ntitle: Bad\ndate: 2024-01-02\npermalink: C:/Windows/x/\n---\n\nBody.\n",
        expect("posts/bad.md:4", "permalink", "/notes/my-post/"),
    ),
    "permalink_backslashes": (
        "---\ntitle: Bad\ndate: 2024-01-02\npermalink: '/..\\..\\x\\'\n---\n\nBody.\n",
        expect("posts/bad.md:4", "permalink", "backslash", "/notes/my-post/"),
    ),
    "permalink_percent_encoded_traversal": (  # Jekyll's test post permalink-traversal.md
        "---\ntitle: Bad\ndate: 2024-01-02\npermalink: /%2e%2e/%2e%2e/%2e%2e/baddie.html\n---\n",
        expect("posts/bad.md:4", "permalink", "decoded: '/../../../baddie.html'", "'..'"),
    ),
    "permalink_percent_escape_not_utf8": (
        "---\ntitle: Bad\ndate: 2024-01-02\npermalink: /caf%e9/\n---\n\nBody.\n",
        expect("posts/bad.md:4", "permalink", "not UTF-8"),
    ),
    "title_is_a_mapping": (
        "---\ntitle: {text: Bad}\ndate: 2024-01-02\n---\n\nBody.\n",
        expect("posts/bad.md:2", "'title' must be text"),
    ),
    "draft_is_not_a_boolean": (
        "---\ntitle: Bad\ndate: 2024-01-02\ndraft: maybe\n---\n\nBody.\n",
        expect("posts/bad.md:4", "'draft' must be true or false"),
    ),
}


@pytest.mark.parametrize("case", FRONT_MATTER_CASES)
def test_bad_front_matter_is_refused(built: Project, case: str) -> None:
    text, expected = FRONT_MATTER_CASES[case]
    built.post("bad.md", text)
    assert_refused(built, expected)


def test_non_utf8_post_names_the_line_of_the_bad_byte(built: Project) -> None:
    text = post_text("First line.\n\nCaf\xe9 au lait.\n", title="Bad", date="2024-01-02")
    line = text.split("\n").index("Caf\xe9 au lait.") + 1
    built.post("bad.md", text.encode("latin-1"))
    assert_refused(
        built, expect(f"posts/bad.md:{line}", "not valid UTF-8", "save the file as UTF-8")
    )


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!<tag:yaml.org,2002:python/object/apply:os.system>",
        "!!python/object/new:os.system",
    ],
)
def test_python_yaml_tag_is_refused_and_never_run(built: Project, tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "command-was-run"
    text = f"---\ntitle: Bad\ndate: 2024-01-02\nextra: {tag} ['touch {marker}']\n---\n\nBody.\n"
    built.post("bad.md", text)
    assert_refused(built, expect("posts/bad.md:4", "refused", "remove the tag"))
    assert not marker.exists(), "the YAML tag ran a command"


def test_custom_yaml_tag_is_refused(built: Project) -> None:
    built.post("bad.md", "---\ntitle: Bad\ndate: 2024-01-02\nx: !shell ls\n---\n\nBody.\n")
    assert_refused(built, expect("posts/bad.md:4", "tag", "fix the YAML"))


# -- duplicates --------------------------------------------------------------------------


def test_two_posts_with_the_same_url_are_refused(built: Project) -> None:
    built.post(
        "2024-01-05-other.md",
        post_text("Other.\n", title="Other", date="2024-01-05", permalink="/2024/01/01/good/"),
    )
    before = built.tree()
    result = built.build()
    assert result.code == 1
    assert result.problem_lines, result.err
    for line in result.problem_lines:  # every line names both posts and the shared URL
        assert "posts/2024-01-05-other.md" in line and "posts/2024-01-01-good.md" in line
        assert "2024/01/01/good/" in line
    assert built.tree() == before
    assert built.leftovers() == []


def test_duplicate_url_is_one_line_naming_the_permalink_line(built: Project) -> None:
    built.post(
        "2024-01-05-other.md",
        post_text("Other.\n", title="Other", date="2024-01-05", permalink="/2024/01/01/good/"),
    )
    assert_refused(
        built, expect("posts/2024-01-05-other.md:4", "posts/2024-01-01-good.md", "permalink")
    )


def test_same_url_from_file_names_alone_is_refused(built: Project) -> None:
    built.post("2024-01-01-good.markdown", GOOD_POST)
    before = built.tree()
    result = built.build()
    assert result.code == 1
    assert any(
        "posts/2024-01-01-good.markdown" in line and "posts/2024-01-01-good.md" in line
        for line in result.problem_lines
    ), result.err
    assert built.tree() == before


# -- paths ---------------------------------------------------------------------------------


def test_absolute_filesystem_permalink_stays_inside_the_site(built: Project) -> None:
    """``permalink: /etc/passwd`` is a URL of the site, so it is written under _site/."""
    built.post(
        "2024-01-05-etc.md",
        post_text("Inside.\n", title="Etc", date="2024-01-05", permalink="/etc/passwd"),
    )
    built.build_ok()
    assert "Inside." in built.page("etc/passwd/")
    assert not (built.root / "etc").exists()


def test_symlinked_post_outside_the_project_is_refused(built: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "2024-01-03-secret.md"
    secret.write_text(post_text("TOP SECRET words.\n", title="Secret"), encoding="utf-8")
    (built.root / "posts" / "2024-01-03-link.md").symlink_to(secret)
    (built.root / "posts" / "linked-folder").symlink_to(outside, target_is_directory=True)
    assert_refused(
        built,
        expect("posts/2024-01-03-link.md", "symlink", "outside the project", "refused"),
        expect("posts/linked-folder", "symlink", "outside the project", "refused"),
    )
    assert not any(b"TOP SECRET" in data for data in built.tree().values())


def test_symlink_in_static_outside_the_project_is_refused(built: Project, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET", encoding="utf-8")
    built.write("static/ok.txt", "fine")
    (built.root / "static" / "secret.txt").symlink_to(secret)
    assert_refused(built, expect("static/secret.txt", "symlink", "outside the project", "refused"))
    assert not (built.site / "secret.txt").exists()
    assert not (built.site / "ok.txt").exists()  # nothing of the failed build was written


def test_symlink_inside_the_project_is_followed(built: Project) -> None:
    built.write("static/ok.txt", "fine")
    (built.root / "static" / "alias.txt").symlink_to(built.root / "static" / "ok.txt")
    built.build_ok()
    assert (built.site / "alias.txt").read_text(encoding="utf-8") == "fine"


def test_named_pipe_in_static_is_refused(built: Project) -> None:
    (built.root / "static").mkdir()
    os.mkfifo(built.root / "static" / "pipe")
    assert_refused(built, expect("static/pipe", "not a regular file", "refused"))


# -- templates -----------------------------------------------------------------------------


def test_template_syntax_error_names_the_template_line(built: Project) -> None:
    built.write("templates/x.html", '{% extends "base.html" %}\n{% block content %}\n{% if %}\n')
    built.post("bad.md", post_text("Body.\n", title="X", date="2024-01-02", layout="x"))
    assert_refused(built, expect("templates/x.html:3", "template syntax error"))


def test_syntax_error_in_the_post_template_names_its_line(built: Project) -> None:
    template = eject(built.root, "post.html")
    lines = template.read_text(encoding="utf-8").splitlines()
    lines.insert(2, "{{ post.title | }}")
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_refused(built, expect("templates/post.html:3", "template syntax error"))


def test_template_error_at_render_time_leaves_the_site_intact(built: Project) -> None:
    """An 'interrupted' build: a template raises while rendering; nothing is swapped in."""
    built.write(
        "templates/boom.html",
        '{% extends "base.html" %}\n{% block content %}\n{{ 1 // 0 }}\n{% endblock %}\n',
    )
    built.post("boom.md", post_text("Body.\n", title="Boom", date="2024-01-02", layout="boom"))
    assert_refused(built, expect("templates/boom.html:3", "ZeroDivisionError"))


# -- snippet options -----------------------------------------------------------------------

SNIPPET_POST = """---
title: Snippets
date: 2024-01-02
---

Some text.

```python
#| label: first
#| {OPTION}
print("hello")
```
"""
OPTION_LINE = 10


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("eval: [false", ("not valid YAML", "#| key: value")),
        ("colour: red", ("unknown snippet option 'colour'", "known options:")),
        ("eval: maybe", ("'eval' must be bool",)),
        ("timeout: soon", ("'timeout' must be",)),
        ("repeat: 0", ("'repeat' must be at least 1",)),
    ],
    ids=["invalid_yaml", "unknown_option", "bad_type_bool", "bad_type_number", "bad_value"],
)
def test_bad_snippet_options_are_refused(built: Project, option: str, words: tuple[str]) -> None:
    built.post("bad.md", SNIPPET_POST.replace("{OPTION}", option))
    assert_refused(built, expect(f"posts/bad.md:{OPTION_LINE}", *words))


def test_snippet_option_that_is_not_a_date_is_refused(built: Project) -> None:
    built.post("bad.md", SNIPPET_POST.replace("{OPTION}", "deps: 2024-13-45"))
    assert_refused(built, expect(f"posts/bad.md:{OPTION_LINE}", "2024-13-45", "quote the value"))


# -- several problems at once --------------------------------------------------------------


def test_every_bad_post_of_a_build_is_reported(built: Project) -> None:
    built.post("a-yaml.md", "---\ntitle: [\n---\n\nBody.\n")
    built.post("b-nodate.md", "---\ntitle: No date\n---\n\nBody.\n")
    built.post("c-latin1.md", "---\ntitle: x\ndate: 2024-01-02\n---\n\n\xe9\n".encode("latin-1"))
    built.post("2024-01-02.md", "---\ntitle: x\n---\n")  # a date, no slug
    built.post("e-snippet.md", SNIPPET_POST.replace("{OPTION}", "colour: red"))
    built.post("f-slug.md", "---\ntitle: x\ndate: 2024-01-02\nslug: a/b\n---\n")
    assert_refused(
        built,
        expect("posts/2024-01-02.md:1", "has a date but no slug", "2024-01-02-some-title.md"),
        expect("posts/a-yaml.md:2", "malformed YAML"),
        expect("posts/b-nodate.md:1", "missing date"),
        expect("posts/c-latin1.md:6", "UTF-8"),
        expect(f"posts/e-snippet.md:{OPTION_LINE}", "unknown snippet option"),
        expect("posts/f-slug.md:4", "slug"),
    )


def test_bad_post_and_bad_template_are_both_reported(built: Project) -> None:
    built.post("bad.md", "---\ntitle: x\n---\n")
    template = eject(built.root, "index.html")
    template.write_text("{% for %}\n", encoding="utf-8")
    assert_refused(
        built,
        expect("posts/bad.md:1", "missing date"),
        expect("templates/index.html:1", "template syntax error"),
    )


def test_a_failed_build_then_a_fixed_one_publishes(built: Project) -> None:
    built.post("2024-02-01-later.md", "---\ntitle: Later\ndate: nope\n---\n\nLater words.\n")
    assert built.build().code == 1
    built.post("2024-02-01-later.md", "---\ntitle: Later\ndate: 2024-02-01\n---\n\nLater words.\n")
    built.build_ok()
    assert "Later words." in built.page("2024/02/01/later/")


# -- pathological Markdown (1 MB) ----------------------------------------------------------

MEGABYTE = 1_000_000


def nested_list(size: int) -> str:
    lines, total, depth = [], 0, 0
    while total < size:
        line = "  " * depth + "- item\n"
        lines.append(line)
        total += len(line)
        depth += 1
    return "".join(lines)


PATHOLOGICAL = {
    "nested_blockquotes": lambda: ">" * MEGABYTE + " deep\n",
    "nested_blockquote_lines": lambda: "".join(">" * d + " q\n" for d in range(1, 1400)),
    "open_brackets": lambda: "[" * MEGABYTE + "\n",
    "emphasis_run": lambda: "*" * MEGABYTE + "\n",
    "emphasis_alternating": lambda: "*a _b " * (MEGABYTE // 6) + "\n",
    "backticks": lambda: "`" * MEGABYTE + "\n",
    "backtick_runs": lambda: "".join("`" * n + " " for n in range(1, 1400)),
    "table_row": lambda: "| a | b |\n|---|---|\n" + "| x " * (MEGABYTE // 4) + "|\n",
    "nested_lists": lambda: nested_list(MEGABYTE),
    "angle_brackets": lambda: "<" * MEGABYTE + "\n",  # was quadratic (gfm autolink)
    # 200 KB is enough: unique heading ids were quadratic (about 8 minutes for this post)
    "repeated_headings": lambda: "# x\n" * (MEGABYTE // 20),
}
HANG_GUARD_SECONDS = 60


def _build_pathological(
    kind: str, root: Path
) -> tuple[Path, subprocess.CompletedProcess[str] | None, float]:
    root.mkdir(parents=True)
    (root / "site.toml").write_text('title = "x"\n', encoding="utf-8")
    posts = root / "posts"
    posts.mkdir()
    head = "---\ntitle: Pathological\ndate: 2024-01-01\n---\n\n"
    (posts / "2024-01-01-huge.md").write_text(head + PATHOLOGICAL[kind](), encoding="utf-8")
    shutil.copytree(TEMPLATES, root / "templates")
    started = time.monotonic()
    try:
        result = run_command(
            python_command("-m", "raypress", "build", "--root", str(root)),
            cwd=root,
            timeout=HANG_GUARD_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return root, None, time.monotonic() - started
    return root, result, time.monotonic() - started


@pytest.fixture(scope="module")
def pathological_builds(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str] | None, float]]:
    """Build every selected pathological case, two at a time (one per core)."""
    selected = {
        item.callspec.params["kind"]
        for item in request.session.items
        if item.module is request.module
        and hasattr(item, "callspec")
        and "kind" in item.callspec.params
    }
    base = tmp_path_factory.mktemp("pathological")
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        futures = {kind: pool.submit(_build_pathological, kind, base / kind) for kind in selected}
        return {kind: future.result() for kind, future in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", PATHOLOGICAL)
def test_pathological_post_renders_or_is_refused_without_hanging(
    pathological_builds: dict[str, tuple[Path, subprocess.CompletedProcess[str] | None, float]],
    kind: str,
) -> None:
    root, result, seconds = pathological_builds[kind]
    assert result is not None, f"{kind}: the build did not end within {HANG_GUARD_SECONDS}s"
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    if result.returncode == 0:
        assert "built 1 post" in result.stdout, result.stdout
        page = root / "_site" / "2024" / "01" / "01" / "huge" / "index.html"
        assert page.stat().st_size > 0
    else:
        assert result.returncode == 1, result.stderr[-2000:]
        first = result.stderr.splitlines()[0]
        assert first.startswith("posts/2024-01-01-huge.md"), first
    print(f"{kind}: exit {result.returncode} in {seconds:.1f}s", file=sys.stderr)
