"""Build benchmark: raypress cold / no-change / one-edit builds, and Pelican for the ratio.

    python bench/bench_build.py [--posts 1000] [--pelican-posts 200] [--repeat 3] [--jobs N]

Every build is a separate process (``python -m raypress build --root DIR``, ``pelican
content -s pelicanconf.py -o output``), timed from outside, so the wall times include
interpreter start-up and imports; the time each tool prints for itself ("in-process") is
shown next to it. The corpus (bench/corpus.py) is written to ``bench/_work/`` (gitignored)
and left there for profiling. See bench/README.md for what each figure means.
Targets are printed for context only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import corpus as corpus_module

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
PROFILE_LINES = 25
CHILD_ENV = {**os.environ, "COLUMNS": "250"}  # Pelican's console wraps at the terminal width


@dataclass(frozen=True, slots=True)
class Run:
    wall: float  # seconds, measured around the child process
    cpu: float  # user + sys seconds of the child and the processes it waited for
    inner: float | None  # seconds, as the tool printed them (None: not found)
    stdout: str
    stderr: str


@dataclass(slots=True)
class Result:
    name: str
    posts: int
    runs: list[Run] = field(default_factory=list)

    @property
    def walls(self) -> list[float]:
        return [r.wall for r in self.runs]

    @property
    def cpus(self) -> list[float]:
        return [r.cpu for r in self.runs]

    @property
    def inners(self) -> list[float]:
        return [r.inner for r in self.runs if r.inner is not None]

    @property
    def said(self) -> str:
        """The tool's last line of output on its last run (its own summary)."""
        lines = [line for line in self.runs[-1].stdout.splitlines() if line.strip()]
        return " ".join(lines[-1].split()) if lines else "(no output)"


class BuildFailed(RuntimeError):
    pass


# ------------------------------------------------------------------------------ running


