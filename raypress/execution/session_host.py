"""Node side of sessions as cluster work (``--ray-address``, ``--executor ray``).

Each post's session runs on a node of the Ray cluster that Ray's scheduler chooses, and
keeps everything a local session has, because it *is* a local session there:

* :class:`SessionHost` is a threaded Ray actor pinned to one node (it holds no
  resources) for the build's lifetime. It starts the same pre-warmed fork server the
  build machine would, and runs sessions with it, one thread per post
  (:meth:`SessionHost.run`).
* :func:`run_post` is the body of a Ray task, scheduled with the post's session
  resources, so Ray's scheduler picks the node and the resources stay held while the
  post runs. Wherever it lands, it hands the post to its node's host (the GPUs Ray gave
  the task go to the session as ``CUDA_VISIBLE_DEVICES``). The host unpacks the post's
  folder (shipped once per folder through the object store, unpacked once per node and
  content digest) and drives the session with the build machine's own
  :func:`~raypress.execution.driver.drive`: fd-level capture split per snippet,
  deadlines and SIGKILL of the session's process group, tracebacks mapped to post
  lines, figures. It returns the ``PostExecution``: plain data, as the local engine
  gives it.
* A node without a host (one that joined after the build started) gets a private fork
  server for that one task.

Sessions on the nodes run with reduced isolation (no build sandbox there: the node's
network, as the node's Ray worker user), and their pages say so.

Nothing here is imported by the fork server or by a local build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import secrets
import shutil
import socket
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raypress.execution.driver import Limits, drive
from raypress.execution.environment import MachineInfo, machine_info
from raypress.execution.forkclient import ForkServerClient
from raypress.execution.model import PostExecution, PostRun
from raypress.execution.pool import clean_up_jobs, post_slug, session_plan
from raypress.execution.protocol import RayPlan
from raypress.execution.ray_cluster import SESSION_RAY_ENV
from raypress.execution.session_env import base_env

FOLDER_LIMIT_BYTES = 256 << 20  # a post folder larger than this is refused, not shipped
_CACHE = "raypress-folders"
NODE_ISOLATION = (
    "reduced — the session ran on a Ray cluster node, as its Ray worker user, with the "
    "node's network (the build's sandbox is local to the build machine)"
)


@dataclass(frozen=True, slots=True)
class RemoteRun:
    """One post for :func:`run_post`: what a local Executor would know about it."""

    run: PostRun  # its post_dir is replaced by the unpacked copy on the node
    folder_digest: str
    limits: Limits
    ray_env: tuple[tuple[str, str], ...]  # Ray's settings (auth) for the session's ray.init
    ray_address: str | None  # what the session's ray.init connects to (None: this cluster)
    memory_limit_bytes: int | None
    warm: tuple[str, ...]  # for a private fork server, on a node without a host
    network: str  # the fork server's network mode on the node


class SessionHost:
    """A node's pre-warmed fork server, running the posts the :func:`run_post` tasks
    landing on this node hand it (one actor thread each).

    Used as a threaded Ray actor class (``ray.remote(SessionHost)`` with
    ``max_concurrency``), pinned to its node.
    """

    def __init__(self, ray_env: dict[str, str], network: str, warm: tuple[str, ...]) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.server = ForkServerClient(node_session_env(ray_env), network, warm)

    def node(self) -> str:
        """The id of the node this host runs on (answered once its fork server is ready)."""
        return self.node_id

    def run(self, request: RemoteRun, folder: list[Any], devices: str | None) -> PostExecution:
        """Run one post's session with this node's fork server."""
        import ray

        data = ray.get(folder[0])
        return run_session(self.server, request, data, devices)

    def close(self) -> None:
        """Stop the fork server (it kills what its sessions left)."""
        self.server.close()


def pack_folder(folder: Path, limit: int = FOLDER_LIMIT_BYTES) -> tuple[str, bytes]:
    """``folder``'s files as a tar archive and its digest. Hidden entries are left out, as
    the local session leaves them out; symlinks that lead outside the folder are left out
    too (the node must never see a file of the build machine the post does not own)."""
    buffer = io.BytesIO()
    root = folder.resolve()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if any(part.startswith(".") for part in relative.parts):
                continue
            real = path.resolve()
            if not real.is_relative_to(root) or not real.is_file():
                continue
            total += real.stat().st_size
            if total > limit:
                raise ValueError(f"{folder} holds more than {limit >> 20} MiB of files")
            info = tarfile.TarInfo(relative.as_posix())
            data = real.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def unpack_folder(digest: str, data: bytes) -> Path:
    """The post folder on this node: unpacked once per digest, read-only, shared by the
    posts of that folder (and later builds)."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError("the post folder arrived damaged")
    cache = Path(tempfile.gettempdir()) / _CACHE
    cache.mkdir(mode=0o700, exist_ok=True)
    target = cache / digest
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            archive.extractall(staging, filter="data")
        for path in staging.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
        with contextlib.suppress(OSError):  # another task of this node was first
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_post(request: RemoteRun, folder: list[Any], hosts: dict[str, Any]) -> PostExecution:
    """The body of the post's Ray task: hand the post to this node's host, holding the
    task's resources while it runs (``folder``: the post folder's archive, as a one-item
    list so that it is fetched by whoever runs the session)."""
    import ray

    context = ray.get_runtime_context()
    gpus = ray.get_gpu_ids()
    devices = ",".join(str(g) for g in gpus) if gpus else None
    host = hosts.get(context.get_node_id())
    if host is not None:
        return ray.get(host.run.remote(request, folder, devices))
    env = node_session_env(dict(request.ray_env))
    server = ForkServerClient(env, request.network, request.warm)
    try:
        return run_session(server, request, ray.get(folder[0]), devices)
    finally:
        server.close()


