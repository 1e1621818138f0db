"""The pieces of raypress's Ray support that need no cluster: what ``ray.init`` asks for,
what the machine can give, and how worker log lines are sorted into output and notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypress.execution.ray_logs import SYSTEM_NOTE, TQDM_MAGIC, WorkerLogTail
from raypress.execution.ray_pool import refusal
from raypress.execution.ray_shape import (
    OBJECT_STORE_MINIMUM,
    ClusterShape,
    ShapeError,
    describe_resources,
    predict_shape,
    shape_from_kwargs,
)
from raypress.execution.ray_shim import unmet_request


def test_a_shape_from_ray_init_arguments() -> None:
    shape = shape_from_kwargs(
        {"num_cpus": 4, "resources": {"special": 2, "a": 0.5}, "namespace": "x"}
    )
    assert shape == ClusterShape(num_cpus=4, resources=(("a", 0.5), ("special", 2.0)))
    assert shape.requested() == "num_cpus=4, resources={'a': 0.5, 'special': 2.0}"
    assert shape.start_args() == ["--num-cpus=4", '--resources={"a": 0.5, "special": 2.0}']
    assert ClusterShape().requested() == "Ray's defaults" and ClusterShape().start_args() == []
    assert ClusterShape.from_json(shape.to_json()) == shape
    assert shape_from_kwargs({"num_cpus": 4.0}).num_cpus == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_cpus": "4"}, "num_cpus must be a whole number"),
        ({"num_cpus": 2.5}, "num_cpus must be a whole number"),
        ({"num_gpus": -1}, "num_gpus must not be negative"),
        ({"resources": {"CPU": 2}}, "use num_cpus"),
        ({"resources": {"x": "many"}}, "must be a number"),
        ({"resources": [1]}, "resources must be a dict"),
        ({"object_store_memory": 10**6}, "below Ray's minimum"),
    ],
)
def test_a_shape_ray_could_not_start_is_refused_with_the_reason(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ShapeError, match=message):
        shape_from_kwargs(kwargs)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (["import ray\nray.init(num_cpus = 4)\n"], ClusterShape(num_cpus=4)),
        (["x = 1", "import ray\nray.init()"], ClusterShape()),
        (["ray.init(address='auto', num_gpus=0)"], ClusterShape(num_gpus=0)),
        (["ray.init(**config)"], None),  # known only when it runs
        (["ray.init(num_cpus=os.cpu_count())"], None),
        (["ray.init('ray://far:10001')"], None),
        (["pip install ray", "print('no init')"], None),
    ],
)
def test_the_shape_is_predicted_from_literal_arguments(
    sources: list[str], expected: ClusterShape | None
) -> None:
    assert predict_shape(sources) == expected


def test_resources_as_the_page_says_them() -> None:
    given = {"CPU": 4.0, "GPU": 1.0, "memory": 1e9, "object_store_memory": 1e8}
    given |= {"node:127.0.0.2": 1.0, "node:__internal_head__": 1.0, "special": 2.0}
    assert describe_resources(given) == "4 CPUs, 1 GPU, special: 2"
    assert describe_resources({"CPU": 1.0}) == "1 CPU, 0 GPUs"


def test_what_the_machine_cannot_give_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    reason = refusal(ClusterShape(num_gpus=1))
    assert reason is not None and "has no GPU" in reason and "num_gpus=1" in reason
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert refusal(ClusterShape(num_gpus=2)) is None
    assert "only 2 GPUs" in (refusal(ClusterShape(num_gpus=3)) or "")
    huge = ClusterShape(object_store_memory=1 << 60)
    assert "more than this machine's memory" in (refusal(huge) or "")
    assert refusal(ClusterShape(num_cpus=64, object_store_memory=OBJECT_STORE_MINIMUM)) is None


def test_an_existing_cluster_that_lacks_what_the_post_asks() -> None:
    total = {"CPU": 2.0, "special": 1.0}
    assert unmet_request(ClusterShape(num_cpus=2), total) is None
    assert "has 2 CPU in all, and the post asks for 8" in (
        unmet_request(ClusterShape(num_cpus=8), total) or ""
    )
    assert "GPU" in (unmet_request(ClusterShape(num_gpus=1), total) or "")
    assert unmet_request(ClusterShape(resources=(("special", 2.0),)), total) is not None


def _worker_log(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_worker_logs_become_prefixed_output_and_ray_notes(tmp_path: Path) -> None:
    job = "01000000"
    _worker_log(
        tmp_path,
        f"worker-aaaa-{job}-101.out",
        [":task_name:square", "hello from a task", f'{{"{TQDM_MAGIC}": 1}}'],
    )
    _worker_log(
        tmp_path,
        f"worker-aaaa-{job}-101.err",
        [
            ":task_name:square",
            "2025-11-26 04:55:19,123\tINFO worker.py:12 -- chatter",
            "[2025-11-26 04:55:19,123 W 101 101] core_worker.cc:77: a warning",
            "[mutex.cc : 452] RAW: Lock blocking 0x55d4   @ 0x7f01 0x7f02",
            "*** SIGABRT received at time=1795667499 on cpu 1 ***",
            "PC: @     0x7efd2c6a8eec  (unknown)  (unknown)",
            ":task_name:again",
            "a user warning",
        ],
    )
    _worker_log(tmp_path, "worker-bbbb-02000000-102.out", ["another job's line"])
    _worker_log(tmp_path, "worker-cccc-ffffffff-103.out", [f":job_id:{job}", "claimed"])
    tail = WorkerLogTail(tmp_path, {job}, ip="127.0.0.3")
    new = tail.read_new()
    assert new.stdout.splitlines() == [
        "(square pid=101, ip=127.0.0.3) hello from a task",
        "(worker pid=103, ip=127.0.0.3) claimed",
    ]
    assert new.stderr == "(again pid=101, ip=127.0.0.3) a user warning\n"
    (note,) = new.notes  # one note per worker and read: the warning and the crash dump
    assert note.startswith(SYSTEM_NOTE + "square pid=101, ip=127.0.0.3): [2025")
    assert "a warning" in note and "RAW: Lock blocking" in note
    assert "SIGABRT" in note and "PC: @" in note
    assert "chatter" not in note  # INFO lines are dropped
    assert new.bars == (f'{{"{TQDM_MAGIC}": 1}}',)
    assert tail.read_new().stdout == ""  # read once
