"""Fuzz the build with generated posts; print how many crashed it (the target is 0).

    python bench/fuzz_posts.py                     # 10,000 posts, seed 1
    python bench/fuzz_posts.py --posts 50000 --seed 7

Each post (random front matter, Markdown, fences of every shape, snippet options of every
type and range, control characters) goes through the stages a build runs on it in this
process: read, parse, plan (inputs and options). Every ``--batch`` posts also go through
the real command line as one project (``build --no-exec``). A crash is an exception
other than the SourceError that reports a problem, a traceback on the console, an exit
code other than 0 or 1, or a problem line that does not start with ``file[:line]:``.
Prints the crashes (the first few in full) and the rate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raypress.cli import main as cli  # noqa: E402
from raypress.config import load_config  # noqa: E402
from raypress.errors import SourceError  # noqa: E402
from raypress.freeze.inputs import FileHashes, post_inputs  # noqa: E402
from raypress.freeze.run_plan import plan_runs  # noqa: E402
from raypress.publish.markdown import parse_body  # noqa: E402
from raypress.publish.posts import read_post  # noqa: E402
from raypress.publish.reading import available_layouts, markdown_settings  # noqa: E402

PROBLEM = re.compile(r"^[^\n]+?(:\d+)?: error: .+")
KEYS = (
    "title", "date", "updated", "tags", "categories", "layout", "permalink", "slug", "draft",
    "timeout", "execute", "ray", "deps", "description", "author", "excerpt", "published",
)  # fmt: skip
OPTIONS = ("label", "eval", "echo", "output", "error", "timeout", "repeat", "deps", "compare")
WEIRD = (
    "\x00", "\x1b[2J", "\r", "\u202e", "\ufeff", "é", "😀", ":", "#", "'", '"', "{", "}",
    "[", "]", "|", ">", "&", "*", "!", "%", "@", "`", "~", "---", "...", "\\", "\t",
)  # fmt: skip


class Generator:
    """Random posts from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def word(self) -> str:
        r = self.random
        pieces = [r.choice(WEIRD) if r.random() < 0.2 else r.choice("abcxyz0129 ") for _ in
                  range(r.randint(0, 12))]  # fmt: skip
        return "".join(pieces)

    def scalar(self) -> str:
        r = self.random
        return r.choice(
            [
                lambda: self.word(),
                lambda: str(r.randint(-(2**70), 2**70)),
                lambda: r.choice(["true", "false", "null", "~", "yes", "no", "on"]),
                lambda: r.choice([".nan", ".inf", "-.inf", "1e400", "-0", "0x1f", "1_000"]),
                lambda: r.choice(["2025-01-01", "2025-02-30", "2025-01-01T25:00", "2025"]),
                lambda: f"[{self.word()}, {self.word()}]",
                lambda: f"{{a: {self.word()}}}",
                lambda: f'"{self.word()}"',
                lambda: "|\n  " + self.word(),
            ]
        )()

    def option(self) -> str:
        r = self.random
        if r.random() < 0.5:  # a value of the right kind, in or out of range
            return r.choice(["true", "false", "3", "0", "-1", "1e9", "strict", "loose", "[a.csv]"])
        return self.scalar()

    def front_matter(self) -> str:
        r = self.random
        if r.random() < 0.5:  # a plausible one: most posts of a real site read cleanly
            lines = [f"title: post {r.randint(0, 99)}", "date: 2025-01-0" + str(r.randint(1, 9))]
            lines += [f"{r.choice(KEYS[2:])}: {self.scalar()}"] if r.random() < 0.3 else []
            return "---\n" + "\n".join(lines) + "\n---\n"
        keys = [r.choice(KEYS) if r.random() < 0.8 else self.word() for _ in range(r.randint(0, 6))]
        lines = [f"{key}: {self.scalar()}" for key in keys]
        end = "---" if r.random() < 0.9 else r.choice(["", "...", "--", "----"])
        return "---\n" + "\n".join(lines) + f"\n{end}\n"

    def fence(self) -> str:
        r = self.random
        char = r.choice("`~")
        size = r.randint(3, 6)
        language = r.choice(["python", "py", "python3", "{python}", "bash", "", "text", "pyhton"])
        options = [f"#| {r.choice(OPTIONS)}: {self.option()}" for _ in range(r.randint(0, 3))]
        code = [self.word() for _ in range(r.randint(0, 4))]
        closing = r.choice([char * size, char * (size + 1), char * (size - 1), "", "```"])
        indent = r.choice(["", "> ", "  ", "- ", "    "])
        if r.random() < 0.6:  # most fences are well formed
            closing, indent = char * size, ""
        lines = [char * size + language, *options, *code, closing]
        return "\n".join(indent + line for line in lines)

    def block(self) -> str:
        r = self.random
        return r.choice(
            [
                lambda: self.word(),
                lambda: "#" * r.randint(1, 7) + " " + self.word(),
                lambda: f"Inline `{{python}} {self.word()}` here.",
                lambda: f"> {self.word()}\n> {self.fence()}",
                lambda: f"- {self.word()}\n  {self.fence()}",
                lambda: "<!--more-->",
                lambda: f"<div>{self.word()}</div>",
                lambda: f"[{self.word()}]({self.word()})",
                lambda: self.fence(),
            ]
        )()

    def post(self) -> str:
        r = self.random
        head = self.front_matter() if r.random() < 0.85 else ""
        return head + "\n" + "\n\n".join(self.block() for _ in range(r.randint(0, 8))) + "\n"


