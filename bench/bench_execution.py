"""Benchmark the execution engine: what isolation costs per post and per snippet.

    python bench/bench_execution.py            # non-Ray scenarios
    python bench/bench_execution.py --ray      # also the seed post, cold, on a fresh cluster
    python bench/bench_execution.py --sandbox off   # the same without the sandbox (its cost)

Prints figures only; nothing asserts on time (see tests/ for behaviour).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raypress.commands.build import post_run_for_file  # noqa: E402
from raypress.config import load_config  # noqa: E402
from raypress.execution import ExecutionSettings, PostRun  # noqa: E402
from raypress.execution.model import Snippet, SnippetOptions  # noqa: E402
from raypress.execution.pool import Executor  # noqa: E402

SEED = ROOT / "posts" / "2025-10-27-using-the-ray-library.md"
NUMPY_SNIPPETS = (
    "import numpy as np\nrng = np.random.default_rng(0)\nx = rng.normal(size=1000)\n",
    "y = np.cumsum(x)\ny[-1]\n",
    "m = y.reshape(10, 100).mean(axis=1)\nprint(m.round(2))\n",
    "float(m.std())\n",
)


def make_run(name: str, sources: tuple[str, ...], folder: Path) -> PostRun:
    """A post whose snippets are ``sources``, at made-up lines."""
    snippets = tuple(
        Snippet(f"posts/{name}.md", i, 10 * i + 1, 10 * i + 2, "python", src, SnippetOptions())
        for i, src in enumerate(sources)
    )
    return PostRun(f"posts/{name}.md", folder, snippets)


def python_startup(repeat: int) -> float:
    """Median wall time of ``python -c pass``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def bench_trivial(folder: Path, startup: float, repeat: int, sandbox: str) -> None:
    """One post of 10 ``x = 1`` snippets, cold (fork server included)."""
    run = make_run("trivial", tuple("x = 1\n" for _ in range(10)), folder)
    rows = []
    for _ in range(repeat):
        start = time.perf_counter()
        executor = Executor(ExecutionSettings(jobs=1, sandbox=sandbox), [run])
        ready = time.perf_counter() - start
        outcome = executor.execute_outcome(run)
        executed = time.perf_counter() - start
        executor.close()
        total = time.perf_counter() - start
        assert outcome.execution.status == "ok", outcome.execution
        rows.append((ready, outcome, executed, total))
    ready, outcome, executed, total = sorted(rows, key=lambda r: r[3])[len(rows) // 2]
    timeline = dict(outcome.timeline)
    snippet_walls = sum(s.wall_s for s in outcome.execution.snippets)
    in_session = timeline["last event"] - timeline["first event"]
    print("\n== one post, 10 trivial snippets (x = 1), cold, median of", repeat)
    print(f"isolation                        {executor.isolation.describe()}")
    print(f"python -c pass (start-up)        {ms(startup)}")
    print(f"total (start to shut-down)       {ms(total)}   beyond start-up: {ms(total - startup)}")
    print(f"  fork server ready              {ms(ready)}   (interpreter start + imports)")
    print(f"  session spawned (fork)         {ms(timeline['spawned'])}")
    print(f"  session start to 1st snippet   {ms(timeline['first event'] - timeline['spawned'])}")
    print(f"  per snippet (machinery)        {ms((in_session - snippet_walls) / 10)}")
    print(f"  snippets' own time (sum)       {ms(snippet_walls)}")
    transport = timeline["assembled"] - timeline["last event"]
    print(f"  exit, drain, result transport  {ms(transport)}")
    print(f"  shut-down                      {ms(total - executed)}")


def bench_numpy(folder: Path, repeat: int, sandbox: str) -> None:
    """20 posts of 4 dependent NumPy snippets, jobs=2, cold."""
    runs = [make_run(f"numpy-{i:02d}", NUMPY_SNIPPETS, folder) for i in range(20)]
    totals, readies, posts = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        executor = Executor(ExecutionSettings(jobs=2, sandbox=sandbox), runs)
        readies.append(time.perf_counter() - start)
        results = executor.run(runs)
        executor.close()
        totals.append(time.perf_counter() - start)
        assert all(r.status == "ok" for r in results), [r.problems for r in results]
        posts.append(statistics.median(r.wall_s for r in results))
    print("\n== 20 posts x 4 NumPy snippets, jobs=2, cold, median of", repeat)
    print(f"execution total                  {ms(statistics.median(totals))}")
    print(f"  fork server ready (numpy)      {ms(statistics.median(readies))}")
    print(f"  one post, spawn to result      {ms(statistics.median(posts))}")


def bench_ray(folder: Path, sandbox: str) -> None:
    """The seed post cold (its cluster's start included), then a second Ray post: each
    post gets a fresh cluster of its own, started when its first Ray snippet runs."""
    seed = post_run_for_file(SEED, load_config(ROOT))  # exactly as the build makes it
    assert seed is not None
    logged: list[str] = []
    start = time.perf_counter()
    settings = ExecutionSettings(jobs=2, sandbox=sandbox, project_root=ROOT, log=logged.append)
    executor = Executor(settings, [seed])
    ready = time.perf_counter() - start
    first = executor.execute_outcome(seed)
    seed_done = time.perf_counter() - start
    second_run = dataclasses.replace(seed, post="posts/seed-2.md")
    second = executor.execute_outcome(second_run)
    both = time.perf_counter() - start
    executor.close()
    total = time.perf_counter() - start
    assert first.execution.status == "ok", first.execution.problems
    starts = [float(m[1]) for m in (re.search(r"started in ([\d.]+) s", x) for x in logged) if m]
    own = sum(s.wall_s for s in second.execution.snippets)
    print("\n== Ray: the seed post, cold (its cluster's start included)")
    print(f"seed post cold, incl. cluster    {ms(seed_done)}")
    print(f"  fork server ready              {ms(ready)}")
    print(f"  cluster starts (as logged)     {', '.join(f'{s:.2f} s' for s in starts)}")
    for result in first.execution.snippets:
        print(f"  snippet {result.index} ({result.status})         {ms(result.wall_s)}")
    print(f"second Ray post, its own cluster {ms(both - seed_done)}")
    print(f"  its snippets' own time         {ms(own)}   overhead {ms(both - seed_done - own)}")
    for result in second.execution.snippets:
        if result.wall_s > 0.01:
            print(f"    snippet {result.index}                   {ms(result.wall_s)}")
    print(f"shut-down (cluster, server)      {ms(total - both)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray", action="store_true", help="also run the Ray scenario")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--sandbox", choices=("auto", "off"), default="auto", help="off: measure without it"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # as a checkout is: the sandbox's own user reads it
        startup = python_startup(args.repeat)
        bench_trivial(folder, startup, args.repeat, args.sandbox)
        bench_numpy(folder, max(1, args.repeat // 2), args.sandbox)
        if args.ray:
            bench_ray(folder, args.sandbox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
