"""Session side: make unmodified Ray snippets use the build's cluster.

``ray.init(...)`` is replaced, as soon as ``ray`` is imported, by a function that
connects to the build's cluster (shared mode: resource arguments dropped, with a note
for the build log) or starts a private one in a short temp dir (isolated mode), always
in the session's own namespace, with Ray's driver-side log forwarding off (the worker
log files are read instead, see ``ray_logs``). ``ray.shutdown()`` is Ray's own: it only
disconnects this session, and a later ``ray.init`` connects again as a new job. When the
session ends, the detached actors and placement groups its jobs left are removed
(``ray_cleanup``).
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from raypress.execution.protocol import Note, RayJob, RayPlan, SessionEvent
from raypress.execution.ray_cleanup import clean_up
from raypress.execution.ray_driver import patch_node_discovery
from raypress.execution.ray_logs import WorkerLogTail

_LOGGING_ERROR = 40  # logging.ERROR, without importing logging into the fork server

# Arguments that configure a new cluster; meaningless (or errors) against an existing one.
RESOURCE_ARGS = frozenset(
    {
        "num_cpus",
        "num_gpus",
        "resources",
        "labels",
        "object_store_memory",
        "local_mode",
        "include_dashboard",
        "dashboard_host",
        "dashboard_port",
        "enable_resource_isolation",
        "cgroup_path",
        "system_reserved_cpu",
        "system_reserved_memory",
        "_memory",
        "_plasma_directory",
        "_system_config",
        "_temp_dir",
        "_node_name",
        "_enable_object_reconstruction",
        "_redis_username",
        "_redis_password",
        "_metrics_export_port",
        "_node_ip_address",
    }
)


class RayShim:
    """Patches ``ray.init`` in this session and tracks the jobs it connected as."""

    def __init__(self, plan: RayPlan, emit: Callable[[SessionEvent], None]) -> None:
        self.plan = plan
        self.emit = emit
        self.jobs: list[str] = []
        self.tail: WorkerLogTail | None = None
        self.module: ModuleType | None = None
        self.real_init: Callable[..., Any] | None = None

    def install(self) -> None:
        """Patch ``ray`` now if it is imported, else right after it is."""
        module = sys.modules.get("ray")
        if module is not None:
            self.patch(module)
        else:
            sys.meta_path.insert(0, _ImportHook(self.patch))

    def patch(self, module: ModuleType) -> None:
        """Replace ``module.init``."""
        if self.module is not None:
            return
        self.module = module
        self.real_init = real_init = module.init
        shim_init = self.init

        @functools.wraps(real_init)
        def init(*args: Any, **kwargs: Any) -> Any:
            return shim_init(*args, **kwargs)

        module.init = init  # type: ignore[attr-defined]

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """``ray.init`` as the session's snippets see it."""
        ray = self.module
        assert ray is not None and self.real_init is not None
        if ray.is_initialized():  # Ray's own answer: an error, or ignore_reinit_error
            return self.real_init(*args, **kwargs)
        call = _call_text(args, kwargs)
        if len(args) > 1:
            return self.real_init(*args, **kwargs)  # let Ray raise its TypeError
        address = args[0] if args else kwargs.pop("address", None)
        dropped, ignored = [], []
        if self.plan.mode == "shared":
            dropped = [key for key in kwargs if key in RESOURCE_ARGS]
            if address not in (None, "auto", self.plan.address):
                ignored.append("address")
            address = self.plan.address
        else:
            if address is not None:
                ignored.append("address")
            address = None
            kwargs.update(_temp_dir=self.plan.temp_dir, include_dashboard=False)
        for key in dropped:
            kwargs.pop(key)
        if kwargs.get("namespace") not in (None, self.plan.namespace):
            ignored.append("namespace")
        context = self._connect(address, kwargs)
        if dropped:
            self.emit(Note(f"{call}: resource arguments dropped, connected to the build's cluster"))
        if ignored:
            self.emit(Note(f"{call}: {', '.join(ignored)} ignored (each post has its own)"))
        return context

    def _connect(self, address: str | None, kwargs: dict[str, Any]) -> Any:
        ray = self.module
        assert ray is not None and self.real_init is not None
        kwargs.update(
            namespace=self.plan.namespace,
            log_to_driver=not self.plan.read_logs,
            logging_level=_LOGGING_ERROR,
        )
        if self.plan.node_ip:
            kwargs["_node_ip_address"] = self.plan.node_ip
        if address is not None:  # a session may not see the raylet's process
            patch_node_discovery(ray, address)
        context = self.real_init(address, **kwargs)
        job = ray.get_runtime_context().get_job_id()
        self.jobs.append(job)
        if self.plan.read_logs:
            logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
            if self.tail is None or self.tail.logs_dir != logs:
                self.tail = WorkerLogTail(logs, set(self.jobs))
            self.tail.jobs.add(job)
        try:
            cpus = float(ray.cluster_resources().get("CPU", 0.0)) or None
        except Exception:
            cpus = None
        self.emit(RayJob(job_id=job, cluster_cpus=cpus, ray_version=ray.__version__))
        return context

    def flush_task_output(self, final: bool = False) -> None:
        """Print what the jobs' tasks printed since the last call, on fds 1 and 2."""
        if self.tail is None:
            return
        out, err = self.tail.read_new(final)
        for fd, text in ((1, out), (2, err)):
            data = text.encode("utf-8", errors="replace")
            while data:
                data = data[os.write(fd, data) :]

    def finish(self) -> None:
        """End of the session: kill the detached actors its jobs left; stop a private cluster."""
        ray = self.module
        if ray is None or not self.jobs:
            return
        try:
            if self.plan.mode == "isolated":  # the private cluster goes, with everything on it
                if ray.is_initialized():
                    ray.shutdown()
                return
            if not ray.is_initialized():  # the post called ray.shutdown(): connect to clean up
                self._connect(self.plan.address, {})
            killed, removed = clean_up(ray, self.jobs)
            if killed:
                self.emit(Note(f"killed {killed} detached actor(s) the post left on the cluster"))
            if removed:
                self.emit(Note(f"removed {removed} placement group(s) the post left"))
        except Exception as exc:
            self.emit(Note(f"Ray clean-up after the post failed: {type(exc).__name__}: {exc}"))


def _call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"ray.init({', '.join(parts)})"


class _ImportHook(importlib.abc.MetaPathFinder):
    """Calls ``after(module)`` once ``ray`` has been imported (then leaves sys.meta_path)."""

    def __init__(self, after: Callable[[ModuleType], None]) -> None:
        self.after = after

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "ray":
            return None
        sys.meta_path.remove(self)
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module
        after = self.after

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            after(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec
