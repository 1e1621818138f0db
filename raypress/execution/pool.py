"""Runs posts in parallel sessions: the fork server, the posts' Ray clusters, the threads."""

from __future__ import annotations

import dataclasses
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
from typing import TYPE_CHECKING, Any

from raypress.errors import Problem
from raypress.execution import ray_cluster, resources
from raypress.execution.build_sandbox import (
    RAY_DIR,
    SANDBOX_ENV,
    TMP,
    Launcher,
    Layout,
)
from raypress.execution.capture import new_marker_prefix
from raypress.execution.cgroups import BuildCgroup
from raypress.execution.environment import MachineInfo, environment, machine_info
from raypress.execution.forkclient import ForkServerClient, ForkServerError
from raypress.execution.imports import needs_ray, top_level_imports
from raypress.execution.isolation import Isolation, probe
from raypress.execution.model import (
    GIB,
    ExecutionSettings,
    ExecutionUnavailable,
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
    CGROUP_DIR,
    WARMABLE,
    InlineCode,
    RayPlan,
    SessionEvent,
    SessionPlan,
    SnippetCode,
    SnippetDone,
)
from raypress.execution.ray_pool import ClusterPool, PoolSettings, PostClusters, machine_memory
from raypress.execution.ray_shape import ClusterShape, predict_shape
from raypress.execution.session_env import base_env

if TYPE_CHECKING:  # the driver is imported when a post first runs, after the engine starts
    from raypress.execution.driver import Limits, Outcome

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_JANITOR_TIMEOUT_S = 30.0
# How long a died session waits to learn whether the server died too: a live server
# answers at once; a dead one's channel closes once the kernel has killed everything in
# its sandbox (Ray's processes too), which took over a second on a busy machine.
_SERVER_NEWS_S = 15.0


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


def snippet_code(snippet: Snippet, figure_format: str = "png") -> SnippetCode:
    """What the session needs of a snippet (``figure_format``: the post's default)."""
    options = snippet.options
    return SnippetCode(
        index=snippet.index,
        code_line=snippet.code_line,
        source=snippet.source,
        run=options.eval,
        expect_error=options.error,
        repeat=options.repeat,
        label=options.label,
        fig_format=options.fig_format or figure_format,
        fig_dpi=options.fig_dpi,
    )


def check_visible(launcher: Launcher, folder: Path) -> None:
    """Raise OSError (with what to do) when the sandbox cannot read a post's folder."""
    if not launcher.layout.shows(folder):
        raise OSError(f"{folder} is outside the folders the sandbox shows (project_root)")
    mode = folder.stat().st_mode
    if launcher.isolation.uid != os.geteuid() and mode & 0o005 != 0o005:
        raise OSError(
            f"the sandbox's user cannot read {folder} (mode {mode & 0o777:o}): "
            "make it readable by others (chmod o+rx), as a git checkout normally is"
        )


def report_progress(
    settings: ExecutionSettings, kind: ProgressKind, post: str = "", **fields: Any
) -> None:
    """Tell ``settings.progress`` (a live status) what happens now."""
    if settings.progress is not None:
        settings.progress(ProgressEvent(kind, post, **fields))


