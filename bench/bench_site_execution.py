"""Benchmark whole builds that execute snippets: the targets of issue 3, printed, not asserted.

    python bench/bench_site_execution.py [--repeat 3] [--jobs 2] [--work DIR]

(a) 20 non-Ray posts of 4 dependent NumPy snippets each: a cold ``python -m raypress build
    --jobs 2`` timed from outside (cache, ``_site`` and the recorded results in ``snippets/``
    removed first), best and median of N, plus the build's own per-stage times
    (``pipeline.build(...).stage_seconds``, in-process). Target: under 1.0 s.
(b) The seed post alone, cold, the start of the build's Ray cluster included. Target: 8 s.
(c) The seed post and a second Ray post (a copy of it) in one build: what the second adds
    beyond its snippets' own time. Measured two ways: per post, ``PostExecution.wall_s``
    minus the sum of its ``SnippetResult.wall_s`` (the execute stage run in-process through
    ``raypress.freeze.run_plan.run_posts``, with ``--jobs 1`` and with ``--jobs N``); and per build,
    the cold build of both minus the cold build of the seed alone minus the second post's
    snippet total from that build's /timings/ page. Target: under 1.5 s.

Every build is cold: a fresh fork server and, for Ray posts, a fresh cluster.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from raypress.commands.build import build, post_run_for_file
from raypress.config import load_config
from raypress.freeze.run_plan import run_posts

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "posts" / "2025-10-27-using-the-ray-library.md"
SECOND_NAME = "2025-10-28-using-the-ray-library-again.md"
NUMPY_POSTS = 20
NUMPY_SNIPPETS = (  # each uses what the one before it defined
    "import numpy as np\nrng = np.random.default_rng({seed})\nx = rng.normal(size=1000)\n",
    "y = np.cumsum(x)\ny[-1]\n",
    "m = y.reshape(10, 100).mean(axis=1)\nprint(m.round(2))\n",
    "float(m.std())\n",
)
TARGETS = {"numpy": 1.0, "seed": 8.0, "second": 1.5}  # seconds, from the issue


@dataclass(frozen=True, slots=True)
class Timed:
    """One cold build run as a subprocess."""

    wall: float  # measured around the process
    inner: float | None  # the "in X.XXs" the build printed
    cluster: float | None  # "Ray cluster ... started in X s", if one was started
    stdout: str


# -- projects --------------------------------------------------------------------------------


def new_project(folder: Path) -> Path:
    """An empty project: the repository's theme and a site.toml."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "posts").mkdir(parents=True)
    shutil.copytree(ROOT / "templates", folder / "templates")
    (folder / "site.toml").write_text(
        'title = "bench"\nurl = "https://bench.example.org"\n', encoding="utf-8"
    )
    return folder


def numpy_project(folder: Path) -> Path:
    """20 posts of prose and 4 dependent NumPy snippets each."""
    root = new_project(folder)
    for i in range(NUMPY_POSTS):
        fences = "\n".join(
            f"Step {n + 1}:\n\n```python\n{code.format(seed=i)}```\n"
            for n, code in enumerate(NUMPY_SNIPPETS)
        )
        text = (
            f"---\ntitle: NumPy walk {i}\ndate: 2025-01-{i + 1:02d}\ntags: [numpy]\n---\n\n"
            f"A random walk, summarised in a few steps.\n\n{fences}"
        )
        (root / "posts" / f"2025-01-{i + 1:02d}-numpy-walk-{i}.md").write_text(text, "utf-8")
    return root


def ray_project(folder: Path, second: bool) -> Path:
    """The seed post, and with ``second`` a copy of it dated the day after."""
    root = new_project(folder)
    shutil.copy2(SEED, root / "posts" / SEED.name)
    if second:
        text = SEED.read_text(encoding="utf-8")
        text = text.replace('title: "Using the ray library"', 'title: "Using ray, again"', 1)
        text = re.sub(r"^date: .*$", "date: 2025-10-28", text, count=1, flags=re.MULTILINE)
        (root / "posts" / SECOND_NAME).write_text(text, encoding="utf-8")
    return root


def clean(root: Path) -> None:
    """Cold: no cache, no previous site, no recorded results (``snippets/``) to reuse."""
    for name in ("_site", ".raypress-cache", "snippets"):
        shutil.rmtree(root / name, ignore_errors=True)


# -- measuring ---------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """This environment without settings that would change what a build does."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("RAYPRESS_") and k != "RAY_ADDRESS"
    }


