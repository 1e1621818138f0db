"""Build side of sessions as cluster work: every post's session runs on a Ray cluster node.

With ``--ray-address`` (and ``--executor ray`` on the build's own cluster) the build
process connects to the cluster as a driver, starts one :class:`SessionHost` per alive
node (each a pre-warmed fork server there) and submits each post as a Ray task
(:func:`~raypress.execution.session_host.run_post`) with the post's session resources,
so Ray's scheduler chooses the node. The build machine only plans, renders and writes.

Failures outside the post are told apart from the post's own: a lost node or session
host retries the post once on another node (the retry is reported), and what still
fails comes back with status ``infrastructure``, which never replaces a record and makes
``check`` exit 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from raypress.errors import Problem
from raypress.execution import ray_cluster
from raypress.execution.forkclient import ForkServerClient
from raypress.execution.imports import top_level_imports
from raypress.execution.model import (
    ClusterUnavailable,
    ExecutionSettings,
    ExecutionUnavailable,
    PostExecution,
    PostRun,
    ProgressKind,
)
from raypress.execution.pool import (
    post_limits,
    report_progress,
    unmet_resources,
    unrun_execution,
)
from raypress.execution.protocol import WARMABLE
from raypress.execution.ray_address import AddressError, check_address
from raypress.execution.ray_shape import ClusterShape
from raypress.execution.session_env import base_env
from raypress.execution.session_host import (
    RemoteRun,
    SessionHost,
    pack_folder,
    run_post,
    warm_worker,
)

_HOST_START_TIMEOUT_S = 120.0
_WARM_WORKERS = 8  # worker processes started ahead per node, at most
_HOST_THREADS = 256  # posts one session host may run at once (Ray schedules the tasks)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class ClusterExecutor:
    """Runs posts as Ray tasks on a cluster; use as a context manager around :meth:`run`."""

    def __init__(self, settings: ExecutionSettings, runs: Sequence[PostRun] = ()) -> None:
        self.settings = settings
        self.log = settings.log or (lambda _message: None)
        self.failure: str | None = None  # the engine's own machinery never dies mid-run here
        if settings.sandbox == "required":
            raise ExecutionUnavailable(
                "full isolation was required, but sessions on a Ray cluster's nodes run "
                "without the build's sandbox (see README: Security model)"
            )
        self.own_cluster: ray_cluster.BuildCluster | None = None
        self.launcher: ForkServerClient | None = None
        self.hosts: dict[str, Any] = {}  # node id -> its SessionHost actor
        self.folders: dict[Path, tuple[str, Any]] = {}  # post folder -> (digest, ObjectRef)
        if settings.ray_address:
            try:
                address = check_address(settings.ray_address).text
            except AddressError as exc:
                raise ClusterUnavailable(str(exc)) from None
            self.ray_env = ray_cluster.external_auth_env(os.environ)
            self.session_address: str | None = None  # the cluster's own GCS address
        else:
            address = self._start_own_cluster()
            self.session_address = address
        self._report("cluster-starting")
        os.environ.update(self.ray_env)  # read once, when this process first imports ray
        import ray

        self.ray = ray
        self.remote_run_post = ray.remote(run_post)  # exported once, not once per post
        started = time.perf_counter()
        # raypress itself travels to the nodes with the job (Ray caches it by content)
        package = {"py_modules": [str(Path(_PACKAGE_ROOT) / "raypress")]}
        try:
            ray.init(
                address=address,
                namespace=f"raypress-build-{secrets.token_hex(4)}",
                log_to_driver=False,
                logging_level=logging.ERROR,
                runtime_env=package if settings.ship_raypress else None,
            )
        except Exception as exc:
            self.close()
            message = f"cannot connect to the Ray cluster at {address}: {exc}"
            raise ClusterUnavailable(message) from None
        self.address = address
        self._start_hosts(self._warm_modules(runs))
        self._report("cluster-ready", count=len(self.hosts))
        self.log(
            f"execution: sessions run on the Ray cluster at {address} "
            f"({len(self.hosts)} node(s) ready in {time.perf_counter() - started:.1f} s)"
        )

    def __enter__(self) -> ClusterExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        runs: Sequence[PostRun],
        progress: Callable[[PostExecution], None] | None = None,
    ) -> list[PostExecution]:
        """Execute the posts on the cluster; results in the order of ``runs``."""
        ray = self.ray
        results: list[PostExecution | None] = [None] * len(runs)
        pending: dict[Any, tuple[int, int, float]] = {}  # ref -> (index, attempt, submitted)
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        for index, run in enumerate(runs):
            unmet = unmet_resources(run, nodes, f"any node of the cluster at {self.address}")
            if unmet is not None:
                results[index] = unrun_execution(run, "died", unmet, time.perf_counter())
                if progress is not None:
                    progress(results[index])
                continue
            pending[self._submit(run)] = (index, 0, time.perf_counter())
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    index, attempt, submitted = pending.pop(ref)
                    run = runs[index]
                    result = self._collect(ref, run, attempt, submitted)
                    if result is None:  # the node was lost: once more, elsewhere
                        pending[self._submit(run)] = (index, attempt + 1, time.perf_counter())
                        continue
                    results[index] = result
                    self._report("post-done", run.post, status=result.status)
                    if progress is not None:
                        progress(result)
        except BaseException:  # Ctrl-C, or a bug: stop every session before leaving
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return [r for r in results if r is not None]

    def execute(self, run: PostRun) -> PostExecution:
        """Run one post (for tests and benchmarks)."""
        return self.run([run])[0]

    def close(self) -> None:
        """Stop the session hosts, disconnect, and stop the build's own cluster if any."""
        ray = self.ray if hasattr(self, "ray") else None
        try:
            if ray is not None and ray.is_initialized():
                for host in self.hosts.values():
                    with contextlib.suppress(Exception):
                        ray.get(host.close.remote(), timeout=15)
                    with contextlib.suppress(Exception):
                        ray.kill(host)
                ray.shutdown()
        finally:
            if self.own_cluster is not None:
                self.own_cluster.stop()
                shutil.rmtree(self.own_temp, ignore_errors=True)
            if self.launcher is not None:
                self.launcher.close()

    # -- internals -----------------------------------------------------------------------

    def _report(self, kind: ProgressKind, post: str = "", **fields: Any) -> None:
        """The cluster's start and each post's end (a remote post's snippets are not
        followed one by one)."""
        report_progress(self.settings, kind, post, **fields)

    def _start_own_cluster(self) -> str:
        """``--executor ray`` without an address: a cluster of this machine, started as a
        local build starts it, but on the machine's network (the build process connects to
        it as a driver) and therefore always with a fresh token."""
        self.ray_env = ray_cluster.auth_env(secrets.token_hex(32))
        env = {**base_env(os.environ, _PACKAGE_ROOT), **self.ray_env}
        self.launcher = ForkServerClient(env, "host", ())
        options = ray_cluster.ClusterOptions(
            shape=ClusterShape(num_cpus=self.settings.ray_num_cpus),
            isolated_network=False,
            start_timeout=self.settings.ray_start_timeout,
        )
        self.own_temp = ray_cluster.short_temp_dir()
        try:
            self.own_cluster = ray_cluster.start_cluster(
                self.launcher, env, options, self.own_temp, self.log
            )
        except ray_cluster.ClusterError as exc:
            self.launcher.close()
            shutil.rmtree(self.own_temp, ignore_errors=True)
            raise ClusterUnavailable(str(exc)) from None
        return self.own_cluster.address

    def _warm_modules(self, runs: Sequence[PostRun]) -> tuple[str, ...]:
        wanted = set(self.settings.prewarm)
        for run in runs:
            for snippet in run.snippets:
                wanted |= top_level_imports(snippet.source) & WARMABLE.keys()
        return tuple(sorted(wanted))

    def _start_hosts(self, warm: tuple[str, ...]) -> None:
        """One session host per alive node, started side by side, and as many warm worker
        processes per node as it has CPUs (up to :data:`_WARM_WORKERS`): the first posts
        do not wait for Ray to start workers one node after another."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        host_class = ray.remote(SessionHost)
        warmer = ray.remote(warm_worker)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        hosts, warming = [], []
        for node in nodes:
            pinned = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            hosts.append(
                host_class.options(
                    num_cpus=0,
                    max_restarts=0,
                    max_concurrency=_HOST_THREADS,
                    scheduling_strategy=pinned,
                ).remote(self.ray_env, "host", warm)
            )
            workers = min(_WARM_WORKERS, int(node["Resources"].get("CPU", 0)))
            warming += [
                warmer.options(num_cpus=1, scheduling_strategy=pinned).remote()
                for _ in range(workers)
            ]
        refs = [host.node.remote() for host in hosts]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_HOST_START_TIMEOUT_S)
        ray.wait(warming, num_returns=len(warming), timeout=_HOST_START_TIMEOUT_S)
        for host, ref in zip(hosts, refs, strict=True):
            if ref not in ready:
                self.log(
                    "execution: a session host did not start in time; its node's posts "
                    "start their own fork server"
                )
                with contextlib.suppress(Exception):
                    ray.kill(host)
                continue
            try:
                node_id = ray.get(ref)
            except Exception as exc:
                self.log(f"execution: a session host failed to start: {exc}")
                continue
            self.hosts[node_id] = host

    def _submit(self, run: PostRun) -> Any:
        digest, folder = self._folder(run.post_dir)
        request = RemoteRun(
            run=run,
            folder_digest=digest,
            limits=post_limits(run, self.settings),
            ray_env=tuple(self.ray_env.items()),
            ray_address=self.session_address,
            memory_limit_bytes=self.settings.memory_limit_bytes,
            warm=(),
            network="host",
        )
        resources = dict(run.resources)
        task = self.remote_run_post.options(
            num_cpus=resources.pop("num_cpus", 1.0),
            num_gpus=resources.pop("num_gpus", 0.0),
            memory=resources.pop("memory", None),
            resources=resources or None,
            max_retries=0,
            name=f"raypress session {run.post}",
        )
        return task.remote(request, [folder], self.hosts)

    def _folder(self, post_dir: Path) -> tuple[str, Any]:
        """The post folder's archive in the object store (put once per folder and build)."""
        known = self.folders.get(post_dir)
        if known is None:
            digest, data = pack_folder(post_dir)
            known = self.folders[post_dir] = (digest, self.ray.put(data))
        return known

    def _collect(
        self, ref: Any, run: PostRun, attempt: int, submitted: float
    ) -> PostExecution | None:
        """The post's result; None when it should run again on another node."""
        exceptions = self.ray.exceptions
        try:
            result: PostExecution = self.ray.get(ref)
        except (
            exceptions.NodeDiedError,
            exceptions.WorkerCrashedError,
            exceptions.ActorDiedError,
            exceptions.ObjectLostError,
            exceptions.OwnerDiedError,
        ) as exc:
            if attempt == 0:
                self.log(
                    f"{run.post}: its node was lost ({type(exc).__name__}); "
                    "running it again on another node"
                )
                return None
            return infrastructure_failure(run, f"its node was lost twice: {exc}", submitted)
        except exceptions.RayError as exc:
            return infrastructure_failure(run, f"its session could not run: {exc}", submitted)
        if attempt:
            note = "ran again on another node after its first node was lost"
            result = dataclasses.replace(result, messages=(*result.messages, note))
        return result


def infrastructure_failure(run: PostRun, message: str, started: float) -> PostExecution:
    """A post that could not run for a reason outside it: never its record's business."""
    problem = Problem(run.post, None, f"infrastructure: {message}", "run it again (exit 2)")
    return unrun_execution(run, "infrastructure", problem, started)