def stages(path: Path, config: object, layouts: frozenset[str]) -> str:
    """The stages a build runs on one post; how it ended: "refused" (a SourceError, the
    problem reported), "problems" (parsed, with problems), "clean" or "runs snippets"."""
    try:
        post = read_post(path, config, layouts)  # type: ignore[arg-type]
        body = parse_body(post, markdown_settings(config))  # type: ignore[arg-type]
    except SourceError:
        return "refused"
    runs = plan_runs([post], {post.source: body}, config)  # type: ignore[arg-type]
    _inputs, problems, _ = post_inputs(post, body, config, FileHashes())  # type: ignore[arg-type]
    if body.problems or problems:
        return "problems"
    return "runs snippets" if runs else "clean"


def cli_crash(root: Path) -> str | None:
    """Build ``root`` with the real command line; why it crashed, or None."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli(["build", "--root", str(root), "--no-exec", "--jobs", "1"])
    except BaseException:  # a crash is what this script counts
        return traceback.format_exc()
    text = err.getvalue()
    if code not in (0, 1) or "Traceback" in text + out.getvalue():
        return f"exit {code}\n{text}"
    bad = [
        line
        for line in text.splitlines()
        if not PROBLEM.match(line) and not line.startswith(("build failed: ", "warning: "))
    ]
    return f"unexpected console lines: {bad[:3]}" if bad else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=250, help="posts per command-line build")
    args = parser.parse_args()
    generator = Generator(args.seed)
    crashes: list[str] = []
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "site"
        shutil.copytree(ROOT / "templates", root / "templates")
        (root / "site.toml").write_text('title = "fuzz"\n')
        config = load_config(root)
        layouts = available_layouts(config)
        done = 0
        while done < args.posts:
            posts = root / "posts"
            shutil.rmtree(posts, ignore_errors=True)
            posts.mkdir()
            for number in range(min(args.batch, args.posts - done)):
                path = posts / f"2025-01-01-p{number:05d}.md"
                text = generator.post()
                path.write_bytes(text.encode("utf-8", "surrogatepass"))
                try:
                    outcome = stages(path, config, layouts)
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                except Exception:  # a crash is what this script counts
                    crashes.append(f"{text!r}\n{traceback.format_exc()}")
                done += 1
            crash = cli_crash(root)
            if crash:
                crashes.append(crash)
            print(f"\r{done:,} posts, {len(crashes)} crashes", end="", file=sys.stderr)
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    for crash in crashes[:5]:
        print("--- crash\n" + crash)
    print(", ".join(f"{count:,} {name}" for name, count in sorted(outcomes.items())))
    print(f"fuzzed {done:,} generated posts (seed {args.seed}) in {seconds:.0f} s: "
          f"{len(crashes)} crashes")  # fmt: skip
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
