"""Build side: a fresh Ray cluster for each post, of the shape its ``ray.init`` asked for.

Why a cluster per post rather than one shared cluster (or a placement group per post):
a post must run on the resources it asked for (``ray.init(num_cpus=4)`` on a 2-core
machine runs 8 tasks in two waves, as the plain script does; ``ray.cluster_resources()``
says 4 CPUs), and its timings must be the plain script's. A placement group gives the
resources but not ``cluster_resources()``, renames them, and needs every task rewritten
to use it; a shared cluster reused by the next post is measurably slower for that post's
first batch of tasks (Ray prestarts one worker per CPU only for a cluster's first
driver: measured 2.3 s instead of 1.7 s for 8 x 0.5 s tasks on 4 CPUs). So each post's
session gets a cluster nobody has used, exactly as ``ray.init`` in a script does, and
it is stopped when the post ends (or calls ``ray.shutdown()``).

The start is hidden where it can be: when a snippet that needs Ray is about to run, the
cluster the post will ask for (predicted from its literal ``ray.init`` arguments) starts
in the background, and ``ray.init`` takes it if the shape matches. A warm pool
(``keep_warm``, for ``serve``) starts a replacement after each use. Requests that cannot
be met (GPUs the machine does not have) are refused at once with a message.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from raypress.execution.forkclient import ForkServerClient
from raypress.execution.protocol import RayReply, RayRequest
from raypress.execution.ray_cluster import (
    BuildCluster,
    ClusterError,
    ClusterOptions,
    start_cluster,
)
from raypress.execution.ray_shape import ClusterShape, ShapeError, size_text

_MAX_SPARES = 2  # idle clusters kept started at once


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How the build's clusters are started."""

    isolated_network: bool
    default_cpus: int | None = None  # for ray.init() without num_cpus (None: Ray's)
    start_timeout: float = 120.0
    keep_warm: bool = False  # start a replacement after each use (serve)
    in_sandbox: bool = False  # clusters' folders are made by Ray in the sandbox's ``parent``
    cgroup_procs: str | None = None  # the memory cgroup every head joins