def run(
    command: Sequence[str | os.PathLike[str]], cwd: Path, inner: Callable[[str], float | None]
) -> Run:
    """Run one build as a child process; raise BuildFailed if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise BuildFailed(
            f"{' '.join(map(str, command))} (in {cwd}) exited {done.returncode}\n"
            f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return Run(wall, cpu, inner(done.stdout + "\n" + done.stderr), done.stdout, done.stderr)


def raypress_seconds(output: str) -> float | None:
    """The time raypress printed: "... in 1.86s (...)" or "... checked in 0.01s)"."""
    found = re.findall(r"\bin (\d+(?:\.\d+)?) ?s\b", output)
    return float(found[-1]) if found else None


def pelican_seconds(output: str) -> float | None:
    """The time Pelican printed: "Done: Processed 200 articles, ... in 2.42 seconds."."""
    found = re.findall(r"in (\d+(?:\.\d+)?)\s+seconds", " ".join(output.split()))
    return float(found[-1]) if found else None


def raypress_command(root: Path, jobs: int | None, *, profile: bool = False) -> list[str]:
    command = [PYTHON]
    if profile:
        command += ["-m", "cProfile", "-s", "cumtime"]
    command += ["-m", "raypress", "build", "--root", str(root)]
    return command + (["--jobs", str(jobs)] if jobs else [])


def pelican_base() -> list[str]:
    script = Path(PYTHON).parent / "pelican"  # the venv's console script, not resolved
    return [str(script)] if script.exists() else [PYTHON, "-m", "pelican"]


def pelican_command() -> list[str]:
    return [*pelican_base(), "content", "-s", "pelicanconf.py", "-o", "output"]


def make_cold(root: Path) -> None:
    """Remove everything a previous raypress build left: cache, output, staging folders."""
    for path in [root / ".raypress-cache", root / "_site", *root.glob("_site.*")]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def raypress_build(root: Path, jobs: int | None) -> Run:
    return run(raypress_command(root, jobs), root, raypress_seconds)


def check_posts(result: Result, expected: int, pattern: str) -> None:
    """Make sure the tool really built every post (e.g. Pelican skips .md without Markdown)."""
    text = " ".join((result.runs[-1].stdout + " " + result.runs[-1].stderr).split())
    found = re.search(pattern, text)
    if found and int(found.group(1)) != expected:
        raise BuildFailed(f"{result.name}: built {found.group(1)} posts, expected {expected}")


# ------------------------------------------------------------------------------ scenarios


def bench_raypress(
    corpus: corpus_module.Corpus,
    repeat: int,
    jobs: int | None,
    with_rebuilds: bool,
    progress: Callable[[str], None],
) -> list[Result]:
    root = corpus.raypress_root
    count = len(corpus.posts)
    cold = Result("raypress cold", count)
    for number in range(repeat):
        progress(f"raypress cold build, {count} posts ({number + 1}/{repeat})")
        make_cold(root)
        cold.runs.append(raypress_build(root, jobs))
    check_posts(cold, count, r"built (\d+) posts")
    if not with_rebuilds:
        return [cold]

    unchanged = Result("raypress rebuild, nothing changed", count)
    for number in range(repeat):
        progress(f"raypress rebuild, nothing changed ({number + 1}/{repeat})")
        unchanged.runs.append(raypress_build(root, jobs))

    edited = Result("raypress rebuild, 1 post edited", count)
    post = corpus.raypress_post(count // 2)
    for number in range(repeat):
        progress(f"raypress rebuild after editing {post.name} ({number + 1}/{repeat})")
        corpus_module.edit_post(post, number + 1)
        edited.runs.append(raypress_build(root, jobs))
    return [cold, unchanged, edited]


def bench_pelican(
    corpus: corpus_module.Corpus, repeat: int, progress: Callable[[str], None]
) -> Result:
    root = corpus.pelican_root
    result = Result("pelican cold", len(corpus.posts))
    for number in range(repeat):
        progress(f"pelican, {len(corpus.posts)} posts ({number + 1}/{repeat})")
        shutil.rmtree(root / "output", ignore_errors=True)
        shutil.rmtree(root / "cache", ignore_errors=True)
        result.runs.append(run(pelican_command(), root, pelican_seconds))
    check_posts(result, len(corpus.posts), r"Processed (\d+) articles?")
    return result


STAGES_SCRIPT = """
import json, sys
from pathlib import Path
from raypress.config import load_config
from raypress.commands.build import build
jobs = int(sys.argv[2]) or None
report = build(load_config(Path(sys.argv[1]), None, jobs=jobs))
stages = dict(getattr(report, "stage_seconds", {}) or {})
stages["total"] = report.seconds
print(json.dumps({"ok": report.ok, "stages": stages}))
"""


def stage_breakdown(
    corpus: corpus_module.Corpus, jobs: int | None
) -> list[tuple[str, dict[str, float]]]:
    """raypress's own per-stage timings (BuildReport.stage_seconds) for a cold build, a
    no-change rebuild and a one-edit rebuild, each in a fresh child process; [] if the
    API is not there."""
    root = corpus.raypress_root
    edited = corpus.raypress_post(len(corpus.posts) // 2)
    cases = (
        ("cold", make_cold),
        ("nothing changed", None),
        ("1 post edited", lambda _: corpus_module.edit_post(edited, 98)),
    )
    rows = []
    for name, prepare in cases:
        if prepare:
            prepare(root)
        done = subprocess.run(
            [PYTHON, "-c", STAGES_SCRIPT, str(root), str(jobs or 0)],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            data = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(f"  (stage breakdown unavailable: {done.stderr.strip()[-300:]})")
            return []
        rows.append((name, data["stages"]))
    return rows


def profile(corpus: corpus_module.Corpus, jobs: int | None) -> list[tuple[str, str]]:
    """Top of ``python -m cProfile -s cumtime -m raypress build`` for a cold build (as
    configured, then with --jobs 1 so that the parsing shows up in the profiled process),
    a no-change rebuild and a rebuild after one edit."""
    root = corpus.raypress_root
    edited = corpus.raypress_post(len(corpus.posts) // 2)
    cases = (  # --jobs 1 first: the no-change case must follow a build with the same options
        ("cold build (--jobs 1)", make_cold, 1),
        (f"cold build (--jobs {jobs or 'default'})", make_cold, jobs),
        ("rebuild, nothing changed", None, jobs),
        ("rebuild, 1 post edited", lambda _: corpus_module.edit_post(edited, 99), jobs),
    )
    tops = []
    for name, prepare, case_jobs in cases:
        if prepare:
            prepare(root)
        done = run(raypress_command(root, case_jobs, profile=True), root, raypress_seconds)
        lines = done.stdout.splitlines()
        start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
        header = next(
            (i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), start
        )
        tops.append((name, "\n".join(lines[start : header + 1 + PROFILE_LINES])))
    return tops


# ------------------------------------------------------------------------------ printing


def sources_stamp() -> list[tuple[str, int, int]]:
    """Size and mtime of raypress's own files: if they change during the run (someone is
    editing them), the figures mix two versions, and since raypress's files are inputs of
    its build stamp, a "no change" rebuild is then a full one."""
    rows = []
    for path in sorted((BENCH.parent / "raypress").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            stat = path.stat()
            rows.append((str(path), stat.st_size, stat.st_mtime_ns))
    return rows


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews timings."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine() -> list[str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    tools = ", ".join(
        f"{name} {version(name)}"
        for name in ("markdown-it-py", "mdit-py-plugins", "Pygments", "Jinja2")
    )
    return [
        f"machine: {os.cpu_count()} cores ({usable} usable), {cpu}, {platform.system()} "
        f"{platform.release()}",
        f"python:  {platform.python_implementation()} {platform.python_version()} ({PYTHON})",
        f"tools:   raypress {version('raypress')} ({tools}); "
        f"Pelican {version('pelican')} (Markdown {version('Markdown')})",
        f"load:    {load()} (1, 5, 15 min averages at the start)",
    ]


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.995 else f"{value * 1000:.0f} ms"


def table(results: list[Result]) -> list[str]:
    head = (
        "build",
        "posts",
        "runs",
        "wall best",
        "wall median",
        "in-process best",
        "in-process median",
        "CPU median",
        "per post",
    )
    rows = [head]
    for r in results:
        inner = r.inners
        per_post = min(r.walls) / r.posts * 1000 if "cold" in r.name else None
        rows.append(
            (
                r.name,
                f"{r.posts:,}",
                str(len(r.runs)),
                seconds(min(r.walls)),
                seconds(statistics.median(r.walls)),
                seconds(min(inner)) if inner else "?",
                seconds(statistics.median(inner)) if inner else "?",
                seconds(statistics.median(r.cpus)),
                f"{per_post:.1f} ms" if per_post is not None else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1000, help="raypress corpus size")
    parser.add_argument(
        "--pelican-posts",
        type=int,
        default=200,
        help="corpus size for the Pelican comparison (0: skip Pelican)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each build")
    parser.add_argument("--jobs", type=int, help="passed to raypress --jobs (default: its own)")
    parser.add_argument("--seed", type=int, default=corpus_module.DEFAULT_SEED)
    parser.add_argument(
        "--work",
        type=Path,
        default=BENCH / "_work",
        help="folder for the corpora (default: bench/_work)",
    )
    parser.add_argument(
        "--no-stages",
        dest="stages",
        action="store_false",
        help="skip the per-stage breakdown (one more cold, no-change and one-edit build)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"also print the top {PROFILE_LINES} cProfile lines (cumtime) of a "
        "cold build (default jobs and --jobs 1), a no-change rebuild and a "
        "one-edit rebuild",
    )
    args = parser.parse_args(argv)
    if args.posts < 1 or args.repeat < 1 or args.pelican_posts < 0:
        parser.error("--posts and --repeat must be at least 1, --pelican-posts at least 0")

    def progress(message: str) -> None:
        print(f"  ... {message}", file=sys.stderr, flush=True)

    sources = sources_stamp()
    for line in machine():
        print(line)
    print(f"jobs:    {args.jobs or 'raypress default (one per CPU)'}")

    progress(f"writing the corpus into {args.work}")
    big = corpus_module.write_corpus(
        args.work / f"corpus-{args.posts}",
        args.posts,
        args.seed,
        pelican=args.pelican_posts == args.posts,
    )
    small = None
    if args.pelican_posts:
        small = (
            big
            if args.pelican_posts == args.posts
            else corpus_module.write_corpus(
                args.work / f"corpus-{args.pelican_posts}", args.pelican_posts, args.seed
            )
        )
    posts = big.posts
    fences = sum(p.body.count("```") // 2 for p in posts)
    print(
        f"corpus:  {len(posts):,} posts, {big.words / len(posts):.0f} prose words and "
        f"{fences / len(posts):.0f} code fences per post (2 python, 1 bash, 1 other, 15-30 "
        f"lines), {big.raypress_bytes / 1e6:.1f} MB, seed {args.seed}, in {big.root}"
    )

    # Compile raypress's and Pelican's bytecode before the first timed run.
    subprocess.run([PYTHON, "-m", "raypress", "--version"], capture_output=True, check=False)
    if small is not None:
        subprocess.run([*pelican_base(), "--version"], capture_output=True, check=False)

    results: list[Result] = []
    try:
        results += bench_raypress(big, args.repeat, args.jobs, True, progress)
        if small is not None:
            if small is not big:
                results += bench_raypress(small, args.repeat, args.jobs, False, progress)
            results.append(bench_pelican(small, args.repeat, progress))
        stages = stage_breakdown(big, args.jobs) if args.stages else []
        tops = profile(big, args.jobs) if args.profile else []
    except BuildFailed as exc:
        print(f"\nbuild failed: {exc}", file=sys.stderr)
        return 1

    print()
    for line in table(results):
        print(line)
    print()
    print("what each tool said on its last run:")
    for r in results:
        print(f"  {r.name} ({r.posts:,}): {r.said}")

    if small is not None:
        by_name = {(r.name, r.posts): r for r in results}
        pelican = by_name[("pelican cold", len(small.posts))]
        ours = by_name[("raypress cold", len(small.posts))]
        wall = statistics.median(pelican.walls) / statistics.median(ours.walls)
        line = (
            f"\nPelican / raypress, cold build of {len(small.posts):,} posts: "
            f"{wall:.2f}x (median wall)"
        )
        if pelican.inners and ours.inners:
            inner = statistics.median(pelican.inners) / statistics.median(ours.inners)
            line += f", {inner:.2f}x (median in-process)"
        print(line)

    if stages:
        print("\nraypress stages (BuildReport.stage_seconds, in-process; one extra run each):")
        names = list(dict.fromkeys(k for _, s in stages for k in s))
        print("  " + " " * 16 + "".join(f"{n:>10}" for n in names))
        for label, values in stages:
            cells = "".join(f"{seconds(values[n]) if n in values else '':>10}" for n in names)
            print(f"  {label:<16}{cells}")

    print(
        "\ntargets (issue 2, for context, not asserted): cold build of 1,000 posts < 6 s on "
        "2 cores; no-change rebuild < 0.5 s"
    )
    print(f"load average at the end: {load()} (1, 5, 15 min)")
    if sources_stamp() != sources:
        print("warning: raypress/ changed during the run; the figures mix versions")
    for name, top in tops:
        print(
            f"\ncProfile, {name}, {len(posts):,} posts (main process only; "
            f"top {PROFILE_LINES} by cumtime):\n{top}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
