"""Runs posts in parallel sessions: the fork server, the lazy Ray cluster, the threads."""

from __future__ import annotations

import contextlib
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
from typing import Any

from raypress.errors import Problem
from raypress.execution import ray_cluster, resources
from raypress.execution.capture import new_marker_prefix
from raypress.execution.driver import Limits, Outcome, drive
from raypress.execution.environment import MachineInfo, environment, machine_info
from raypress.execution.forkclient import ForkServerClient, ForkServerError
from raypress.execution.forkserver import WARMABLE
from raypress.execution.imports import top_level_imports
from raypress.execution.model import (
    ExecutionSettings,
    InlineResult,
    PostExecution,
    PostRun,
    PostStatus,
    ProgressEvent,
    ProgressKind,
    Snippet,
    SnippetResult,
)
from raypress.execution.protocol import (
    InlineCode,
    RayPlan,
    SessionEvent,
    SessionPlan,
    SnippetCode,
    SnippetDone,
)
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


def report_progress(
    settings: ExecutionSettings, kind: ProgressKind, post: str = "", **fields: Any
) -> None:
    """Tell ``settings.progress`` (a live status) what happens now."""
    if settings.progress is not None:
        settings.progress(ProgressEvent(kind, post, **fields))


def post_limits(run: PostRun, settings: ExecutionSettings) -> Limits:
    """The deadlines and output cap of ``run``'s session."""
    return Limits(
        snippet_timeouts={
            s.index: snippet_timeout(run, i, settings) for i, s in enumerate(run.snippets)
        },
        post_timeout=settings.post_timeout,
        output_cap=settings.output_cap_bytes,
    )


def post_slug(post: str) -> str:
    """A short, safe name for a post's folders and Ray namespace."""
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(post).stem).strip("-")[:40] or "post"


def session_plan(
    run: PostRun,
    folder: Path,
    env: dict[str, str],
    ray: RayPlan | None,
    memory_limit_bytes: int | None,
) -> SessionPlan:
    """The plan of ``run``'s session, its working and temporary folders made in ``folder``."""
    cwd, tmp = folder / "work", folder / "tmp"
    cwd.mkdir(parents=True)
    tmp.mkdir()
    return SessionPlan(
        post=run.post,
        post_dir=str(run.post_dir),
        cwd=str(cwd),
        snippets=tuple(snippet_code(s) for s in run.snippets),
        inline=tuple(InlineCode(i.index, i.line, i.source, i.after_snippet) for i in run.inline),
        env=(*env.items(), ("TMPDIR", str(tmp))),
        marker=new_marker_prefix(),
        memory_limit_bytes=memory_limit_bytes,
        ray=ray,
    )


