"""Sessions as cluster work: every post's session runs on a node of a Ray cluster.

On a simulated 3-node cluster (three ``ray start`` processes on 127.0.0.2-4, see
``ray_nodes.py``), through the CLI in child processes (Ray reads its token once per
process): sessions land on every node and capture there exactly as locally; a node lost
while it runs a post has that post run again on another node; bad addresses fail within
10 s with one line and touch nothing; ``ray://`` works; and ``check`` of the example posts
passes twice in a row.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_nodes import SimulatedCluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUILD = [sys.executable, str(REPO / "build.py")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimulatedCluster]:
    nodes = SimulatedCluster(nodes=3, cpus=2, client_server=True).start()
    try:
        yield nodes
    finally:
        nodes.stop()


def _stream(snippet: dict, name: str) -> str:
    """What a recorded snippet printed on ``name`` (record format 2: its outputs)."""
    return "".join(
        "".join(o["text"])
        for o in snippet["outputs"]
        if o["type"] == "stream" and o["name"] == name
    )


def _value(snippet: dict) -> str:
    """The text of a recorded snippet's final value (KeyError if it had none)."""
    (value,) = [o for o in snippet["outputs"] if o["type"] == "result"]
    return "".join(value["data"]["text/plain"])


def _site(root: Path, posts: dict[str, str]) -> Path:
    (root / "posts").mkdir(parents=True)
    (root / "site.toml").write_text('title = "cluster test"\n', encoding="utf-8")
    for name, text in posts.items():
        (root / "posts" / name).write_text(text, encoding="utf-8")
    return root


