"""What the page shows is what the code does: the resources a post asked for, failures
that do not hide the rest of the post, and a Ray start that survives a busy machine.

Real Ray clusters (a fresh one per post, as a build makes them); the retry policy of
the cluster start is also checked with a stand-in for one attempt, since a real start
cannot be made to fail on cue.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest_execution import make_run
from conftest_publishing import Project
from test_build_execution import DURATION, execution_footer, figures_of, read_page, run

from raypress.execution import ExecutionSettings, PostExecution, PostRun
from raypress.execution import ray_cluster as ray_cluster_module
from raypress.execution.pool import Executor
from raypress.execution.ray_cluster import ClusterError, ClusterOptions, start_cluster
from raypress.execution.ray_shape import ClusterShape

SEED_AS_WRITTEN = Path(__file__).parent / "data" / "seed-as-written.md"
SEED_URL = "/2025/10/27/using-the-ray-library/"


def ray_run(name: str, *sources: str) -> PostRun:
    base = make_run(name, *sources)
    return PostRun(base.post, base.post_dir, base.snippets, uses_ray=True)


def run_one(executor: Executor, post: PostRun) -> PostExecution:
    (result,) = executor.run([post])
    return result


@pytest.mark.slow
def test_a_post_runs_on_the_cpus_its_ray_init_asked_for(ray_executor: Executor) -> None:
    """ray.init(num_cpus=4) on a 2-core machine: 4 logical CPUs, so 8 tasks of 0.5 s run
    in two waves of at most 4, as in a plain script; never one wave on more CPUs."""
    result = run_one(
        ray_executor,
        ray_run(
            "waves",
            "import time\nimport ray\nray.init(num_cpus=4)\n"
            "@ray.remote\ndef nap(i):\n    start = time.time()\n    time.sleep(0.5)\n"
            "    return start, time.time()\n",
            "spans = ray.get([nap.remote(i) for i in range(8)])",
            "ray.cluster_resources()['CPU']",
            "max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)",
        ),
    )
    assert result.status == "ok", result.problems
    init, batch, cpus, overlap = result.snippets
    assert cpus.value == "4.0"
    assert overlap.value is not None and 1 <= int(overlap.value) <= 4
    assert batch.wall_s >= 1.0  # two waves of 0.5 s, whatever the machine's load
    assert "ray.init(num_cpus=4): ran on a fresh cluster of 4 CPUs, 0 GPUs, as asked" in init.notes
    assert result.environment.ray_requested == "num_cpus=4"
    assert result.environment.ray_given == "a fresh cluster of 4 CPUs, 0 GPUs"


@pytest.mark.slow
def test_custom_resources_and_object_store_size_are_given(ray_executor: Executor) -> None:
    store = 100 * 1024 * 1024
    result = run_one(
        ray_executor,
        ray_run(
            "shaped",
            f"import ray\nray.init(num_cpus=1, resources={{'special': 2}}, "
            f"object_store_memory={store})",
            "total = ray.cluster_resources()\n"
            "print(total['CPU'], total['special'], int(total['object_store_memory']))",
        ),
    )
    assert result.status == "ok", result.problems
    assert result.snippets[1].stdout == f"1.0 2.0 {store}\n"
    assert result.environment.ray_given == "a fresh cluster of 1 CPU, 0 GPUs, special: 2"


@pytest.mark.slow
def test_a_task_no_node_can_hold_fails_in_seconds_at_the_line_that_waits(
    ray_executor: Executor,
) -> None:
    """Plain Ray waits forever for a task asking for more than any node has (the Ray docs'
    Tasks page does this when read top to bottom); the snippet fails instead."""
    post = ray_run(
        "too-big",
        "import ray\nray.init(num_cpus=2)\n@ray.remote(num_cpus=4, num_gpus=2)\n"
        "def big():\n    return 1\n",
        "print('waiting')\nray.get(big.remote())",
        "print('never')",
    )
    result = run_one(ray_executor, post)
    setup, wait, after = result.snippets
    assert setup.status == "ok" and after.status == "not-run"
    assert wait.status == "error" and wait.error is not None, wait
    assert wait.stdout == "waiting\n"
    assert "asks for {CPU: 4, GPU: 2}" in wait.error.message
    assert "(2 CPUs, 0 GPUs)" in wait.error.message
    assert wait.wall_s < 60  # seconds, not the snippet's timeout (120 s here)
    (problem,) = result.problems
    assert problem.line == post.snippets[1].code_line + 1  # the ray.get line
    assert "ray/" not in wait.error.traceback  # the post's frame, not Ray's


@pytest.mark.slow
def test_gpus_the_machine_lacks_fail_at_once_naming_the_line(ray_executor: Executor) -> None:
    if ray_cluster_module.os.path.exists("/proc/driver/nvidia/gpus"):
        pytest.skip("this machine has an NVIDIA GPU")
    post = ray_run("gpu", "import ray\nprint('before')", "ray.init(num_gpus=1)", "print('after')")
    result = run_one(ray_executor, post)
    assert result.status == "failed"
    before, init, after = result.snippets
    assert before.stdout == "before\n" and after.status == "not-run"
    assert init.status == "error" and init.error is not None
    assert "no GPU" in init.error.message and "num_gpus=1" in init.error.message
    assert init.wall_s < 10  # refused, not waited for
    (problem,) = result.problems
    assert problem.line == post.snippets[1].code_line  # the ray.init line of the post
    assert str(problem).startswith(f"posts/gpu.md:{post.snippets[1].code_line}: error:")


def test_a_cluster_starts_only_when_a_snippet_that_needs_it_runs() -> None:
    """The only snippet that mentions ray is a shell command fenced as Python: it fails to
    compile, so no cluster is started for the post (ray_pool's counter stays at 0)."""
    with Executor(pytest_settings()) as engine:
        post = make_run("pip-only", "pip install ray", "print('the rest runs')")
        result = run_one(engine, post)
        assert [s.status for s in result.snippets] == ["error", "ok"]
        assert result.snippets[1].stdout == "the rest runs\n"
        assert engine.clusters is None or engine.clusters.started == 0


def pytest_settings() -> ExecutionSettings:
    return ExecutionSettings(jobs=1, snippet_timeout=120)


@pytest.mark.slow
def test_the_seed_post_as_its_author_wrote_it(project: Project) -> None:
    """``pip install ray`` fenced as Python: exit 1, one error at line 14 with the hint,
    and every other snippet runs, with its real output and time on the page."""
    source = SEED_AS_WRITTEN.read_text(encoding="utf-8")
    assert source.splitlines()[13] == "pip install ray"  # line 14, exactly as written
    shutil.copyfile(SEED_AS_WRITTEN, project.root / "posts" / "2025-10-27-using-the-ray-library.md")
    result = run(project)
    assert result.code == 1, str(result)
    seed = "posts/2025-10-27-using-the-ray-library.md"
    problems = [line for line in result.err_lines if line.startswith(seed + ":")]
    assert len(problems) == 1, str(result)
    assert problems[0].startswith(f"{seed}:14: error: SyntaxError"), problems
    assert "```bash" in problems[0] and "eval: false" in problems[0], problems
    figures = figures_of(project.site, SEED_URL)
    pip, *others = figures
    assert "failed" in pip.classes and "```bash" in pip.text("notice"), str(pip)
    assert re.fullmatch(DURATION, pip.text("timing")) and pip.text("timing") != "0.00 ns"
    assert len(others) == 7
    for figure in others:
        assert "failed" not in figure.classes and "not-run" not in figure.classes, str(figure)
        assert re.fullmatch(DURATION, figure.text("timing")), str(figure)
    init = others[3]  # ray.init(num_cpus = 4)
    assert "Ray version" in init.text("html"), str(init)  # the RayContext, as Jupyter shows it
    assert "ran on a fresh cluster of 4 CPUs, 0 GPUs, as asked" in init.text("notice")
    footer = execution_footer(read_page(project.site, SEED_URL))
    assert "asked for num_cpus=4 and ran on a fresh cluster of 4 CPUs, 0 GPUs" in footer


# -- the start of a cluster on a busy machine -----------------------------------------------


class _FlakyHead:
    """Stands in for one start attempt: fails ``failures`` times, then starts."""

    attempts = 0
    failures = 2
    permanent = False

    def __init__(self, *args: object) -> None:
        type(self).attempts += 1
        if type(self).attempts <= type(self).failures:
            raise ray_cluster_module._AttemptFailed(
                "the head exited with status 1: GCS has become overloaded",
                "line 1 of Ray's log\nGCS has become overloaded",
                type(self).permanent,
            )
        self.address = "127.0.0.2:1"


def test_a_failed_start_is_tried_again_with_one_line_per_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ray_cluster_module, "BuildCluster", _FlakyHead)
    monkeypatch.setattr(ray_cluster_module, "_RETRY_PAUSE_S", 0.01)
    _FlakyHead.attempts, _FlakyHead.failures = 0, 2
    logged: list[str] = []
    options = ClusterOptions(ClusterShape(num_cpus=4), True, start_timeout=60)
    cluster = start_cluster(None, {}, options, "/tmp", logged.append)  # type: ignore[arg-type]
    assert cluster.address == "127.0.0.2:1" and _FlakyHead.attempts == 3
    assert len(logged) == 2 and all("trying again" in line for line in logged)
    assert all(len(line.splitlines()) == 1 for line in logged)  # no Ray log per attempt


