"""Benchmark frozen results: rebuilds that reuse snippets/, and ``check`` on the example site.

    python bench/bench_freeze.py                 # 20 and 200 executed posts, then check
    python bench/bench_freeze.py --posts 20 --repeat 5 --no-check

For each corpus size: N posts of bench/corpus.py's prose, each with four cheap runnable
snippets (NumPy; two posts of each corpus use Ray), built once with execution so that
every post has its record in snippets/. Then, each as its own ``python -m raypress
build`` process, exactly as a user runs it:

- **no change**: nothing touched (the build stamp's "up to date" shortcut);
- **prose edit**: one sentence added to one post's prose, so the whole pipeline runs
  (read, parse that post, decide record or run for every post, render, write) and every
  post's results come from its record: no session, no fork server, no Ray cluster (each
  run also reports whether the execution engine was imported at all).

Then ``python build.py check`` on the repository's example site: its wall time against
the sum of its snippets' own wall times (posts run in parallel). Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import corpus as corpus_module  # noqa: E402

SNIPPETS = """
## Measured here

```python
import numpy as np

values = np.arange({n}) * {k}
```

```python
total = int(values.sum())
print("total:", total)
```

```python
values[:10].mean()
```

```python
{{"n": len(values), "total": total}}
```
"""
RAY_SNIPPET = """
```python
import ray

ray.init()
print(ray.get(ray.put({k})))
```
"""
# Run in a child process: the build as the command line runs it, and whether it imported
# the execution engine (which a build that runs nothing never needs).
CHILD = """
import sys, time
started = time.perf_counter()
from raypress.cli import main
code = main(["build", "--root", sys.argv[1], "--quiet"])
engine = "raypress.execution.pool" in sys.modules or "ray" in sys.modules
print(f"RESULT {code} {int(engine)} {time.perf_counter() - started:.4f}")
"""
# The same build through pipeline.build, for its per-stage times.
STAGES = """
import json, sys, time
started = time.perf_counter()
from pathlib import Path
from raypress.config import load_config
from raypress.commands.build import build
imported = time.perf_counter() - started
report = build(load_config(Path(sys.argv[1])))
stages = {"imports": imported, **report.stage_seconds}
print("STAGES", json.dumps({"executed": report.executed, "reused": report.reused, **stages}))
"""


def write_site(root: Path, posts: int, ray_posts: int) -> list[Path]:
    """The corpus with runnable snippets appended to every post; its post files."""
    corpus = corpus_module.write_corpus(root, posts, pelican=False)
    files = []
    for index in range(posts):
        path = corpus.raypress_post(index)
        text = path.read_text(encoding="utf-8")
        text += SNIPPETS.format(n=100 + index, k=index + 1)
        if index < ray_posts:
            text += RAY_SNIPPET.format(k=index)
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return files


def timed_build(root: Path) -> tuple[float, int, bool, float]:
    """Wall time of one build process, its exit code, whether it imported the execution
    engine, and the time it measured itself (from its first import to its end)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYPRESS_")}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - start
    match = re.search(r"RESULT (\d+) (\d) ([\d.]+)", result.stdout)
    if match is None:
        raise RuntimeError(f"build failed:\n{result.stdout}\n{result.stderr}")
    return wall, int(match.group(1)), match.group(2) == "1", float(match.group(3))


def cold_build(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "raypress", "build", "--root", str(root), "--quiet"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


def bench_size(work: Path, posts: int, ray_posts: int, repeat: int) -> list[str]:
    root = work / f"freeze-{posts}"
    if root.exists():
        shutil.rmtree(root)
    files = write_site(root, posts, ray_posts)
    site = root / "raypress"
    cold = cold_build(site)
    records = sorted((site / "snippets").glob("*.json"))
    lines = [
        f"{posts} executed posts ({ray_posts} with Ray), {len(records)} records; "
        f"cold build with execution: {cold:.1f} s"
    ]
    same, edited = [], []
    engine_used = False
    for revision in range(repeat):
        same.append(timed_build(site))
        corpus_module.edit_post(files[len(files) // 2], revision)
        edited.append(timed_build(site))
    for name, runs in (("no change (up to date)", same), ("prose edit in one post", edited)):
        walls = [r[0] for r in runs]
        inner = [r[3] for r in runs]
        codes = {r[1] for r in runs}
        engine_used |= any(r[2] for r in runs)
        lines.append(
            f"  {name:24s} wall best {ms(min(walls))}, median {ms(statistics.median(walls))}"
            f"  (in-process median {ms(statistics.median(inner))}; exit {sorted(codes)})"
        )
    lines.append(f"  execution engine or Ray imported by a rebuild: {engine_used}")
    corpus_module.edit_post(files[len(files) // 2], repeat)
    lines.append("  prose edit, by stage: " + stage_breakdown(site))
    return lines


def stage_breakdown(root: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", STAGES, str(root)], capture_output=True, text=True, check=True
    )
    data = json.loads(result.stdout.split("STAGES", 1)[1])
    counts = f"executed {data.pop('executed')}, from records {data.pop('reused')}"
    stages = ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in data.items())
    return f"{stages} ({counts}; 'execute' is deciding record or run)"


def bench_check() -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYPRESS_")}
    env.pop("GITHUB_ACTIONS", None)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "build.py", "check", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - start
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    recorded = 0.0
    for path in sorted((REPO / "snippets").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        recorded += sum(s["wall_s"] for s in data["snippets"])
    return [
        f"check on the example site: exit {result.returncode}, wall {wall:.2f} s",
        f"  {summary}",
        f"  sum of the snippets' recorded wall times: {recorded:.2f} s",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, action="append", help="corpus sizes (20, 200)")
    parser.add_argument("--ray-posts", type=int, default=2, help="posts using Ray per corpus")
    parser.add_argument("--repeat", type=int, default=5, help="rebuilds of each kind")
    parser.add_argument("--work", type=Path, default=BENCH / "_work", help="working folder")
    parser.add_argument("--no-check", action="store_true", help="skip the check benchmark")
    options = parser.parse_args(argv)
    print(f"raypress freeze benchmark; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for posts in options.posts or [20, 200]:
        for line in bench_size(options.work, posts, options.ray_posts, options.repeat):
            print(line, flush=True)
    if not options.no_check:
        for line in bench_check():
            print(line, flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
