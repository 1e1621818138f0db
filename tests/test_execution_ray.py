"""The execution engine with Ray: one real cluster for the test session (see conftest)."""

from __future__ import annotations

import re
import threading
import time

import pytest
from conftest_execution import make_run, seed_run

from raypress.execution import (
    ExecutionSettings,
    InlineExpression,
    PostExecution,
    PostRun,
    execute_posts,
)
from raypress.execution.model import SnippetOptions
from raypress.execution.pool import Executor

pytestmark = pytest.mark.slow


def run_one(executor: Executor, run: PostRun) -> PostExecution:
    (result,) = executor.run([run])
    return result


def ray_run(name: str, *sources: str, **kwargs: object) -> PostRun:
    run = make_run(name, *sources, **kwargs)  # type: ignore[arg-type]
    return PostRun(run.post, run.post_dir, run.snippets, run.inline, run.timeout, uses_ray=True)


def test_the_seed_post_runs_unmodified_with_real_output_and_times(ray_executor: Executor) -> None:
    last = len(seed_run().snippets) - 1
    run = seed_run(
        inline=(
            InlineExpression(0, 99, "[int(v) for v in ray_results]", last),
            InlineExpression(1, 99, "elapsed(5)", last),
        )
    )
    result = run_one(ray_executor, run)
    assert result.status == "ok", result.problems
    assert all(s.status == "ok" and s.wall_s > 0 for s in result.snippets)
    squares = result.inline[0].text
    assert squares == str([i * i for i in range(100)])  # 0, 1, 4, ..., 9801
    assert re.fullmatch(r"[\d.]+ (µs|ms|s)", result.inline[1].text or "")
    # ray.init(num_cpus = 4) got a cluster of 4 CPUs, and the page says so
    init = result.snippets[3]
    assert init.value is not None and "RayContext" in init.value
    assert "ray.init(num_cpus=4): ran on a fresh cluster of 4 CPUs, 0 GPUs, as asked" in init.notes
    assert any(n.startswith("this time includes ") and "in ray.init" in n for n in init.notes)
    assert init.stderr == ""  # no Ray INFO or warning lines in the page
    assert result.environment.ray_version and result.environment.ray_cluster_cpus == 4
    assert result.environment.ray_requested == "num_cpus=4"
    assert result.environment.ray_given == "a fresh cluster of 4 CPUs, 0 GPUs"


def test_task_output_lands_in_the_snippet_that_caused_it(ray_executor: Executor) -> None:
    run = ray_run(
        "task-output",
        "import ray\nray.init()\n"
        "@ray.remote\ndef shout(tag, i):\n    print(f'{tag} line {i}')\n    return i\n",
        "ray.get([shout.remote('first', i) for i in range(3)])",
        "ray.get(shout.remote('second', 9))\n"
        "@ray.remote\nclass Counter:\n    def add(self):\n        print('actor says hi')\n"
        "        return 1\nray.get(Counter.remote().add.remote())",
    )
    result = run_one(ray_executor, run)
    assert result.status == "ok", result.problems
    _, first, second = result.snippets
    assert first.value == "[0, 1, 2]"
    assert sorted(re.sub(r"pid=\d+", "pid=N", line) for line in first.stdout.splitlines()) == [
        f"(shout pid=N) first line {i}" for i in range(3)
    ]
    assert "(shout pid=" in second.stdout and "second line 9" in second.stdout
    assert re.search(r"^\(Counter pid=\d+\) actor says hi$", second.stdout, re.M)
    assert "first" not in second.stdout


def test_two_posts_printing_from_tasks_at_once_never_mix(ray_executor: Executor) -> None:
    source = (
        "import ray\nray.init()\n"
        "@ray.remote\ndef emit(tag, start):\n"
        "    for i in range(start, start + 50):\n        print(tag, i)\n    return 0\n"
        "ray.get([emit.remote('{tag}', k * 50) for k in range(4)])"
    )
    runs = [ray_run(f"mix-{tag}", source.replace("{tag}", tag)) for tag in ("alpha", "omega")]
    alpha, omega = ray_executor.run(runs)
    for result, tag, other in ((alpha, "alpha", "omega"), (omega, "omega", "alpha")):
        assert result.status == "ok", result.problems
        lines = result.snippets[0].stdout.splitlines()
        assert len(lines) == 200
        assert {int(line.rsplit(" ", 1)[1]) for line in lines} == set(range(200))
        assert all(f") {tag} " in line and other not in line for line in lines)