def post_limits(run: PostRun, settings: ExecutionSettings) -> Limits:
    """The deadlines and output caps of ``run``'s session."""
    from raypress.execution.driver import Limits

    return Limits(
        snippet_timeouts={
            s.index: snippet_timeout(run, i, settings) for i, s in enumerate(run.snippets)
        },
        post_timeout=settings.post_timeout,
        output_cap=settings.output_cap_bytes,
        post_output_cap=settings.post_output_cap_bytes,
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
    """The plan of ``run``'s session outside the build's sandbox (reduced isolation, or a
    cluster node), its working and temporary folders made in ``folder``."""
    cwd, tmp = folder / "work", folder / "tmp"
    cwd.mkdir(parents=True)
    tmp.mkdir()
    return SessionPlan(
        post=run.post,
        post_dir=str(run.post_dir),
        cwd=str(cwd),
        snippets=tuple(snippet_code(s, run.figure_format) for s in run.snippets),
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
    scratch: Path | None,
    machine: MachineInfo,
    output_cap: int,
) -> None:
    """After a killed session: a janitor session removes what its jobs left on an
    external cluster (detached actors, placement groups). ``scratch``: where to make the
    janitor's working folder (None: the session's own, in the build's sandbox)."""
    if not jobs or plan.ray is None or plan.ray.mode != "external":
        return  # the build's own clusters are stopped with everything on them
    folder = None
    cwd = plan.cwd
    if scratch is not None:
        folder = scratch / f"janitor-{secrets.token_hex(4)}"
        (folder / "work").mkdir(parents=True)
        cwd = str(folder / "work")
    janitor = plan._replace(  # protocol messages are NamedTuples
        cwd=cwd,
        snippets=(),
        inline=(),
        marker=new_marker_prefix(),
        janitor_jobs=jobs,
        sandbox=plan.sandbox and plan.sandbox._replace(cgroup_procs=None),
    )
    from raypress.execution.driver import Limits, drive

    empty = PostRun(run.post, run.post_dir, ())
    limits = Limits({}, _JANITOR_TIMEOUT_S, output_cap, output_cap)
    try:
        drive(server, empty, janitor, limits, machine)
    except ForkServerError:
        pass
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def unrun_execution(
    run: PostRun,
    status: PostStatus,
    problem: Problem,
    started: float,
    machine: MachineInfo | None = None,
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
        environment=environment(machine or machine_info(), (), None, None),
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


class Executor:
    """One build's execution machinery; use as a context manager around :meth:`run`.

    It probes the machine's isolation (``isolation``), creates the build's memory cgroup
    (``cgroups``) and starts the fork server in the build's sandbox (``build_sandbox``),
    falling back to reduced isolation, said once in the log, where the machine cannot
    give it (unless ``settings.sandbox`` is "required"). :attr:`failure` says, in one
    line, if the fork server died while the build needed it.
    """

    def __init__(self, settings: ExecutionSettings, runs: Sequence[PostRun] = ()) -> None:
        self.settings = settings
        self.log = settings.log or (lambda _message: None)
        self.failure: str | None = None
        self.root = Path(tempfile.mkdtemp(prefix="raypress-", dir=settings.temp_root))
        self.short_root: str | None = None  # reduced isolation: Ray folders on this machine
        self.stage: Path | None = None  # empty folders staged sources are bound on
        self.cgroup: BuildCgroup | None = None
        self.base_env = base_env(os.environ, _PACKAGE_ROOT)
        self.clusters: ClusterPool | None = None  # created when a post first asks for one
        # Ray reads its authentication settings once per process, so the fork server needs
        # them before it imports ray: always a fresh token for the build's own clusters.
        if settings.ray_address:
            self.ray_auth = ray_cluster.external_auth_env(os.environ)
        else:
            self.ray_auth = ray_cluster.auth_env(secrets.token_hex(32))
        self.counter = 0
        self.reserved: list[int] = []  # session numbers given out ahead (_next_ray_folder)
        self.lock = threading.Lock()
        self.ray_warm: Future[object] | None = None
        try:
            self.isolation = self._start_server(runs)
        except BaseException:
            self._remove_folders()
            raise
        self.sandboxed = self.launcher is not None
        self.nested = self.sandboxed and not self.server.ready.nested
        self.isolated_network = self.server.ready.isolated_network
        self.machine: MachineInfo = dataclasses.replace(
            machine_info(),
            isolation=""
            if self.isolation.full
            else self.isolation.describe()[len("isolation: ") :],
        )
        if not self.isolation.full:
            self.log(f"execution: {self.isolation.describe()}")
        self._prepare_ray(runs)

    def _start_server(self, runs: Sequence[PostRun]) -> Isolation:
        """Start the fork server with the best isolation the machine gives; returns it."""
        settings = self.settings
        isolation = probe(settings.sandbox)
        if settings.ray_address and isolation.bwrap:
            isolation = isolation.with_missing(
                "snippets share the machine's network to reach the Ray cluster at ray_address",
                keep_sandbox=False,
            )
        if isolation.cgroup is not None:
            try:
                self.cgroup = BuildCgroup(isolation.cgroup, isolation.uid, isolation.gid)
            except OSError as exc:
                isolation = dataclasses.replace(isolation, cgroup=None).with_missing(
                    f"cannot create a memory cgroup ({exc.strerror or exc})"
                )
        warm = self._warm_modules(runs)
        self.warmed = set(warm)
        self.launcher: Launcher | None = None
        if isolation.bwrap:
            projects = [p for p in (settings.project_root,) if p is not None]
            projects += sorted({run.post_dir for run in runs})
            pythonpath = self.base_env.get("PYTHONPATH", "").split(":")
            # the sandbox's user must pass through to staged sources: not below TMPDIR,
            # which may be private
            stage = Path(tempfile.mkdtemp(prefix="rps", dir="/tmp"))
            stage.chmod(0o711)
            self.stage = stage
            self.launcher = Launcher(
                isolation,
                Layout.of(projects, pythonpath),
                str(stage),
                str(self.cgroup.path) if self.cgroup else None,
            )
            try:
                self.server = ForkServerClient(
                    self._env(sandboxed=True), "sandbox", warm, self.launcher
                )
            except ForkServerError as exc:
                if settings.sandbox == "required":
                    raise ExecutionUnavailable(f"the sandbox could not start: {exc}") from None
                self.launcher = None
                isolation = isolation.with_missing(
                    f"bubblewrap could not start the sandbox ({exc})", keep_sandbox=False
                )
            else:
                if self.server.ready.nested:
                    isolation = isolation.with_missing(self.server.ready.nested)
        if self.launcher is None:
            self.short_root = ray_cluster.short_temp_dir()  # Ray's socket paths: short
            network = "host" if settings.ray_address else settings.network
            self.server = ForkServerClient(self._env(sandboxed=False), network, warm)
            if self.server.ready.problem:
                isolation = isolation.with_missing(self.server.ready.problem)
            if settings.network == "isolated" and not self.server.ready.isolated_network:
                self.server.close()
                raise ExecutionUnavailable(
                    f"network isolation was required: {self.server.ready.problem}"
                )
        if settings.sandbox == "required" and not isolation.full:
            self.server.close()
            raise ExecutionUnavailable(f"full isolation was required: {isolation.describe()}")
        return isolation

    def _env(self, sandboxed: bool) -> dict[str, str]:
        """The environment of the fork server (and the sessions' base)."""
        env = {**self.base_env, **ray_cluster.SESSION_RAY_ENV, **self.ray_auth}
        if sandboxed:
            env.update(SANDBOX_ENV)
            env.pop("MPLCONFIGDIR", None)
        return env

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        runs: Sequence[PostRun],
        progress: Callable[[PostExecution], None] | None = None,
    ) -> list[PostExecution]:
        """Execute the posts, at most ``jobs`` at once; results in the order of ``runs``.

        If the fork server dies, the posts that had not finished are marked so (status
        "died", no problems of their own) and :attr:`failure` says what happened.
        """
        self._warm_for(runs)
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
        self.failure = self.failure or self.server.death()
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
        from raypress.execution.driver import Outcome, drive

        started = time.perf_counter()
        if self.server.death():
            return Outcome(self._unfinished(run, None, started), ())
        unmet = unmet_resources(run, [resources.this_machine()], "this machine")
        if unmet is not None:
            return Outcome(unrun_execution(run, "died", unmet, started, self.machine), ())
        try:
            plan, cgroup, ray_folder = self._plan(run)
        except (ray_cluster.ClusterError, ForkServerError, OSError) as exc:
            if self.server.death():
                return Outcome(self._unfinished(run, None, started), ())
            return Outcome(self._failed(run, f"could not start the session: {exc}", started), ())
        limits = post_limits(run, self.settings)
        broker = None
        if plan.ray is not None and plan.ray.mode == "build":
            broker = PostClusters(
                self.ray_pool,
                frozenset(s.index for s in run.snippets if s.options.eval and needs_ray(s.source)),
                predict_shape(s.source for s in run.snippets if s.options.eval),
                ray_folder,
            )
        self._report("post-started", run.post, count=sum(s.options.eval for s in run.snippets))
        try:
            outcome = drive(
                self.server,
                run,
                plan,
                limits,
                self.machine,
                notify=self._notifier(run),
                explain_death=self._death_explainer(cgroup),
                ray=broker,
            )
        except ForkServerError as exc:
            if self.server.death():
                return Outcome(self._unfinished(run, None, started), ())
            message = f"could not start the session: {exc}"
            return Outcome(self._failed(run, message, started), ())
        finally:
            if broker is not None:
                broker.close()
            if ray_folder is not None and self.clusters is not None:
                self.clusters.discard(ray_folder)  # started for the post, never asked for
            if plan.sandbox is None:
                shutil.rmtree(Path(plan.cwd).parent, ignore_errors=True)
        if outcome.execution.status == "died":  # a dying server takes its sessions first:
            self.server.answers(_SERVER_NEWS_S)  # alive, or dead once its channel closes
        if self.server.death():
            return Outcome(self._unfinished(run, outcome.execution, started), ())
        if cgroup is not None and self.cgroup is not None:
            self.cgroup.remove(cgroup)
        if outcome.execution.status in ("timed-out", "died"):
            self._clean_up_jobs(run, plan, outcome.ray_jobs)
        return outcome

    def close(self) -> None:
        """Stop the clusters and the fork server, remove the temp folders and cgroups."""
        try:
            if self.clusters is not None:
                self.clusters.close()
            self.server.close()
        finally:
            self._remove_folders()

    def _remove_folders(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
        if self.short_root is not None:
            shutil.rmtree(self.short_root, ignore_errors=True)
        if self.cgroup is not None:
            self.cgroup.close()

    def _death_explainer(self, cgroup: str | None) -> Callable[[int | None], str | None]:
        """Why a session died, when its memory cgroup knows (the kernel's OOM kill)."""
        build = self.cgroup
        limit = self.settings.memory_limit_bytes

        def explain(status: int | None) -> str | None:
            if build is None or cgroup is None or not build.oom_killed(cgroup):
                return None
            ceiling = f" of {limit >> 20} MB (memory_limit_mb)" if limit else ""
            return f"the session was killed: it went over its memory ceiling{ceiling}"

        return explain

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

    def _warm_for(self, runs: Sequence[PostRun]) -> None:
        """Warm what ``runs`` import that the fork server has not imported yet (it may have
        started before the posts were parsed: ``freeze.early_engine``)."""
        self.warm(self._warm_modules(runs))

    def warm(self, modules: Sequence[str]) -> None:
        """Have the fork server import those of ``modules`` (names of WARMABLE) it has not
        imported yet. It answers in order, so every session it forks after this has them."""
        modules = [m for m in modules if m in WARMABLE]
        if "matplotlib" in modules:
            modules.append("matplotlib.pyplot")
        with self.lock:
            missing = sorted({m for m in modules if m not in self.warmed and m != "ray"})
            self.warmed.update(missing)
        if missing:
            self.server.warm(missing)

    def ray_pool(self) -> ClusterPool:
        """The build's Ray clusters (created on first use); ClusterError if the memory
        cgroup they must run in cannot be made."""
        with self.lock:
            if self.clusters is None:
                self.clusters = ClusterPool(
                    self.server,
                    self._env(self.sandboxed),
                    PoolSettings(
                        isolated_network=self.isolated_network,
                        default_cpus=self.settings.ray_num_cpus,
                        start_timeout=self.settings.ray_start_timeout,
                        keep_warm=self.settings.ray_keep_warm,
                        in_sandbox=self.sandboxed,
                        cgroup_procs=self._ray_cgroup(),
                    ),
                    RAY_DIR if self.sandboxed else (self.short_root or RAY_DIR),
                    self.log,
                    self._next_ray_folder,
                    lambda kind, cpus: self._report(kind, count=cpus),  # type: ignore[arg-type]
                )
            return self.clusters

    def keep_cluster_ready(self, shape: ClusterShape | None = None) -> None:
        """Start a cluster of ``shape`` (a plain ``ray.init()``'s by default) for the next
        post to ask for one, as ``serve`` keeps one after each post."""
        self.ray_pool().prepare(shape or ClusterShape(), self._next_ray_folder())

    def _next_ray_folder(self) -> str | None:
        """The folder the next post's clusters will live in (sandboxed sessions may write
        only their own): its session number is reserved now."""
        if not self.nested:
            return None
        with self.lock:
            self.counter += 1
            self.reserved.append(self.counter)
            return f"{RAY_DIR}/p{self.counter}"

    def _ray_cgroup(self) -> str | None:
        """The memory cgroup of the build's Ray clusters (in the sandbox): the sessions'
        ceilings plus one default object store, at most 90% of the machine."""
        if not self.sandboxed or self.cgroup is None:
            return None
        total = machine_memory() or 8 * GIB
        limit = self.settings.memory_limit_bytes
        ceiling = None
        if limit:
            ceiling = min(
                total * 9 // 10, max(1, self.settings.jobs) * limit + total * 3 // 10 + GIB
            )
        try:
            self.cgroup.child("ray", ceiling)
        except OSError as exc:
            raise ray_cluster.ClusterError(
                f"cannot create the Ray clusters' cgroup: {exc}"
            ) from None
        return f"{CGROUP_DIR}/ray/cgroup.procs"

    def _prepare_ray(self, runs: Sequence[PostRun]) -> None:
        """Warm ``import ray`` in the fork server if a post needs it (no cluster yet: a
        post's cluster starts when a snippet that needs Ray is about to run)."""
        if not any(uses_ray(run) for run in runs):
            return
        with self.lock:
            if self.ray_warm is None:
                self.ray_warm = self.server.warm(["ray"])

    def _plan(self, run: PostRun) -> tuple[SessionPlan, str | None, str | None]:
        """The session's plan, the name of the memory cgroup made for it, and the folder
        of its own Ray clusters in the sandbox (if any)."""
        with self.lock:
            if self.reserved:  # a cluster may be starting in its folder already
                number = self.reserved.pop(0)
            else:
                self.counter += 1
                number = self.counter
        if self.launcher is not None:
            check_visible(self.launcher, run.post_dir)
        slug = post_slug(run.post)
        sandbox = None
        cgroup = None
        ray_folder = None
        if self.launcher is not None:
            env = self._env(sandboxed=True)
            if self.cgroup is not None and self.settings.memory_limit_bytes:
                cgroup = f"s{number}"
                self.cgroup.child(cgroup, self.settings.memory_limit_bytes)
            tmp_bytes = self.settings.memory_limit_bytes or GIB
            if self.nested:  # the post's clusters go in a folder it may write
                ray_folder = f"{RAY_DIR}/p{number}"
                sandbox = self.launcher.session(cgroup, tmp_bytes, ray_folder)
                cwd = sandbox.work
            else:  # sessions share the build's sandbox: a folder of their own in its /tmp
                cwd = f"{TMP}/s{number}/work"
                env["TMPDIR"] = f"{TMP}/s{number}"
            ray_temp = f"{TMP}/ray" if self.nested else f"{TMP}/s{number}/ray"
        else:
            folder = self.root / f"{number:03d}-{slug}"
            env = self._env(sandboxed=False)
            assert self.short_root is not None
            ray_temp = str(Path(self.short_root) / f"i{number}")
        namespace = f"raypress-{slug}-{secrets.token_hex(4)}"
        ray = self._ray_plan(run, namespace, ray_temp, env)
        if self.launcher is None:
            plan = session_plan(run, folder, env, ray, self.settings.memory_limit_bytes)
            return plan, cgroup, ray_folder
        plan = SessionPlan(
            post=run.post,
            # the sandbox shows real paths only (symlinks above a folder are not in it)
            post_dir=os.path.realpath(run.post_dir),
            cwd=cwd,
            snippets=tuple(snippet_code(s, run.figure_format) for s in run.snippets),
            inline=tuple(
                InlineCode(i.index, i.line, i.source, i.after_snippet) for i in run.inline
            ),
            env=tuple(env.items()),
            marker=new_marker_prefix(),
            memory_limit_bytes=self.settings.memory_limit_bytes,
            ray=ray,
            sandbox=sandbox,
        )
        return plan, cgroup, ray_folder

    def _ray_plan(
        self, run: PostRun, namespace: str, temp_dir: str, env: dict[str, str]
    ) -> RayPlan:
        """How the session's ``ray.init`` behaves; updates ``env`` with Ray's settings."""
        node_ip = ray_cluster.LOOPBACK if self.isolated_network else None
        if run.ray_mode == "isolated":  # the session's ray.init starts a private cluster
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
        scratch = self.root if plan.sandbox is None and self.launcher is None else None
        output_cap = self.settings.output_cap_bytes
        clean_up_jobs(self.server, run, plan, jobs, scratch, self.machine, output_cap)

    def _failed(self, run: PostRun, message: str, started: float) -> PostExecution:
        problem = Problem(run.post, None, message)
        return unrun_execution(run, "died", problem, started, self.machine)

    def _unfinished(
        self, run: PostRun, partial: PostExecution | None, started: float
    ) -> PostExecution:
        """A post the fork server's death cut short: what it did so far, no problem of its
        own (the build reports the death once, from :attr:`failure`)."""
        death = self.server.death() or "the execution fork server stopped"
        self.failure = self.failure or death
        note = f"did not finish: {death}"
        if partial is None:
            partial = self._failed(run, note, started)
        snippets = tuple(
            dataclasses.replace(r, status="not-run")
            if r.status in ("died", "timed-out") and not r.stdout and not r.stderr
            else r
            for r in partial.snippets
        )
        return dataclasses.replace(
            partial, status="died", snippets=snippets, messages=(note,), problems=()
        )
