"""Execution: run each post's Python snippets in a sandboxed session and record the results.

Design note
-----------
* **Fork server.** ``execute_posts`` starts one fork server per build (``forkserver``):
  a single-threaded Python that has already imported what the posts import among NumPy,
  matplotlib, pandas (Ray on request) and forks one *session* per post. Each session (``sandbox``)
  gets its own session and process group, default signal handlers, stdin from
  /dev/null, an allow-listed environment (``session_env``), RLIMIT_DATA as memory
  ceiling (RLIMIT_AS would break ``ray.init``), a fresh working directory linking the
  post's files, and a read-only view of the post's folder where mount namespaces work.
  Interpreter start-up and heavy imports are paid once per build, not per post.
* **Network.** The fork server enters a loopback-only network namespace where the
  machine allows it (``netns``); the Ray head is launched by the fork server, so the
  head and all sessions share it. Otherwise Ray uses a fresh token (``ray_cluster``).
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
  The fork server also SIGKILLs a session's group when its leader exits, and, as child
  subreaper, adopts, reaps and finally kills what escaped a group (daemons, orphaned
  Ray workers).
* **Sessions as cluster work** (``--ray-address``, ``--executor ray``): the same sessions,
  on the nodes of a Ray cluster (``cluster_executor`` on the build side, ``session_host``
  on the nodes). Chosen design: a session host per node (a Ray actor owning a pre-warmed
  fork server, which also takes clients on a private Unix socket behind a secret) and one
  Ray task per post, scheduled by Ray with the post's ``resources``. The task connects to
  its node's fork server and runs ``driver.drive`` *there*, so fd-level capture, deadlines,
  SIGKILL of the process group, the sandbox and traceback mapping are local to the node;
  the network only carries the post's folder (once per folder, through the object store)
  and the finished ``PostExecution``. The alternative, streaming a session's pipes to the
  build machine, would put a network hop inside capture and deadlines. Addresses are
  checked before anything runs (``ray_address``); a lost node's post runs again once;
  what fails outside a post gets status ``infrastructure`` and never replaces a record.
* **Package import.** This ``__init__`` is lazy: the fork server imports the package
  and must not pay for the build side (``model`` pulls in YAML via ``raypress.publish.snippets``);
  the session side uses its own plan types (``protocol.SnippetCode``, ``InlineCode``).
* **Ray.** One cluster per build, started lazily in the background when a post imports
  ray (``ray_cluster``), SIGKILLed by process group at the end. In sessions
  ``ray.init`` connects to it (``ray_shim``), each session a job in its own namespace;
  task output is read from the job's worker log files (``ray_logs``); leftover detached
  actors are killed at the end of each post (by the session, or by a janitor session
  after a kill).
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