def test_shutdown_then_init_again_works_as_in_a_notebook(ray_executor: Executor) -> None:
    run = ray_run(
        "reinit",
        "import ray\nray.init(num_cpus=2)\n"
        "@ray.remote\ndef one():\n    return 1\nray.get(one.remote())",
        "ray.shutdown()\nray.is_initialized()",
        "ray.init()\nray.get(one.remote())",
        "ray.init()",  # a second init while connected: Ray's own error, as in a notebook
        options={3: SnippetOptions(error=True)},
    )
    result = run_one(ray_executor, run)
    assert [s.value for s in result.snippets[:3]] == ["1", "False", "1"]
    assert result.snippets[3].status == "expected-error"
    assert result.status == "ok", result.problems


def test_a_task_error_points_at_the_post(ray_executor: Executor) -> None:
    run = ray_run(
        "task-error",
        "import ray\n@ray.remote\ndef bad():\n    return 1 / 0\nray.get(bad.remote())",
        first_line=20,
    )
    result = run_one(ray_executor, run)
    (problem,) = result.problems
    assert str(problem).startswith("posts/task-error.md:25: error: RayTaskError(ZeroDivisionError)")
    error = result.snippets[0].error
    assert error is not None and 'File "posts/task-error.md", line 24, in bad' in error.traceback
    assert "ray/_private" not in error.traceback


def test_a_hung_task_times_out_and_the_next_post_finds_a_clean_cluster(
    ray_executor: Executor,
) -> None:
    hung = ray_run(
        "hung",
        "import ray\nray.init()\n"
        "@ray.remote\nclass Keeper:\n    def ping(self):\n        return 'pong'\n"
        "keeper = Keeper.options(name='keeper', lifetime='detached').remote()\n"
        "anonymous = Keeper.options(lifetime='detached').remote()\n"
        "ray.get([keeper.ping.remote(), anonymous.ping.remote()])",
        "@ray.remote\ndef forever():\n    while True:\n        pass\n"
        "print('waiting', flush=True)\nray.get(forever.remote())",
        options={1: SnippetOptions(timeout=3)},
    )
    result = run_one(ray_executor, hung)
    assert result.status == "timed-out"
    assert [s.status for s in result.snippets] == ["ok", "timed-out"]
    assert result.snippets[1].stdout == "waiting\n"

    check = ray_run(
        "after-hung",
        "import ray, time\nray.init()\nfrom ray._private import state\n"
        "alive = [a for a in state.actors().values() if a['State'] != 'DEAD']\n"
        "named = ray.util.list_named_actors(all_namespaces=True)\n"
        "deadline = time.time() + 10\n"
        "while ray.available_resources().get('CPU', 0) < ray.cluster_resources()['CPU']:\n"
        "    assert time.time() < deadline, ray.available_resources()\n"
        "    time.sleep(0.1)\n"
        "alive, named",
    )
    after = run_one(ray_executor, check)
    assert after.status == "ok", after.problems
    assert after.snippets[0].value == "([], [])"


def test_the_cluster_is_started_only_for_posts_that_use_ray() -> None:
    with Executor(ExecutionSettings(jobs=1)) as engine:
        (result,) = engine.run([make_run("plain", "import numpy\nprint('no ray')")])
        assert result.status == "ok"
        assert engine.clusters is None


def test_a_cluster_that_dies_mid_post_is_reported_within_seconds() -> None:
    with Executor(ExecutionSettings(jobs=1)) as engine:
        run = ray_run(
            "orphan", "import ray, time\nray.init()\nprint('connected', flush=True)\ntime.sleep(60)"
        )
        future_result: list[PostExecution] = []
        worker = threading.Thread(target=lambda: future_result.extend(engine.run([run])))
        worker.start()
        deadline = time.monotonic() + 120
        while not (engine.clusters and engine.clusters.in_use):
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.1)
        time.sleep(2)  # connected, sleeping
        (cluster,) = engine.clusters.in_use
        killed_at = time.perf_counter()
        engine.server.kill(cluster.pid)  # as someone else's `ray stop` would
        worker.join(timeout=30)
        assert not worker.is_alive()
        assert time.perf_counter() - killed_at < 5
        (result,) = future_result
        assert result.status == "died"
        assert "Ray cluster stopped" in result.snippets[0].notes[0]
        # the next post gets a cluster of its own, whatever became of the last one
        (later,) = engine.run([ray_run("later", "import ray\nray.init()")])
        assert later.status == "ok", later.problems


def test_two_builds_at_once_each_get_their_own_cluster() -> None:
    results: dict[str, list[PostExecution]] = {}

    def build(name: str) -> None:
        results[name] = execute_posts([seed_run()], ExecutionSettings(jobs=1))

    threads = [threading.Thread(target=build, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == ["one", "two"]
    assert all(result.status == "ok" for runs in results.values() for result in runs), results
