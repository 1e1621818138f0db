"""Timing fidelity: does a snippet take on the page what it takes in a plain script?

    python bench/bench_fidelity.py                 # example posts + bench/fidelity/*.md, 3 runs
    python bench/bench_fidelity.py --runs 5 bench/fidelity/2025-01-02-sleep-waves.md

Each post runs two ways, alternately, ``--runs`` times:

* through raypress (an ``Executor``, one post at a time, exactly as a build runs it);
* as a plain Python script: the post's code as written, each snippet compiled and
  timed the same way as in a session (``exec`` of the body, ``eval`` of a last bare
  expression, ``time.perf_counter()`` around both), its own ``ray.init(...)`` starting a
  local cluster as it would on the author's machine.

The table gives each snippet's median wall time both ways and the ratio
raypress / plain. Target: every snippet of 50 ms or more within 0.8-1.25x. Snippets
that call ``ray.init`` are shown but not judged: there the plain script starts its
cluster and raypress hands over one started for the post, by design (the page says how
much of the snippet's time ray.init took); nor are snippets that first import a package
raypress imported before the post ran (NumPy, Ray: the page says so too). Prints figures
only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raypress.commands.build import post_run_for_file  # noqa: E402
from raypress.config import load_config  # noqa: E402
from raypress.execution import ExecutionSettings, PostRun  # noqa: E402
from raypress.execution.pool import Executor  # noqa: E402

FLOOR_S = 0.05
LOW, HIGH = 0.8, 1.25
DEFAULT_POSTS = sorted((ROOT / "posts").glob("*.md")) + sorted(
    (ROOT / "bench" / "fidelity").glob("*.md")
)

# The plain script: the snippets of a post, timed as a session times them.
PLAIN_RUNNER = r"""
import ast, json, sys, time, types
spec = json.load(open(sys.argv[1]))
module = types.ModuleType("__main__")
module.__dict__["__builtins__"] = __builtins__
sys.modules["__main__"] = module
namespace = module.__dict__
walls = []
for code_line, source, expect_error in spec["snippets"]:
    tree = ast.parse("\n" * (code_line - 1) + source, spec["post"], "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = compile(ast.Expression(tree.body.pop().value), spec["post"], "eval")
    body = compile(tree, spec["post"], "exec")
    start = time.perf_counter()
    try:
        exec(body, namespace)
        if last is not None:
            eval(last, namespace)
    except BaseException as exc:
        if not expect_error:
            walls.append(None)
            print(f"snippet failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            break
    walls.append(time.perf_counter() - start)
    sys.stdout.flush()
json.dump(walls, open(sys.argv[2], "w"))
"""


@dataclass
class Row:
    post: str
    index: int
    code: str
    ray_init: bool
    plain: list[float]
    raypress: list[float]
    preloaded: bool = False


def plain_walls(run: PostRun, folder: Path) -> list[float | None]:
    """One run of the post as a plain script; each snippet's wall time."""
    spec = folder / "spec.json"
    result = folder / "walls.json"
    snippets = [(s.code_line, s.source, s.options.error) for s in run.snippets if s.options.eval]
    spec.write_text(json.dumps({"post": run.post, "snippets": snippets}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYPRESS_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    with (folder / "output.txt").open("w") as output:
        subprocess.run(
            [sys.executable, "-c", PLAIN_RUNNER, str(spec), str(result)],
            cwd=run.post_dir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    walls = json.loads(result.read_text()) if result.exists() else []
    result.unlink(missing_ok=True)
    return walls + [None] * (len(snippets) - len(walls))


def raypress_walls(run: PostRun) -> tuple[list[float | None], list[bool], str]:
    """One run of the post through raypress: each snippet's wall time, whether the page
    says it ran with packages raypress had already imported, and the post's status."""
    with Executor(ExecutionSettings(jobs=1, snippet_timeout=600), [run]) as executor:
        (result,) = executor.run([run])
    walls: list[float | None] = []
    preloaded = []
    for snippet, outcome in zip(run.snippets, result.snippets, strict=True):
        if snippet.options.eval:
            measured = outcome.status in ("ok", "expected-error")
            walls.append(outcome.wall_s if measured else None)
            preloaded.append(any("already imported" in note for note in outcome.notes))
    return walls, preloaded, result.status


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.3f} s"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("posts", nargs="*", type=Path, help="post files (default: all)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--verbose", action="store_true", help="also every run's time")
    args = parser.parse_args()
    config = load_config(ROOT)
    posts = [p.resolve() for p in args.posts] or DEFAULT_POSTS
    print(f"load average at start: {os.getloadavg()}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp:
        for path in posts:
            run = post_run_for_file(path, config)
            if run is None:
                continue
            ran = [s for s in run.snippets if s.options.eval]
            post_rows = [
                Row(
                    run.post,
                    s.index,
                    s.source.strip().splitlines()[-1],
                    "ray.init" in s.source,
                    [],
                    [],
                )
                for s in ran
            ]
            for attempt in range(args.runs):
                began = time.perf_counter()
                mine, preloaded, status = raypress_walls(run)
                theirs = plain_walls(run, Path(tmp))
                for row, a, b, imported in zip(post_rows, mine, theirs, preloaded, strict=True):
                    row.preloaded = row.preloaded or imported
                    if a is not None:
                        row.raypress.append(a)
                    if b is not None:
                        row.plain.append(b)
                print(
                    f"  {run.post} run {attempt + 1}/{args.runs}: raypress [{status}] and plain "
                    f"in {time.perf_counter() - began:.1f} s (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
            rows += post_rows
    return report(rows, args.verbose)


def report(rows: list[Row], verbose: bool = False) -> int:
    print()
    print(f"{'post / snippet':58} {'plain':>10} {'raypress':>10} {'ratio':>6}  verdict")
    judged = misses = 0
    current = None
    for row in rows:
        if row.post != current:
            current = row.post
            print(row.post)
        plain, mine = median(row.plain), median(row.raypress)
        ratio = mine / plain if plain and mine else None
        if row.ray_init:
            verdict = "ray.init: not judged (the post's cluster is started by raypress)"
        elif row.preloaded:
            verdict = "first import: not judged (raypress imported the package already)"
        elif plain is None or mine is None:
            verdict = "failed"
        elif max(plain, mine) < FLOOR_S:
            verdict = "under 50 ms: not judged"
        else:
            judged += 1
            ok = LOW <= (ratio or 0) <= HIGH
            misses += not ok
            verdict = "ok" if ok else "MISS"
        code = row.code if len(row.code) <= 50 else row.code[:49] + "…"
        ratio_text = f"{ratio:.2f}" if ratio else "–"
        times = f"{fmt(plain):>10} {fmt(mine):>10} {ratio_text:>6}"
        print(f"  {row.index + 1:>2} {code:53} {times}  {verdict}")
        if verbose and max(row.plain + row.raypress, default=0) >= FLOOR_S:
            runs = (
                " ".join(fmt(x) for x in row.plain) + " | " + " ".join(fmt(x) for x in row.raypress)
            )
            print(f"       runs, plain | raypress: {runs}")
    print()
    print(
        f"{judged} snippets of 50 ms or more judged: {judged - misses} within {LOW}-{HIGH}x, "
        f"{misses} outside (median of each side's runs)"
    )
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
