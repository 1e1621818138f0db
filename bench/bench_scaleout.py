"""Scaling benchmark: 24 posts of a 2 s snippet on simulated clusters of 1, 2 and 3 nodes.

    python bench/bench_scaleout.py [--posts 24] [--seconds 2] [--nodes 1 2 3] [--slots 2]

Each post runs one snippet: ``time.sleep`` for most of its time plus a small NumPy
computation. Sleeping needs no CPU, so the scaling is measurable on a 2-core machine.
Each cluster is ``--nodes`` ``ray start`` processes on loopback addresses (the tests'
``tests/ray_nodes.py``), each node with ``--slots`` logical CPUs: a session takes one, so
a node runs ``--slots`` sessions at once. For every cluster the posts run through the
cluster engine (``ClusterExecutor``, in a child process: Ray reads a cluster's token once
per process), timed in two parts: connecting and starting the session hosts, then the
posts. ``ideal`` is posts x seconds / (nodes x slots); ``efficiency`` is ideal / wall.

The same posts also run on the local engine with ``--jobs`` = slots, to give the cost of
a remote session beyond a local one: (remote wall on 1 node - local wall) / waves, where
a wave is ``slots`` posts side by side. Targets (issue 10): efficiency >= 80% on 3
nodes; remote overhead < 150 ms per post.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the simulated cluster of the tests

SNIPPET = """import time
import numpy as np
started = time.perf_counter()
x = np.random.default_rng({n}).normal(size=(200, 200))
checksum = float(np.linalg.norm(x @ x.T))
time.sleep(max(0.0, {seconds} - (time.perf_counter() - started)))
print("post {n} done")
"""

_CHILD = """
import json, sys, time
from pathlib import Path
from raypress.commands.build import post_run_for_file
from raypress.config import load_config
from raypress.execution import ExecutionSettings, new_engine
root, address, jobs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
config = load_config(root)
runs = [post_run_for_file(p, config) for p in sorted((root / "posts").glob("*.md"))]
settings = ExecutionSettings(jobs=jobs, ray_address=address or None)
started = time.perf_counter()
engine = new_engine(settings, runs)
ready = time.perf_counter()
with engine:
    results = engine.run(runs)
done = time.perf_counter()
print(json.dumps({
    "setup": ready - started,
    "wall": done - ready,
    "ok": sum(r.status == "ok" for r in results),
    "nodes": len({r.environment.node for r in results}),
    "snippets": sum(s.wall_s for r in results for s in r.snippets),
}))
"""


def write_posts(root: Path, posts: int, seconds: float) -> None:
    (root / "posts").mkdir(parents=True)
    (root / "site.toml").write_text('title = "scale-out"\n', encoding="utf-8")
    for n in range(posts):
        body = f"---\ntitle: Post {n}\ndate: 2025-01-01\n---\n```python\n"
        body += SNIPPET.format(n=n, seconds=seconds) + "```\n"
        (root / "posts" / f"post-{n:02d}.md").write_text(body, encoding="utf-8")


def run_engine(root: Path, address: str, jobs: int, env: dict[str, str]) -> dict:
    answer = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), address, str(jobs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if answer.returncode != 0:
        raise SystemExit(f"the engine failed:\n{answer.stderr[-3000:]}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    from ray_nodes import SimulatedCluster

    work = Path(tempfile.mkdtemp(prefix="raypress-scaleout-"))
    write_posts(work / "site", args.posts, args.seconds)
    print(
        f"load average before: {os.getloadavg()[0]:.2f}; {args.posts} posts x "
        f"{args.seconds:g} s, {args.slots} session slots per node"
    )
    local = run_engine(work / "site", "", args.slots, dict(os.environ))
    rows = [("local engine", 0, local)]
    for nodes in args.nodes:
        cluster = SimulatedCluster(nodes=nodes, cpus=args.slots).start()
        try:
            result = run_engine(work / "site", cluster.address, args.slots, cluster.env)
        finally:
            cluster.stop()
        rows.append((f"{nodes} node{'s' if nodes > 1 else ''}", nodes, result))
    print()
    print("| engine | nodes used | set-up | wall | ideal | efficiency | posts ok |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, nodes, result in rows:
        ideal = args.posts * args.seconds / (max(1, nodes) * args.slots)
        print(
            f"| {name} | {result['nodes'] if nodes else '-'} | {result['setup']:.1f} s "
            f"| {result['wall']:.2f} s | {ideal:.2f} s | {ideal / result['wall']:.0%} "
            f"| {result['ok']}/{args.posts} |"
        )
    waves = args.posts / args.slots
    one_node = next((r for _, nodes, r in rows if nodes == 1), None)
    if one_node is None:
        return
    overhead = (one_node["wall"] - local["wall"]) / waves
    print(
        f"\nremote session beyond a local one: {overhead * 1000:.0f} ms per post "
        f"((1-node wall - local wall) / {waves:g} waves)"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