def cold_build(root: Path, jobs: int) -> Timed:
    """``python -m raypress build --root ROOT --jobs N``, cold, timed from outside."""
    clean(root)
    command = [sys.executable, "-m", "raypress", "build", "--root", str(root), "--jobs", str(jobs)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"build of {root} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    inner = re.search(r" in (\d+\.\d+)s \(", done.stdout)
    cluster = re.search(r"Ray cluster \(.*?\) at \S+, started in (\d+\.\d+) s", done.stdout)
    return Timed(
        wall,
        float(inner.group(1)) if inner else None,
        float(cluster.group(1)) if cluster else None,
        done.stdout,
    )


def cold_builds(root: Path, jobs: int, repeat: int) -> list[Timed]:
    return [cold_build(root, jobs) for _ in range(repeat)]


def in_process_stages(root: Path, jobs: int, repeat: int) -> dict[str, list[float]]:
    """``pipeline.build(config).stage_seconds`` of ``repeat`` cold in-process builds."""
    stages: dict[str, list[float]] = {}
    for _ in range(repeat):
        clean(root)
        config = load_config(root, jobs=jobs)
        report = build(config, log=lambda _line: None)
        if not report.ok:
            raise SystemExit(f"in-process build of {root} failed: {report.problems}")
        for stage, seconds in [*report.stage_seconds.items(), ("total", report.seconds)]:
            stages.setdefault(stage, []).append(seconds)
    return stages


@dataclass(frozen=True, slots=True)
class PostCost:
    wall: float  # PostExecution.wall_s
    snippets: float  # sum of its SnippetResult.wall_s

    @property
    def overhead(self) -> float:
        return self.wall - self.snippets


def runner_costs(
    root: Path, jobs: int, repeat: int
) -> tuple[list[dict[str, PostCost]], list[float]]:
    """The execute stage alone for the posts of ``root`` (``run_posts``, cold each time):
    per post, its wall time and its snippets' own; and the stage's wall time."""
    config = load_config(root, jobs=jobs)
    runs = [post_run_for_file(path, config) for path in sorted((root / "posts").glob("*.md"))]
    runs = [r for r in runs if r is not None]
    costs, stage = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        report = run_posts(runs, config, log=lambda _line: None)
        stage.append(time.perf_counter() - start)
        if report.problems:
            raise SystemExit(f"execution of {root} failed: {report.problems}")
        costs.append(
            {
                post: PostCost(e.wall_s, sum(s.wall_s for s in e.snippets))
                for post, e in report.executions.items()
            }
        )
    return costs, stage


def parse_duration(text: str) -> float:
    """Seconds from a duration as the pages show it ("850 ns", "1.23 ms", "2 min 5 s")."""
    units = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?) (ns|µs|ms|s|min|h)\b", text)
    if not parts:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def timings_total(root: Path, url_part: str) -> float:
    """A post's snippet total as the build's /timings/ page shows it."""
    html = (root / "_site" / "timings" / "index.html").read_text(encoding="utf-8")
    for row in re.findall(r"<tr id=[^>]*>(.*?)</tr>", html, re.DOTALL):
        if url_part in row:
            cells = re.findall(r"<td>(.*?)</td>", row, re.DOTALL)
            return parse_duration(cells[2])
    raise SystemExit(f"no row for {url_part} on {root}/_site/timings/")


# -- printing ----------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "      –" if seconds is None else f"{seconds * 1000:7.0f} ms"


def joined(values: list[float]) -> str:
    return ", ".join(ms(v).strip() for v in values)


def best_median(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


class Table:
    """Rows of (what, best, median, target) printed at the end; "best" is the smallest."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float | None]] = []

    def add(self, what: str, values: list[float], target: float | None = None) -> None:
        best, median = best_median(values)
        self.rows.append((what, best, median, target))

    def print(self, repeat: int) -> None:
        width = max(len(r[0]) for r in self.rows)
        print(f"\n== summary (best and median of {repeat}; targets from issue 3)")
        print(f"{'':{width}}  {'best':>10}  {'median':>10}  {'target':>10}  status")
        for what, best, median, target in self.rows:
            status = "" if target is None else ("met" if median < target else "MISSED")
            goal = "" if target is None else f"< {target * 1000:.0f} ms"
            print(f"{what:{width}}  {ms(best):>10}  {ms(median):>10}  {goal:>10}  {status}")


def python_startup(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=child_env())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def stage_lines(stages: dict[str, list[float]]) -> None:
    for stage, values in stages.items():
        best, median = best_median(values)
        print(f"  {stage:<28} best {ms(best)}   median {ms(median)}")


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each build (default 3)")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of the builds (default 2)")
    parser.add_argument("--work", type=Path, help="where the projects go (default: a temp dir)")
    args = parser.parse_args()
    repeat, jobs = max(1, args.repeat), args.jobs
    work = args.work or Path(tempfile.mkdtemp(prefix="raypress-bench-"))
    table = Table()
    print(
        f"raypress whole-build execution benchmark: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, --jobs {jobs}, {repeat} runs each, projects in {work}"
    )
    print(
        f"python -c pass {ms(python_startup('pass', 5))}; "
        f"python -c 'import numpy' {ms(python_startup('import numpy', 5))}"
    )
    try:
        # (a) -----------------------------------------------------------------------------
        section(f"(a) {NUMPY_POSTS} posts x {len(NUMPY_SNIPPETS)} NumPy snippets, cold")
        root = numpy_project(work / "numpy")
        runs = cold_builds(root, jobs, repeat)
        walls = [r.wall for r in runs]
        inner = [r.inner for r in runs if r.inner is not None]
        table.add(f"(a) 20 NumPy posts, cold build, --jobs {jobs}", walls, TARGETS["numpy"])
        print(f"  subprocess wall: {joined(walls)}")
        print(f"  as the build printed it (in-process part): {joined(inner)}")
        print(f"  per-stage, pipeline.build() in this process, cold cache, {repeat} runs:")
        stage_lines(in_process_stages(root, jobs, repeat))

        # (b) and (c): the seed alone and the seed + a second Ray post, built alternately
        # (so that load from elsewhere on the machine hits both alike) ---------------------
        section("(b) the seed post alone, cold (cluster start included)")
        seed_root = ray_project(work / "seed", second=False)
        both_root = ray_project(work / "both", second=True)
        seed_runs: list[Timed] = []
        both_runs: list[Timed] = []
        second_own: list[float] = []  # the second post's snippet total, per "both" build
        for _ in range(repeat):
            seed_runs.append(cold_build(seed_root, jobs))
            both_runs.append(cold_build(both_root, jobs))
            second_own.append(timings_total(both_root, "using-the-ray-library-again"))
        seed_walls = [r.wall for r in seed_runs]
        table.add("(b) seed post, cold build incl. cluster", seed_walls, TARGETS["seed"])
        clusters = [r.cluster for r in seed_runs if r.cluster is not None]
        print(f"  subprocess wall: {joined(seed_walls)}")
        print(f"  as the build printed it: {joined([r.inner for r in seed_runs if r.inner])}")
        print(f"  cluster start (as logged): {', '.join(f'{c:.1f} s' for c in clusters)}")
        if clusters:
            table.add("    of which the Ray cluster start", clusters)
        print("  per-stage, pipeline.build() in this process, 1 run:")
        stage_lines(in_process_stages(seed_root, jobs, 1))

        section("(c) the seed post and a second Ray post in one build")
        second_post = f"posts/{SECOND_NAME}"
        seed_post = f"posts/{SEED.name}"
        both_walls = [r.wall for r in both_runs]
        added = [b.wall - s.wall for b, s in zip(both_runs, seed_runs, strict=True)]
        beyond = [a - own for a, own in zip(added, second_own, strict=True)]
        print(f"  cold build of both, subprocess wall: {joined(both_walls)}")
        print(f"  added to the seed-alone build just before it: {joined(added)}")
        print(f"  the second post's snippets (its /timings/ total): {joined(second_own)}")
        print(f"  added beyond them: {joined(beyond)}")
        table.add(f"(c) cold build, seed + second, --jobs {jobs}", both_walls)
        table.add(
            f"(c) build: 2nd post adds beyond its snippets, --jobs {jobs}",
            beyond,
            TARGETS["second"],
        )
        for runner_jobs in sorted({1, jobs}):
            costs, stage = runner_costs(both_root, runner_jobs, repeat)
            print(f"  execute stage alone (run_posts), jobs={runner_jobs}: {joined(stage)}")
            for post, name in ((seed_post, "seed  "), (second_post, "second")):
                walls_ = [c[post].wall for c in costs]
                own = [c[post].snippets for c in costs]
                over = [c[post].overhead for c in costs]
                print(
                    f"    {name} post: wall {ms(statistics.median(walls_))}, snippets' own "
                    f"{ms(statistics.median(own))}, beyond them {ms(statistics.median(over))}"
                )
            table.add(
                f"(c) 2nd post: wall_s - its snippets, jobs={runner_jobs}",
                [c[second_post].overhead for c in costs],
                TARGETS["second"],
            )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    table.print(repeat)
    print(
        "(c) build row: each seed + second build minus the seed-alone build run just before it,\n"
        "    minus the second post's snippet total; wall_s rows: PostExecution.wall_s minus the\n"
        "    sum of its SnippetResult.wall_s (wall_s starts once the cluster is up)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