def run_session(
    server: ForkServerClient, request: RemoteRun, folder: bytes, devices: str | None
) -> PostExecution:
    """Drive one post's session with ``server``, on this node."""
    import ray

    context = ray.get_runtime_context()
    post_dir = unpack_folder(request.folder_digest, folder)
    run = dataclasses.replace(request.run, post_dir=post_dir)
    env = node_session_env(dict(request.ray_env))
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    root = Path(tempfile.mkdtemp(prefix="raypress-"))
    machine = node_machine()
    try:
        ray_plan = None
        if run.uses_ray:
            address = request.ray_address or context.gcs_address
            env["RAY_ADDRESS"] = address
            namespace = f"raypress-{post_slug(run.post)}-{secrets.token_hex(4)}"
            ray_plan = RayPlan("external", address, namespace, None, None, True)
        folder_name = root / post_slug(run.post)
        plan = session_plan(run, folder_name, env, ray_plan, request.memory_limit_bytes)
        outcome = drive(server, run, plan, request.limits, machine)
        if outcome.execution.status in ("timed-out", "died"):
            output_cap = request.limits.output_cap
            clean_up_jobs(server, run, plan, outcome.ray_jobs, root, machine, output_cap)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    node = f"{socket.gethostname()} ({context.get_node_id()[:8]})"
    environment = dataclasses.replace(outcome.execution.environment, node=node)
    return dataclasses.replace(outcome.execution, environment=environment)


def node_machine() -> MachineInfo:
    """This node's description, with the isolation its sessions get."""
    return dataclasses.replace(machine_info(), isolation=NODE_ISOLATION)


def warm_worker() -> str:
    """Nothing: run as a Ray task so that the node's worker processes exist (and have
    imported this module) before the first post lands there. Returns the node's id."""
    import ray

    return ray.get_runtime_context().get_node_id()


def node_session_env(ray_env: dict[str, str]) -> dict[str, str]:
    """A session's environment on this node: the allow-listed part of this node's own
    (never the build machine's paths), raypress's folder on this node on PYTHONPATH, and
    Ray's settings for connecting to the cluster."""
    package_root = str(Path(__file__).resolve().parents[2])
    return {**base_env(os.environ, package_root), **SESSION_RAY_ENV, **ray_env}