def test_giving_up_prints_rays_log_once_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_cluster_module, "BuildCluster", _FlakyHead)
    monkeypatch.setattr(ray_cluster_module, "_RETRY_PAUSE_S", 0.2)
    _FlakyHead.attempts, _FlakyHead.failures = 0, 10**6
    logged: list[str] = []
    options = ClusterOptions(ClusterShape(), True, start_timeout=1.0)
    with pytest.raises(ClusterError) as caught:
        start_cluster(None, {}, options, "/tmp", logged.append)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "did not start" in message and "GCS has become overloaded" in message
    assert "ray_start_timeout" in message and "\n" not in message
    assert "line 1 of Ray's log" in caught.value.output  # for the pool to show, once
    assert not any("line 1 of Ray's log" in line for line in logged)
    assert _FlakyHead.attempts >= 2


def test_a_permanent_failure_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_cluster_module, "BuildCluster", _FlakyHead)
    _FlakyHead.attempts, _FlakyHead.failures, _FlakyHead.permanent = 0, 10, True
    try:
        with pytest.raises(ClusterError):
            start_cluster(None, {}, ClusterOptions(ClusterShape(), True), "/tmp", print)  # type: ignore[arg-type]
        assert _FlakyHead.attempts == 1
    finally:
        _FlakyHead.permanent = False


def test_a_build_shows_rays_log_once_however_many_starts_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under heavy load every post's cluster may fail to start: each post says why in one
    line, and Ray's 40-line log is printed once for the build, not once per post."""
    from raypress.execution.ray_pool import ClusterPool, PoolSettings

    monkeypatch.setattr(ray_cluster_module, "BuildCluster", _FlakyHead)
    monkeypatch.setattr(ray_cluster_module, "_RETRY_PAUSE_S", 0.05)
    _FlakyHead.attempts, _FlakyHead.failures = 0, 10**6
    logged: list[str] = []
    pool = ClusterPool(None, {}, PoolSettings(True, start_timeout=0.3), "/tmp", logged.append)  # type: ignore[arg-type]
    errors = []
    for _ in range(3):
        with pytest.raises(ClusterError) as caught:
            pool.acquire(ClusterShape())
        errors.append(str(caught.value))
    assert all("GCS has become overloaded" in e and "\n" not in e for e in errors)
    assert sum("line 1 of Ray's log" in line for line in logged) == 1
    pool.close()