def _run(
    root: Path, *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BUILD, *args, "--root", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _record(root: Path, post: str) -> dict:
    return json.loads((root / "snippets" / f"{post}.json").read_text(encoding="utf-8"))


CAPTURE_POST = """---
title: Post {n}
resources: {{node{node}: 0.5}}
---
```python
import os, subprocess, sys
print("stdout of post {n}")
print("stderr of post {n}", file=sys.stderr)
os.write(1, b"fd 1 of post {n}\\n")
subprocess.run(["echo", "child of post {n}"], check=True)
{n} * 7
```

```python
#| error: true
raise ValueError("expected in post {n}")
```
"""


def test_sessions_land_on_every_node_and_capture_there(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    posts = {
        f"2025-01-0{n}-post-{n}.md": CAPTURE_POST.format(n=n, node=(n - 1) % 3 + 1)
        for n in range(1, 7)
    }
    root = _site(tmp_path / "site", posts)
    result = _run(root, "--ray-address", cluster.address, env=cluster.env)
    assert result.returncode == 0, result.stderr
    nodes = set()
    for n in range(1, 7):
        record = _record(root, f"2025-01-0{n}-post-{n}")
        first, second = record["snippets"]
        assert _stream(first, "stdout") == (
            f"stdout of post {n}\nfd 1 of post {n}\nchild of post {n}\n"
        )
        assert _stream(first, "stderr") == f"stderr of post {n}\n"
        assert _value(first) == str(n * 7)
        assert second["status"] == "expected-error"
        assert second["error"]["line"] == 16  # the post's own line, mapped on the node
        nodes.add(record["environment"]["node"])
    assert len(nodes) == 3, nodes  # every node ran sessions
    page = (root / "_site/2025/01/01/post-1/index.html").read_text(encoding="utf-8")
    assert "Ray cluster node" in page


SLEEPY_POST = """---
title: Sleepy {n}
---
```python
import time
time.sleep(12)
print("slept {n}")
```
"""


def _running_sessions() -> int:
    """How many sessions run on the session hosts now (the nodes share this machine): a
    session is a fork of a fork server whose parent is a ``SessionHost`` actor."""
    parents: dict[int, int] = {}
    commands: dict[int, bytes] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            commands[int(proc.name)] = (proc / "cmdline").read_bytes()
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    servers = {
        pid
        for pid, command in commands.items()
        if b"raypress.execution.forkserver" in command
        and commands.get(parents[pid], b"").startswith(b"ray::SessionHost")
    }
    return sum(1 for pid in commands if parents.get(pid) in servers)


def test_a_post_on_a_lost_node_runs_again_on_another(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    posts = {f"2025-02-0{n}-sleepy-{n}.md": SLEEPY_POST.format(n=n) for n in range(1, 7)}
    root = _site(tmp_path / "site", posts)
    build = subprocess.Popen(
        [*BUILD, "--ray-address", cluster.address, "--root", str(root)],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # six sessions running: two on every node
            if _running_sessions() >= 6:
                break
            time.sleep(0.5)
        assert _running_sessions() >= 6, "the six posts never ran at once"
        cluster.kill_node(3)
        out, err = build.communicate(timeout=600)
    finally:
        build.kill()
        cluster.restart_node(3)
    assert build.returncode == 0, err
    # node 3 ran some of the six (two when they all ran at once; on a busy machine one may
    # have finished first): each of those ran again elsewhere, and said so
    lost = out.count("its node was lost")
    assert lost >= 1, out
    assert out.count("ran again on another node") == lost, out
    retried = []
    for n in range(1, 7):
        record = _record(root, f"2025-02-0{n}-sleepy-{n}")
        assert _stream(record["snippets"][0], "stdout") == f"slept {n}\n"
        retried.append(record["environment"].get("node"))
    assert "127.0.0.4" not in " ".join(str(r) for r in retried)


@pytest.fixture
def not_ray() -> Iterator[str]:
    """An address where something answers that is not a Ray cluster."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("kind", ["refused", "not-ray", "malformed"])
def test_a_bad_address_fails_at_once_and_touches_nothing(
    kind: str, not_ray: str, tmp_path: Path
) -> None:
    address = {"refused": "127.0.0.1:1", "not-ray": not_ray, "malformed": "http://x/y"}[kind]
    root = _site(tmp_path / "site", {"2025-03-01-x.md": CAPTURE_POST.format(n=1, node=1)})
    (root / "snippets").mkdir()
    record = root / "snippets" / "2025-03-01-x.json"
    record.write_text('{"format": 1, "stale": true}\n', encoding="utf-8")
    for command in ([], ["check"]):
        started = time.monotonic()
        result = _run(root, *command, "--ray-address", address, env=dict(os.environ))
        elapsed = time.monotonic() - started
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if ": error: " in line]
        assert len(errors) == 1 and address in errors[0], result.stderr
        assert elapsed < 10 + 3, elapsed  # 10 s for the check, plus Python's start-up
    assert record.read_text(encoding="utf-8") == '{"format": 1, "stale": true}\n'
    assert not (root / "_site").exists()


DETACHED_POST = """---
title: Through Ray Client
---
```python
import ray
ray.init()
@ray.remote
class Keeper:
    def ping(self):
        print("pong from the actor")
        return 1
keeper = Keeper.options(name="keeper", lifetime="detached").remote()
ray.get(keeper.ping.remote())
```
"""


def test_a_ray_client_address_runs_sessions_in_the_cluster(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    root = _site(tmp_path / "site", {"2025-04-01-client.md": DETACHED_POST})
    result = _run(root, "--ray-address", cluster.client_address, env=cluster.env)
    assert result.returncode == 0, result.stderr
    record = _record(root, "2025-04-01-client")
    assert _value(record["snippets"][0]) == "1"
    assert "pong from the actor" in _stream(record["snippets"][0], "stdout")
    assert record["run"]["status"] == "ok"
    probe = subprocess.run(
        [sys.executable, "-c", _DETACHED_ACTORS, cluster.address],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert probe.stdout.strip().splitlines()[-1] == "0"  # the post's detached actor is gone


_DETACHED_ACTORS = """
import sys, ray
ray.init(sys.argv[1], logging_level="ERROR")
print(sum(1 for a in ray.util.list_named_actors(all_namespaces=True) if a["name"] == "keeper"))
"""


def test_check_of_the_example_posts_passes_twice_on_the_cluster(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    root = tmp_path / "site"
    for name in ("posts", "snippets", "templates"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    before = {p: p.read_bytes() for p in (root / "snippets").rglob("*") if p.is_file()}
    for _ in range(2):
        result = _run(root, "check", "--ray-address", cluster.address, env=cluster.env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert " 0 failed" in result.stdout
    after = {p: p.read_bytes() for p in (root / "snippets").rglob("*") if p.is_file()}
    assert after == before
