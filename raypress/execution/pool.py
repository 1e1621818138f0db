"""Runs posts in parallel sessions: the fork server, the posts' Ray clusters, the threads."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

from raypress.errors import Problem
from raypress.execution import ray_cluster
from raypress.execution.capture import new_marker_prefix
from raypress.execution.driver import Limits, Outcome, drive
from raypress.execution.environment import MachineInfo, environment, machine_info
from raypress.execution.forkclient import ForkServerClient, ForkServerError
from raypress.execution.forkserver import WARMABLE
from raypress.execution.imports import needs_ray, top_level_imports
from raypress.execution.model import (
    ExecutionSettings,
    InlineResult,
    PostExecution,
    PostRun,
    Snippet,
    SnippetResult,
)
from raypress.execution.protocol import InlineCode, RayPlan, SessionPlan, SnippetCode
from raypress.execution.ray_pool import ClusterPool, PoolSettings, PostClusters
from raypress.execution.ray_shape import predict_shape
from raypress.execution.session_env import base_env

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_JANITOR_TIMEOUT_S = 30.0


def uses_ray(run: PostRun) -> bool:
    """True when the parse stage said so or a snippet to run imports ray."""
    return run.uses_ray or any(
        "ray" in top_level_imports(s.source) for s in run.snippets if s.options.eval
    )


def snippet_timeout(run: PostRun, index: int, settings: ExecutionSettings) -> float:
    """Seconds allowed to a snippet, all its repeats included."""
    snippet = run.snippets[index]
    timeout = snippet.options.timeout or run.timeout or settings.snippet_timeout
    return float(timeout) * max(1, snippet.options.repeat)


def snippet_code(snippet: Snippet) -> SnippetCode:
    """What the session needs of a snippet."""
    options = snippet.options
    return SnippetCode(
        index=snippet.index,
        code_line=snippet.code_line,
        source=snippet.source,
        run=options.eval,
        expect_error=options.error,
        repeat=options.repeat,
        label=options.label,
    )


class Executor:
    """One build's execution machinery; use as a context manager around :meth:`run`."""

    def __init__(self, settings: ExecutionSettings, runs: Sequence[PostRun] = ()) -> None:
        self.settings = settings
        self.log = settings.log or (lambda _message: None)
        self.machine: MachineInfo = machine_info()
        self.root = Path(tempfile.mkdtemp(prefix="raypress-", dir=settings.temp_root))
        self.short_root = ray_cluster.short_temp_dir()  # Ray's socket paths must stay short
        self.base_env = base_env(os.environ, _PACKAGE_ROOT)
        self.clusters: ClusterPool | None = None  # created when a post first asks for one
        # Ray reads its authentication settings once per process, so the fork server needs
        # them before it imports ray: a fresh token, dropped if the namespace works out.
        if settings.ray_address:
            self.ray_auth = ray_cluster.external_auth_env(os.environ)
        else:
            self.ray_auth = ray_cluster.auth_env(False, secrets.token_hex(32))
        self.server = ForkServerClient(
            {**self.base_env, **ray_cluster.SESSION_RAY_ENV, **self.ray_auth},
            "host" if settings.ray_address else settings.network,
            self._warm_modules(runs),
        )
        self.isolated_network = self.server.ready.isolated_network
        if settings.network == "isolated" and not self.isolated_network:
            self.server.close()
            raise RuntimeError(f"network isolation was required: {self.server.ready.problem}")
        if self.isolated_network:
            self.ray_auth = ray_cluster.auth_env(True, None)
        if self.server.ready.problem:
            self.log(f"execution: {self.server.ready.problem}; Ray uses token authentication")
        self.counter = 0
        self.lock = threading.Lock()
        self.ray_warm: Future[object] | None = None
        self._prepare_ray(runs)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        runs: Sequence[PostRun],
        progress: Callable[[PostExecution], None] | None = None,
    ) -> list[PostExecution]:
        """Execute the posts, at most ``jobs`` at once; results in the order of ``runs``."""
        self._prepare_ray(runs)
        results: list[PostExecution | None] = [None] * len(runs)
        order = sorted(range(len(runs)), key=lambda i: uses_ray(runs[i]))  # Ray posts last
        with ThreadPoolExecutor(max(1, self.settings.jobs), "raypress-post") as pool:
            futures = {pool.submit(self.execute, runs[i]): i for i in order}
            try:
                for future in as_completed(futures):
                    result = future.result()
                    results[futures[future]] = result
                    if progress is not None:
                        progress(result)
            except BaseException:  # Ctrl-C, or a bug: kill every session before waiting
                pool.shutdown(wait=False, cancel_futures=True)
                self.server.close()
                raise
        return [r for r in results if r is not None]

    def execute(self, run: PostRun) -> PostExecution:
        """Run one post in a fresh session (never raises for the post's own failures)."""
        return self.execute_outcome(run).execution

    def execute_outcome(self, run: PostRun) -> Outcome:
        """:meth:`execute`, with the session's Ray jobs and timeline."""
        started = time.perf_counter()
        try:
            plan = self._plan(run)
        except (ForkServerError, OSError) as exc:
            return Outcome(self._failed(run, f"could not start the session: {exc}", started), ())
        limits = Limits(
            snippet_timeouts={
                s.index: snippet_timeout(run, i, self.settings) for i, s in enumerate(run.snippets)
            },
            post_timeout=self.settings.post_timeout,
            output_cap=self.settings.output_cap_bytes,
        )
        broker = None
        if plan.ray is not None and plan.ray.mode == "build":
            broker = PostClusters(
                self.ray_pool,
                frozenset(s.index for s in run.snippets if s.options.eval and needs_ray(s.source)),
                predict_shape(s.source for s in run.snippets if s.options.eval),
            )
        try:
            outcome = drive(self.server, run, plan, limits, self.machine, ray=broker)
        except ForkServerError as exc:
            message = f"could not start the session: {exc}"
            return Outcome(self._failed(run, message, started), ())
        finally:
            if broker is not None:
                broker.close()
            shutil.rmtree(Path(plan.cwd).parent, ignore_errors=True)
        if outcome.execution.status in ("timed-out", "died"):
            self._clean_up_jobs(run, plan, outcome.ray_jobs)
        return outcome

    def close(self) -> None:
        """Stop the clusters and the fork server, remove the temp folders."""
        try:
            if self.clusters is not None:
                self.clusters.close()
            self.server.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.short_root, ignore_errors=True)

    def _warm_modules(self, runs: Sequence[PostRun]) -> tuple[str, ...]:
        """What the fork server imports at start: the warmable modules the posts import."""
        wanted = set(self.settings.prewarm)
        for run in runs:
            for snippet in run.snippets:
                names = top_level_imports(snippet.source)
                wanted |= names & WARMABLE.keys()
                if "matplotlib" in names:
                    wanted.add("matplotlib.pyplot")
        wanted.discard("ray")  # imported on request, once a post needs it
        return tuple(sorted(wanted))

    def ray_pool(self) -> ClusterPool:
        """The build's Ray clusters (created on first use)."""
        with self.lock:
            if self.clusters is None:
                self.clusters = ClusterPool(
                    self.server,
                    {**self.base_env, **self.ray_auth},
                    PoolSettings(
                        isolated_network=self.isolated_network,
                        default_cpus=self.settings.ray_num_cpus,
                        start_timeout=self.settings.ray_start_timeout,
                        keep_warm=self.settings.ray_keep_warm,
                    ),
                    self.short_root,
                    self.log,
                )
            return self.clusters

    def _prepare_ray(self, runs: Sequence[PostRun]) -> None:
        """Warm ``import ray`` in the fork server if a post needs it (no cluster yet: a
        post's cluster starts when a snippet that needs Ray is about to run)."""
        if not any(uses_ray(run) for run in runs):
            return
        with self.lock:
            if self.ray_warm is None:
                self.ray_warm = self.server.warm(["ray"])

    def _plan(self, run: PostRun) -> SessionPlan:
        with self.lock:
            self.counter += 1
            number = self.counter
        slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(run.post).stem).strip("-")[:40] or "post"
        folder = self.root / f"{number:03d}-{slug}"
        cwd, tmp = folder / "work", folder / "tmp"
        cwd.mkdir(parents=True)
        tmp.mkdir()
        env = {
            **self.base_env,
            **ray_cluster.SESSION_RAY_ENV,
            **self.ray_auth,
            "TMPDIR": str(tmp),
        }
        namespace = f"raypress-{slug}-{secrets.token_hex(4)}"
        ray = self._ray_plan(run, namespace, number, env)
        return SessionPlan(
            post=run.post,
            post_dir=str(run.post_dir),
            cwd=str(cwd),
            snippets=tuple(snippet_code(s) for s in run.snippets),
            inline=tuple(
                InlineCode(i.index, i.line, i.source, i.after_snippet) for i in run.inline
            ),
            env=tuple(env.items()),
            marker=new_marker_prefix(),
            memory_limit_bytes=self.settings.memory_limit_bytes,
            ray=ray,
        )

    def _ray_plan(self, run: PostRun, namespace: str, number: int, env: dict[str, str]) -> RayPlan:
        """How the session's ``ray.init`` behaves; updates ``env`` with Ray's settings."""
        node_ip = ray_cluster.LOOPBACK if self.isolated_network else None
        if run.ray_mode == "isolated":  # the session's ray.init starts a private cluster
            temp_dir = str(Path(self.short_root) / f"i{number}")
            return RayPlan("isolated", None, namespace, node_ip, temp_dir, True)
        if self.settings.ray_address:
            env["RAY_ADDRESS"] = self.settings.ray_address
            address = self.settings.ray_address
            # drivers of a cluster run on one of its nodes, whose worker logs they read;
            # only Ray Client ("ray://") has none, and gets Ray's forwarded output
            local_logs = not address.startswith("ray://")
            return RayPlan("external", address, namespace, None, None, local_logs)
        # the default: ray.init asks the build for a fresh cluster of its own shape
        return RayPlan("build", None, namespace, node_ip, None, True)

    def _clean_up_jobs(self, run: PostRun, plan: SessionPlan, jobs: tuple[str, ...]) -> None:
        """After a killed session: a janitor session kills the detached actors its jobs left."""
        if not jobs or plan.ray is None or plan.ray.mode != "external":
            return  # the build's own clusters are stopped with everything on them
        folder = self.root / f"janitor-{secrets.token_hex(4)}"
        (folder / "work").mkdir(parents=True)
        janitor = SessionPlan(
            post=run.post,
            post_dir=plan.post_dir,
            cwd=str(folder / "work"),
            snippets=(),
            inline=(),
            env=plan.env,
            marker=new_marker_prefix(),
            memory_limit_bytes=None,
            ray=plan.ray,
            janitor_jobs=jobs,
        )
        empty = PostRun(run.post, run.post_dir, ())
        limits = Limits({}, _JANITOR_TIMEOUT_S, self.settings.output_cap_bytes)
        try:
            drive(self.server, empty, janitor, limits, self.machine)
        except ForkServerError:
            pass
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _failed(self, run: PostRun, message: str, started: float) -> PostExecution:
        return PostExecution(
            post=run.post,
            status="died",
            snippets=tuple(
                SnippetResult(s.index, "skipped" if not s.options.eval else "not-run")
                for s in run.snippets
            ),
            inline=tuple(
                InlineResult(i.index, None, "not evaluated: " + message) for i in run.inline
            ),
            environment=environment(self.machine, (), None, None),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_s=time.perf_counter() - started,
            messages=(message,),
            problems=(Problem(run.post, None, message),),
        )