def clean_up_jobs(
    server: ForkServerClient,
    run: PostRun,
    plan: SessionPlan,
    jobs: tuple[str, ...],
    root: Path,
    output_cap: int,
    machine: MachineInfo,
) -> None:
    """After a killed session: a janitor session kills the detached actors its jobs left."""
    if not jobs or plan.ray is None or plan.ray.mode != "shared":
        return
    folder = root / f"janitor-{secrets.token_hex(4)}"
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
    limits = Limits({}, _JANITOR_TIMEOUT_S, output_cap)
    try:
        drive(server, empty, janitor, limits, machine)
    except ForkServerError:
        pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Executor:
    """One build's execution machinery; use as a context manager around :meth:`run`."""

    def __init__(self, settings: ExecutionSettings, runs: Sequence[PostRun] = ()) -> None:
        self.settings = settings
        self.log = settings.log or (lambda _message: None)
        self.machine: MachineInfo = machine_info()
        self.root = Path(tempfile.mkdtemp(prefix="raypress-", dir=settings.temp_root))
        self.short_root = ray_cluster.short_temp_dir()  # Ray's socket paths must stay short
        self.base_env = base_env(os.environ, _PACKAGE_ROOT)
        self.cluster: ray_cluster.BuildCluster | None = None
        self.cluster_future: Future[ray_cluster.BuildCluster] | None = None
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
        outcome = self._execute_outcome(run)
        self._report("post-done", run.post, status=outcome.execution.status)
        return outcome

    def _report(self, kind: ProgressKind, post: str = "", **fields: Any) -> None:
        report_progress(self.settings, kind, post, **fields)

    def _notifier(self, run: PostRun) -> Callable[[SessionEvent], None] | None:
        """What the driver calls as the post's snippets start and end."""
        if self.settings.progress is None:
            return None
        lines = {s.index: s.line for s in run.snippets}

        def notify(event: SessionEvent) -> None:
            kind: ProgressKind = "snippet-started"
            status = ""
            if isinstance(event, SnippetDone):
                kind, status = "snippet-done", event.status
            index = event.index
            self._report(kind, run.post, snippet=index + 1, line=lines.get(index), status=status)

        return notify

    def _execute_outcome(self, run: PostRun) -> Outcome:
        started = time.perf_counter()
        unmet = unmet_resources(run, [resources.this_machine()], "this machine")
        if unmet is not None:
            return Outcome(unrun_execution(run, "died", unmet, started), ())
        try:
            plan = self._plan(run)
        except (ray_cluster.ClusterError, ForkServerError, OSError) as exc:
            return Outcome(self._failed(run, f"could not start the session: {exc}", started), ())
        limits = post_limits(run, self.settings)
        cluster = self.cluster if plan.ray and plan.ray.mode == "shared" else None
        self._report("post-started", run.post, count=sum(s.options.eval for s in run.snippets))
        try:
            outcome = drive(
                self.server,
                run,
                plan,
                limits,
                self.machine,
                cluster.failure if cluster else lambda: None,
                self._notifier(run),
            )
        except ForkServerError as exc:
            message = f"could not start the session: {exc}"
            return Outcome(self._failed(run, message, started), ())
        finally:
            shutil.rmtree(Path(plan.cwd).parent, ignore_errors=True)
        if outcome.execution.status in ("timed-out", "died"):
            self._clean_up_jobs(run, plan, outcome.ray_jobs)
        return outcome

    def close(self) -> None:
        """Stop the cluster and the fork server, remove the temp folders."""
        if self.cluster_future is not None:
            with contextlib.suppress(Exception):
                self.cluster_future.result()
        try:
            if self.cluster is not None:
                self.cluster.stop()  # ForkServerError once a Ctrl-C closed the server
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

    def start_ray(self) -> ray_cluster.BuildCluster | None:
        """Start the build's cluster now (tests, benchmarks); None with ``ray_address``."""
        probe = PostRun("<ray>", Path(self.root), (), uses_ray=True)
        self._prepare_ray([probe])
        return self.cluster_future.result() if self.cluster_future else None

    def _prepare_ray(self, runs: Sequence[PostRun]) -> None:
        """Warm ``import ray`` and start the cluster in the background, if a post needs it."""
        ray_runs = [run for run in runs if uses_ray(run)]
        if not ray_runs:
            return
        with self.lock:
            if self.ray_warm is None:
                self.ray_warm = self.server.warm(["ray"])
            shared = any(run.ray_mode == "shared" for run in ray_runs)
            if not shared or self.settings.ray_address or self.cluster_future is not None:
                return
            self.cluster_future = Future()
        threading.Thread(target=self._start_cluster, name="ray-cluster", daemon=True).start()

    def _start_cluster(self) -> None:
        assert self.cluster_future is not None
        options = ray_cluster.ClusterOptions(
            num_cpus=self.settings.ray_num_cpus or ray_cluster.default_num_cpus(),
            object_store_bytes=self.settings.ray_object_store_bytes
            or ray_cluster.default_object_store_bytes(),
            isolated_network=self.isolated_network,
        )
        self.log(f"execution: starting a Ray cluster ({options.num_cpus} logical CPUs)")
        self._report("cluster-starting", count=options.num_cpus)
        try:
            cluster = ray_cluster.BuildCluster(
                self.server, {**self.base_env, **self.ray_auth}, options, self.short_root
            )
        except BaseException as exc:
            self._report("cluster-failed", status=str(exc))
            self.cluster_future.set_exception(exc)
            return
        self._report("cluster-ready")
        self.cluster = cluster
        self.log(
            f"execution: Ray cluster at {cluster.address}, started in {cluster.started_s:.1f} s"
        )
        self.cluster_future.set_result(cluster)

    def _plan(self, run: PostRun) -> SessionPlan:
        with self.lock:
            self.counter += 1
            number = self.counter
        folder = self.root / f"{number:03d}-{post_slug(run.post)}"
        env = {**self.base_env, **ray_cluster.SESSION_RAY_ENV, **self.ray_auth}
        namespace = f"raypress-{post_slug(run.post)}-{secrets.token_hex(4)}"
        ray = self._ray_plan(run, namespace, number, env)
        return session_plan(run, folder, env, ray, self.settings.memory_limit_bytes)

    def _ray_plan(self, run: PostRun, namespace: str, number: int, env: dict[str, str]) -> RayPlan:
        """How the session's ``ray.init`` behaves; updates ``env`` with Ray's settings."""
        node_ip = ray_cluster.LOOPBACK if self.isolated_network else None
        if run.ray_mode == "shared" and uses_ray(run):
            if self.settings.ray_address:
                env["RAY_ADDRESS"] = self.settings.ray_address
                address = self.settings.ray_address
                # drivers of a cluster run on one of its nodes, whose worker logs are local;
                # only Ray Client ("ray://") has none, and gets Ray's forwarded output
                local_logs = not address.startswith("ray://")
                return RayPlan("shared", address, namespace, None, None, local_logs)
            assert self.cluster_future is not None
            cluster = self.cluster_future.result()
            if cluster.failure():
                raise ray_cluster.ClusterError(cluster.failure())
            env["RAY_ADDRESS"] = cluster.address
            return RayPlan("shared", cluster.address, namespace, node_ip, None, True)
        # isolated posts, and posts whose use of Ray was not detected: a private cluster
        temp_dir = str(Path(self.short_root) / f"i{number}")
        return RayPlan("isolated", None, namespace, node_ip, temp_dir, True)

    def _clean_up_jobs(self, run: PostRun, plan: SessionPlan, jobs: tuple[str, ...]) -> None:
        """After a killed session: a janitor session kills the detached actors its jobs left."""
        if self.cluster is not None and self.cluster.failure():
            return  # nothing left to clean, and nothing to connect to
        clean_up_jobs(
            self.server, run, plan, jobs, self.root, self.settings.output_cap_bytes, self.machine
        )

    def _failed(self, run: PostRun, message: str, started: float) -> PostExecution:
        return unrun_execution(run, "died", Problem(run.post, None, message), started)


def unrun_execution(
    run: PostRun, status: PostStatus, problem: Problem, started: float
) -> PostExecution:
    """The result of a post whose session never ran: ``problem`` says why."""
    message = problem.message
    return PostExecution(
        post=run.post,
        status=status,
        snippets=tuple(
            SnippetResult(s.index, "skipped" if not s.options.eval else "not-run")
            for s in run.snippets
        ),
        inline=tuple(InlineResult(i.index, None, "not evaluated: " + message) for i in run.inline),
        environment=environment(machine_info(), (), None, None),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_s=time.perf_counter() - started,
        messages=(message,),
        problems=(problem,),
    )


def unmet_resources(run: PostRun, nodes: Sequence[dict[str, float]], where: str) -> Problem | None:
    """A problem on the post's ``resources`` line when no node of ``nodes`` can hold them."""
    message = resources.unmet(run.resources, nodes, where)
    if message is None:
        return None
    hint = "run it on a Ray cluster that has them (--ray-address), or change `resources`"
    return Problem(run.post, run.resources_line, message, hint)
