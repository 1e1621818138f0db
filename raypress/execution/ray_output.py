"""Session side: what a session's Ray jobs printed, on every node of the cluster.

The driver's own node is read directly (``ray_logs.WorkerLogTail``); every other alive
node gets a ``ray_logs.NodeLogReader`` actor (``num_cpus=0``, placed on it, its class
shipped by value), started when the session connects or when a node joins, and asked
for its new lines after each snippet: one round trip per node, exact, and independent of
whether the nodes share a disk. A reader that fails (its node died) is dropped with a
note. ``ray.experimental.tqdm_ray`` updates are handed to the driver's bar manager, as
Ray's own log printer does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from raypress.execution import ray_logs
from raypress.execution.ray_logs import NewOutput, WorkerLogTail

_READER_TIMEOUT_S = 60.0


class JobOutput:
    """New output of a session's jobs, read after each snippet."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self.note = note
        self.jobs: list[str] = []
        self.tail: WorkerLogTail | None = None
        self.readers: dict[str, Any] = {}  # node id -> NodeLogReader handle
        self.pending = NewOutput()  # read before a ray.shutdown, printed at the snippet's end

    def connected(self, ray: ModuleType, job: str) -> None:
        """The session connected as ``job``: read its workers' logs from now on."""
        self.jobs.append(job)
        logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
        if self.tail is None or self.tail.logs_dir != logs:
            self.tail = WorkerLogTail(logs, set(self.jobs))
        self.tail.jobs.add(job)
        self._update_readers(ray)

    def disconnecting(self, ray: ModuleType) -> None:
        """``ray.shutdown()`` is coming: read what is there while the readers still live."""
        self.pending = self.pending + self.read(ray, final=True)
        self.readers.clear()

    def flush(self, ray: ModuleType | None, final: bool = False) -> None:
        """Print what the jobs printed since the last call on fds 1 and 2; Ray's own lines
        become notes, tqdm_ray updates go to the bar manager."""
        new = self.pending + self.read(ray, final)
        self.pending = NewOutput()
        for text in new.notes:
            self.note(text)
        if new.bars:
            worker = sys.modules.get("ray._private.worker")
            for line in new.bars:
                worker.process_tqdm(line)  # type: ignore[union-attr]
        for fd, text in ((1, new.stdout), (2, new.stderr)):
            data = text.encode("utf-8", errors="replace")
            while data:
                data = data[os.write(fd, data) :]

    def read(self, ray: ModuleType | None, final: bool) -> NewOutput:
        new = self.tail.read_new(final) if self.tail is not None else NewOutput()
        if ray is None or not ray.is_initialized():
            return new
        self._update_readers(ray)
        nodes = list(self.readers)
        refs = [self.readers[node].read.remote(final) for node in nodes]
        for node, ref in zip(nodes, refs, strict=True):
            try:
                out, err, notes, bars = ray.get(ref, timeout=_READER_TIMEOUT_S)
            except Exception as exc:
                self.readers.pop(node, None)
                self.note(f"output printed on node {node[:8]} could not be read: {_brief(exc)}")
                continue
            new = new + NewOutput(out, err, tuple(notes), tuple(bars))
        return new

    def _update_readers(self, ray: ModuleType) -> None:
        """Start a log reader on each other alive node that has none yet."""
        try:
            here = ray.get_runtime_context().get_node_id()
            nodes = [n for n in ray.nodes() if n.get("Alive") and n["NodeID"] != here]
        except Exception:
            return
        new = [n for n in nodes if n["NodeID"] not in self.readers]
        if not new:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray.cloudpickle.register_pickle_by_value(ray_logs)
        reader = ray.remote(num_cpus=0, max_restarts=0)(ray_logs.NodeLogReader)
        started = {}
        for node in new:
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            handle = reader.options(scheduling_strategy=strategy).remote(
                list(self.jobs), node.get("NodeManagerAddress", "")
            )
            started[node["NodeID"]] = (handle, handle.add_job.remote(self.jobs[-1]))
        for node_id, (handle, ready) in started.items():
            try:
                ray.get(ready, timeout=_READER_TIMEOUT_S)
            except Exception as exc:
                self.note(f"output printed on node {node_id[:8]} will not be shown: {_brief(exc)}")
                continue
            self.readers[node_id] = handle


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
