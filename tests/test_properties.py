"""Property tests: whatever the posts hold, a build ends with exit 0 or 1, and every
problem is one ``file:line: error: ...`` line; never a traceback.

Random front matter, Markdown, fences and snippet options (``post_strategies``) are built
by the real command line in this process (``--no-exec``: the parse and plan stages, where
the options are checked); a smaller set also runs its snippets, random and broken ones.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from post_strategies import post_file

from raypress.cli import main

REPO = Path(__file__).resolve().parents[1]
PROBLEM = re.compile(r"^[^\n]+?(:\d+)?: error: .+")
SUMMARY = re.compile(r"^(build failed: |warning: |\d+ snippet problems?: )")
CODE = st.sampled_from(
    [
        "print('hello')",
        "1 / 0",
        "x = (",
        "import os\nos._exit(3)",
        "raise SystemExit(2)",
        "while True:\n    pass",
        "print('\\x1b[2J' * 3)",
        "import sys\nsys.stderr.write('e' * 200_000)",
        "def f():\n    return f()\nf()",
    ]
)


def build(posts: list[str], *flags: str) -> tuple[int, str, str]:
    """Build a fresh project holding ``posts``; exit code, stdout, stderr."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        root.chmod(0o755)
        shutil.copytree(REPO / "templates", root / "templates")
        (root / "posts").mkdir()
        (root / "site.toml").write_text('title = "random"\nsnippet_timeout = 3\njobs = 2\n')
        for number, text in enumerate(posts):
            path = root / "posts" / f"2025-01-{number + 1:02d}-random.md"
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["build", "--root", str(root), *flags])
        return code, out.getvalue(), err.getvalue()


def check(code: int, out: str, err: str) -> None:
    assert code in (0, 1), (code, out, err)
    assert "Traceback" not in out + err, err
    for line in err.splitlines():
        assert PROBLEM.match(line) or SUMMARY.match(line), line
    if code == 1:
        assert any(PROBLEM.match(line) for line in err.splitlines()), err


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(post_file(), min_size=1, max_size=3))
def test_random_posts_build_or_fail_with_file_and_line(posts: list[str]) -> None:
    check(*build(posts, "--no-exec"))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(post_file(CODE), min_size=1, max_size=2))
def test_random_posts_that_run_build_or_fail_with_file_and_line(posts: list[str]) -> None:
    check(*build(posts))