class ClusterPool:
    """Fresh clusters by shape: started ahead where predictable, each used by one post."""

    def __init__(
        self,
        server: ForkServerClient,
        base_env: Mapping[str, str],
        settings: PoolSettings,
        parent: str,
        log: Callable[[str], None],
        next_folder: Callable[[], str | None] = lambda: None,
        report: Callable[[str, int], None] = lambda _kind, _cpus: None,
    ) -> None:
        self.server = server
        self.next_folder = next_folder  # the folder of the next post's clusters (keep_warm)
        self.report = report  # "cluster-starting"/"cluster-ready"/"cluster-failed", CPUs
        self.base_env = dict(base_env)
        self.settings = settings
        self.parent = parent
        self.log = log
        self.lock = threading.Lock()
        # (shape, folder, cluster): a spare serves only a request for its shape and folder
        self.spares: list[tuple[ClusterShape, str | None, Future[BuildCluster]]] = []
        self.in_use: set[BuildCluster] = set()
        self.stopping: list[threading.Thread] = []
        self.closed = False
        self.started = 0  # clusters started so far (for reports and tests)
        self.failures = 0  # starts given up (Ray's log is shown for the first only)
        self.attempts = 0  # clusters asked for (numbers their folders in the sandbox)

    def effective(self, shape: ClusterShape) -> ClusterShape:
        """``shape`` with the configured default CPUs for a ``ray.init`` that names none."""
        if shape.num_cpus is None and self.settings.default_cpus:
            return replace(shape, num_cpus=self.settings.default_cpus)
        return shape

    def prepare(self, shape: ClusterShape, folder: str | None = None) -> None:
        """Start a cluster of ``shape`` in the background unless one is already spare
        (``folder``: where its files go in the sandbox, the post's own; None: the pool's)."""
        shape = self.effective(shape)
        if refusal(shape) is not None:
            return
        with self.lock:
            if self.closed or any(s == shape and f == folder for s, f, _ in self.spares):
                return
            future: Future[BuildCluster] = Future()
            self.spares.append((shape, folder, future))
            evicted = self._evict_locked()
        for old in evicted:
            self._stop_later(old)
        threading.Thread(
            target=self._start, args=(shape, future, folder), name="ray-cluster", daemon=True
        ).start()

    def acquire(self, shape: ClusterShape, folder: str | None = None) -> BuildCluster:
        """A cluster of ``shape`` for one post (blocks while it starts); ClusterError if
        it cannot be had."""
        shape = self.effective(shape)
        reason = refusal(shape)
        if reason is not None:
            raise ClusterError(reason)
        with self.lock:
            if self.closed:
                raise ClusterError("the build is stopping")
            spare = next((c for s, f, c in self.spares if s == shape and f == folder), None)
            if spare is not None:
                self.spares = [entry for entry in self.spares if entry[2] is not spare]
        if spare is None:
            spare = Future()
            self._start(shape, spare, folder)
        cluster = spare.result()
        with self.lock:
            if self.closed:
                self._stop_later(spare)
                raise ClusterError("the build is stopping")
            self.in_use.add(cluster)
        return cluster

    def release(self, cluster: BuildCluster) -> None:
        """The post is done with ``cluster``: stop it (in the background)."""
        with self.lock:
            self.in_use.discard(cluster)
        done: Future[BuildCluster] = Future()
        done.set_result(cluster)
        self._stop_later(done)
        if self.settings.keep_warm and not cluster.failure():
            self.prepare(cluster.shape, self.next_folder())

    def discard(self, folder: str) -> None:
        """Stop the spares started for ``folder`` (its post has ended)."""
        with self.lock:
            gone = [future for _, f, future in self.spares if f == folder]
            self.spares = [entry for entry in self.spares if entry[1] != folder]
        for future in gone:
            self._stop_later(future)

    def close(self) -> None:
        """Stop every cluster (waiting for those still starting)."""
        with self.lock:
            self.closed = True
            spares = [future for _, _, future in self.spares]
            self.spares = []
            in_use = list(self.in_use)
            self.in_use.clear()
        for future in spares:
            with contextlib.suppress(Exception):
                future.result().stop()
        for cluster in in_use:
            cluster.stop()
        for thread in list(self.stopping):
            thread.join(timeout=15)

    def _start(
        self, shape: ClusterShape, future: Future[BuildCluster], folder: str | None = None
    ) -> None:
        began = time.perf_counter()
        with self.lock:
            self.attempts += 1
            number = self.attempts
        options = ClusterOptions(
            shape=shape,
            isolated_network=self.settings.isolated_network,
            start_timeout=self.settings.start_timeout,
            temp_dir=f"{folder or self.parent}/c{number}" if self.settings.in_sandbox else None,
            cgroup_procs=self.settings.cgroup_procs,
        )
        self.report("cluster-starting", int(shape.num_cpus or os.cpu_count() or 1))
        try:
            cluster = start_cluster(self.server, self.base_env, options, self.parent, self.log)
        except ClusterError as exc:
            with self.lock:
                self.failures += 1
                first = self.failures == 1
            if first:  # the same machine, the same story: Ray's log once per build
                self.log(f"execution: Ray's output from the last start attempt:\n{exc.output}")
            self.report("cluster-failed", 0)
            future.set_exception(exc)
            return
        except BaseException as exc:
            self.report("cluster-failed", 0)
            future.set_exception(ClusterError(str(exc)))
            return
        self.report("cluster-ready", 0)
        with self.lock:
            self.started += 1
        self.log(
            f"execution: Ray cluster ({shape.requested()}) at {cluster.address}, "
            f"started in {time.perf_counter() - began:.1f} s"
        )
        future.set_result(cluster)

    def _evict_locked(self) -> list[Future[BuildCluster]]:
        evicted = []
        while len(self.spares) > _MAX_SPARES:
            _, _, future = self.spares.pop(0)
            evicted.append(future)
        return evicted

    def _stop_later(self, future: Future[BuildCluster]) -> None:
        def stop() -> None:
            with contextlib.suppress(Exception):
                future.result().stop()

        thread = threading.Thread(target=stop, name="ray-cluster-stop", daemon=True)
        with self.lock:
            self.stopping = [t for t in self.stopping if t.is_alive()] + [thread]
        thread.start()


