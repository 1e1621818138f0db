"""Execution: run each post's Python snippets in a sandboxed session and record the results.

Design note
-----------
* **Sandbox.** ``isolation`` finds what the machine gives; ``cgroups`` makes the build's
  memory cgroups (one per session, one for Ray, one for the server); ``build_sandbox``
  starts the fork server in one bubblewrap sandbox per build (unprivileged user, no
  capabilities, read-only system, Python and project, private ``/tmp``, ``/dev/shm`` and
  ``/ray``, loopback-only network, killed with the build), through ``sandbox_launch``
  when a folder must be staged first. The Ray head it launches, so every Ray worker,
  shares that sandbox. Where the machine cannot, isolation is reduced and said so: the
  fork server runs as before, in a loopback-only network namespace where allowed
  (``netns``). The security model is in the README.
* **Fork server.** ``execute_posts`` starts one fork server per build (``forkserver``):
  a single-threaded Python that has already imported what the posts import among NumPy,
  matplotlib, pandas (Ray on request) and forks one *session* per post. In the sandbox a
  session first makes its own user, PID, mount and IPC namespaces (``session_ns``: PID 1
  of its namespace, fresh ``/proc``, private ``/tmp`` and home, locked read-only mounts,
  its memory cgroup, every capability dropped); then (``sandbox``) its own session and
  process group, default signal handlers, stdin from /dev/null, an allow-listed
  environment (``session_env``), RLIMIT_DATA, a working directory linking the post's
  files. Interpreter start-up and heavy imports are paid once per build, not per post.
  The server is not dumpable and answers in JSON: the build never unpickles what the
  sandbox sends.
* **Capture.** A session's fds 1 and 2 are pipes read by the build process
  (``driver``/``capture``); after each snippet the session writes a random marker, so
  output of threads, subprocesses and C code lands in the right snippet, is capped
  while reading (a 1 GB print never sits in memory) and survives a kill. Results and
  events travel as JSON on a separate socket (``protocol``); the build process never
  unpickles what a snippet could forge, and sanitises HTML itself (``results``).
* **Snippets** (``session``) run in one fresh ``__main__`` module, compiled with the
  post's path and line offset so tracebacks name post lines; the last bare expression
  is evaluated for its value; figures are saved (``rich_output``).
* **Limits.** Per-snippet and per-post deadlines are enforced by the build process:
  SIGKILL of the session's process group via the fork server; output so far is kept.
  When a session ends, its PID namespace takes whatever it started along; the fork
  server also SIGKILLs a session's group when its leader exits, and, as child
  subreaper, adopts, reaps and finally kills what escaped a group (orphaned Ray
  workers). Output is capped per snippet and per post (``capture.Budget``). If the fork
  server dies, the posts it cut short say so and the build reports it once.
* **Sessions as cluster work** (``--ray-address``, ``--executor ray``): the same sessions,
  on the nodes of a Ray cluster (``cluster_executor`` on the build side, ``session_host``
  on the nodes). Chosen design: a session host per node (a threaded Ray actor owning a
  pre-warmed fork server) and one Ray task per post, scheduled by Ray with the post's
  ``resources`` and holding them while the post runs. The task hands the post to its
  node's host, which runs ``driver.drive`` *there*, so fd-level capture, deadlines,
  SIGKILL of the process group and traceback mapping are local to the node; the network
  only carries the post's folder (once per folder, through the object store) and the
  finished ``PostExecution``. The alternative, streaming a session's pipes to the build
  machine, would put a network hop inside capture and deadlines. The build's bubblewrap
  sandbox is local to the build machine: sessions on nodes run with reduced isolation,
  and their pages say so. Addresses are checked before anything runs (``ray_address``);
  a lost node's post runs again once; what fails outside a post gets status
  ``infrastructure`` and never replaces a record.
* **Package import.** This ``__init__`` is lazy: the fork server imports the package
  and must not pay for the build side (``model`` pulls in YAML via ``raypress.publish.snippets``);
  the session side uses its own plan types (``protocol.SnippetCode``, ``InlineCode``).
* **Ray.** Each post gets a fresh cluster of the shape its ``ray.init`` asks for
  (``ray_shape``, ``ray_pool``): started by the fork server (``ray_cluster``, retried on a
  busy machine) when its first snippet that needs Ray is about to run, handed over when
  the session's ``ray.init`` asks for it on its channel (``RayRequest``/``RayReply``,
  answered by the driver), SIGKILLed by process group when the post ends. In sessions
  ``ray.init`` is patched (``ray_shim``): requested and given resources go to the page,
  requests nothing can meet fail fast (a wait for a task no node can hold too:
  ``ray_watch``), each session is its own job; task output is read from the job's worker
  log files on every node, another node's through a reader actor placed there
  (``ray_output``, ``ray_logs``), and Ray's own lines become notes. With ``--ray-address``
  the posts share the user's cluster and leftover detached actors are killed at the end
  of each post (by the session, or by a janitor session after a kill).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raypress.execution.model import (
        Environment,
        ErrorInfo,
        ExecutionSettings,
        Image,
        InlineExpression,
        InlineResult,
        PostExecution,
        PostRun,
        RepeatStats,
        SnippetResult,
        format_duration,
    )

__all__ = [
    "Environment",
    "ErrorInfo",
    "ExecutionSettings",
    "Image",
    "InlineExpression",
    "InlineResult",
    "PostExecution",
    "PostRun",
    "RepeatStats",
    "SnippetResult",
    "execute_posts",
    "format_duration",
    "new_engine",
]


def __getattr__(name: str) -> Any:
    """The model's names, imported on first use: the fork server imports this package and
    must not pay for the build-side modules (YAML and the rest)."""
    if name in __all__:
        from raypress.execution import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def execute_posts(
    runs: Sequence[PostRun],
    settings: ExecutionSettings,
    progress: Callable[[PostExecution], None] | None = None,
) -> list[PostExecution]:
    """Execute every post in its own session; results in the order of ``runs``.

    ``progress`` is called (in the calling thread) with each post's result as it
    finishes. A post's own failures are in its result; this raises only when the
    machinery itself cannot start.
    """
    if not runs:
        return []
    with new_engine(settings, runs) as engine:
        return engine.run(runs, progress)


def new_engine(settings: ExecutionSettings, runs: Sequence[PostRun] = ()) -> Any:
    """The engine that runs posts: sessions on this machine (``pool.Executor``), or on the
    nodes of a Ray cluster (``cluster_executor.ClusterExecutor``) with ``ray_address`` or
    ``executor = "ray"``. Both are context managers with ``run`` and ``close``."""
    if settings.ray_address or settings.executor == "ray":
        from raypress.execution.cluster_executor import ClusterExecutor

        return ClusterExecutor(settings, runs)
    from raypress.execution.pool import Executor

    return Executor(settings, runs)
