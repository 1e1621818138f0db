"""Output from every node: a real two-node cluster (``tests/conftest_cluster.py``), the
session connected to it as ``--ray-address`` connects a build.

The head (127.0.0.2) has the custom resource ``head`` and the second node (127.0.0.3)
``node2`` (2 of each), so a task can be sent to either; each node has its own logs folder, as on
separate machines, and the session reads node 2's through a reader placed there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from conftest_cluster import LocalCluster
from conftest_execution import make_run

from raypress.execution import ExecutionSettings, PostExecution, PostRun
from raypress.execution.pool import Executor

pytestmark = pytest.mark.slow

PID = re.compile(r"pid=\d+")


@pytest.fixture(scope="module")
def on_two_nodes(two_node_cluster: LocalCluster) -> Iterator[Executor]:
    settings = ExecutionSettings(jobs=1, snippet_timeout=120, ray_address=two_node_cluster.address)
    with Executor(settings) as engine:
        yield engine


def ray_run(name: str, *sources: str) -> PostRun:
    base = make_run(name, *sources)
    return PostRun(base.post, base.post_dir, base.snippets, uses_ray=True)


def run_one(executor: Executor, post: PostRun) -> PostExecution:
    (result,) = executor.run([post])
    return result


SETUP = """\
import os
import ray

ray.init()

@ray.remote(resources={"node2": 1})
def far(i):
    print(f"far {i}")
    return os.getpid()

@ray.remote(resources={"head": 1})
def near(i):
    print(f"near {i}")
    return i
"""


def test_output_of_tasks_and_actors_on_the_second_node_lands_in_its_snippet(
    on_two_nodes: Executor, two_node_cluster: LocalCluster
) -> None:
    post = ray_run(
        "two-nodes",
        SETUP,
        "pids = ray.get([far.remote(i) for i in range(3)])",
        "print('driver')\nray.get(near.remote(7))",
        "@ray.remote(num_cpus=0, resources={'node2': 1})\nclass Far:\n    def hello(self):\n"
        "        print('actor on node 2')\n        return 1\n"
        "far_actor = Far.remote()\nray.get(far_actor.hello.remote())",
        "import time\n@ray.remote(resources={'node2': 1})\ndef later():\n"
        "    time.sleep(1.0)\n    print('printed while the next snippet ran')\n"
        "pending = later.remote()",
        "ray.get(pending)",
    )
    for _ in range(2):  # output from another node used to go missing now and then
        result = run_one(on_two_nodes, post)
        assert result.status == "ok", result.problems
        setup, fars, nears, actor, submit, wait = (s.stdout for s in result.snippets)
        assert setup == ""
        assert sorted(PID.sub("pid=N", line) for line in fars.splitlines()) == [
            f"(far pid=N, ip=127.0.0.3) far {i}" for i in range(3)
        ]
        assert PID.sub("pid=N", nears) == "driver\n(near pid=N) near 7\n"
        assert PID.sub("pid=N", actor) == "(Far pid=N, ip=127.0.0.3) actor on node 2\n"
        assert submit == ""
        late = "(later pid=N, ip=127.0.0.3) printed while the next snippet ran\n"
        assert PID.sub("pid=N", wait) == late
    assert result.environment.ray_given is not None
    assert result.environment.ray_given.startswith(f"the cluster at {two_node_cluster.address}")
    assert "2 CPUs" in result.environment.ray_given and "node2: 2" in result.environment.ray_given


def test_a_crash_on_the_second_node_is_a_note_not_output(on_two_nodes: Executor) -> None:
    post = ray_run(
        "crash-far",
        SETUP,
        "@ray.remote(resources={'node2': 1}, max_retries=0)\ndef crash():\n"
        "    print('about to abort', flush=True)\n    os.abort()\n"
        "try:\n    ray.get(crash.remote())\nexcept ray.exceptions.RayError as exc:\n"
        "    print(type(exc).__name__)",
    )
    result = run_one(on_two_nodes, post)
    assert result.status == "ok", result.problems
    crash = result.snippets[1]
    lines = PID.sub("pid=N", crash.stdout).splitlines()
    assert sorted(lines) == ["(crash pid=N, ip=127.0.0.3) about to abort", "WorkerCrashedError"]
    assert crash.stderr == ""
    dumps = [n for n in crash.notes if "SIGABRT" in n]
    assert dumps and all(n.startswith("Ray (crash pid=") for n in dumps), crash.notes


def test_more_cpus_than_the_cluster_has_fails_at_once_naming_the_line(
    on_two_nodes: Executor,
) -> None:
    post = ray_run("greedy", "import ray\nray.init(num_cpus=8)", "print('never')")
    result = run_one(on_two_nodes, post)
    assert result.status == "failed"
    init, after = result.snippets
    assert init.error is not None and after.status == "not-run"
    assert "has 2 CPU in all, and the post asks for 8" in init.error.message
    assert init.wall_s < 60  # refused once connected, never left to the timeout
    (problem,) = result.problems
    assert str(problem).startswith(f"posts/greedy.md:{post.snippets[0].code_line + 1}: error:")