def refusal(shape: ClusterShape) -> str | None:
    """Why a cluster of ``shape`` cannot be started on this machine (None: it can)."""
    if shape.num_gpus:
        have = machine_gpus()
        if shape.num_gpus > have:
            found = "has no GPU" if have == 0 else f"has only {have} GPU{'s' * (have > 1)}"
            return (
                f"this machine {found}, so no cluster with num_gpus={shape.num_gpus} can be "
                "started for it (run the post where a GPU is, or on a cluster that has "
                "one with --ray-address)"
            )
    if shape.object_store_memory is not None:
        total = machine_memory()
        if total and shape.object_store_memory > total:
            return (
                f"object_store_memory={shape.object_store_memory} is more than this "
                f"machine's memory ({size_text(total)})"
            )
    return None


def machine_gpus() -> int:
    """NVIDIA GPUs this machine has (as Ray would count them: CUDA_VISIBLE_DEVICES first)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len(list(Path("/proc/driver/nvidia/gpus").iterdir()))
    except OSError:
        return 0


def machine_memory() -> int:
    """Total memory in bytes (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def shape_from_request(data: Mapping[str, object]) -> ClusterShape:
    """The shape a session asked for; ClusterError when malformed."""
    try:
        return ClusterShape.from_json(data)
    except ShapeError as exc:
        raise ClusterError(str(exc)) from None


class PostClusters:
    """The clusters of one post's session (the driver's ``RayBroker``)."""

    def __init__(
        self,
        pool: Callable[[], ClusterPool],
        ray_snippets: frozenset[int],
        predicted: ClusterShape | None,
        folder: str | None = None,
    ) -> None:
        self.pool = pool
        self.folder = folder  # the post's own folder for its clusters' files (sandbox)
        self.ray_snippets = ray_snippets
        self.predicted = predicted
        self.prepared = False
        self.lock = threading.Lock()
        self.current: BuildCluster | None = None
        self.closed = False

    def starting(self, index: int) -> None:
        """A snippet that needs Ray is about to run: start the predicted cluster now."""
        if self.prepared or index not in self.ray_snippets or self.predicted is None:
            return
        self.prepared = True
        with contextlib.suppress(ClusterError):
            self.pool().prepare(self.predicted, self.folder)

    def request(self, event: RayRequest) -> RayReply:
        """A fresh cluster of the shape ``ray.init`` asked for."""
        began = time.perf_counter()
        self.release()
        try:
            cluster = self.pool().acquire(shape_from_request(event.shape), self.folder)
        except ClusterError as exc:
            return RayReply(None, str(exc), time.perf_counter() - began)
        with self.lock:
            if self.closed:  # the session ended while its cluster was starting
                self.pool().release(cluster)
                return RayReply(None, "the session has ended", time.perf_counter() - began)
            self.current = cluster
        return RayReply(cluster.address, None, time.perf_counter() - began)

    def release(self) -> None:
        """Stop the session's cluster (after ``ray.shutdown()``, or at the end)."""
        with self.lock:
            cluster, self.current = self.current, None
        if cluster is not None:
            self.pool().release(cluster)

    def failure(self) -> str | None:
        cluster = self.current
        return cluster.failure() if cluster is not None else None

    def close(self) -> None:
        """The session has ended."""
        with self.lock:
            self.closed = True
        self.release()
