"""Session side: make unmodified Ray snippets run as they would in a plain script.

``ray.init`` is replaced, as soon as ``ray`` is imported, by a function that gets the
post a cluster with the resources the call asks for:

* **build** mode (the default): it asks the build process for a fresh cluster of that
  shape (``ray_pool``; refused at once, with the reason, when the machine cannot give
  it) and connects to it;
* **external** mode (``--ray-address``): it connects to that cluster, fails at once if
  the cluster has less than the call asks for, and says what it has;
* **isolated** mode (``ray: isolated``): Ray's own ``ray.init`` starts a private cluster.

Either way the page says what was asked and what was given (a note on the snippet and
the post's environment), and how much of the snippet's time ``ray.init`` took. Each
session is its own Ray job. Task and actor output is read from the workers' log files
after each snippet, on every node (``ray_logs``); Ray's own lines (its warnings, the
raylet's messages, crash dumps) become notes on the snippet instead of output.
``ray.shutdown()`` disconnects and lets the build stop the post's cluster, as a plain
script's does; a later ``ray.init`` gets a new one. When the session ends on an
external cluster, the detached actors and placement groups its jobs left are removed
(``ray_cleanup``). A sandboxed session cannot see the raylet's process, so the driver
finds its node from the GCS (``ray_driver``).

A task or actor that asks for more than any node of the post's own cluster has fails the
snippet that waits for it, in seconds (``ray_watch``); output is read by ``ray_output``.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from raypress.execution.import_hooks import patch_on_import
from raypress.execution.protocol import (
    Note,
    RayJob,
    RayPlan,
    RayRelease,
    RayReply,
    RayRequest,
    SessionEvent,
)
from raypress.execution.ray_cleanup import clean_up
from raypress.execution.ray_driver import patch_node_discovery
from raypress.execution.ray_logs import system_note
from raypress.execution.ray_output import JobOutput
from raypress.execution.ray_shape import (
    SHAPE_ARGS,
    ClusterShape,
    ShapeError,
    describe_resources,
    shape_from_kwargs,
)
from raypress.execution.ray_watch import InfeasibleWatch

_WARNING = 30  # logging.WARNING, without importing logging into the fork server
# Arguments that configure a new cluster besides its shape: meaningless against the
# post's cluster, which raypress starts (or the user's, which exists already).
CLUSTER_ARGS = frozenset(
    {
        "labels",
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
_SYSTEM_PIDS = frozenset({"raylet", "autoscaler", "gcs_server", "runtime_env"})
_QUIET_MODULES = frozenset({"authentication_token_setup"})  # warnings about raypress's setup


class RayShim:
    """Patches ``ray.init`` and ``ray.shutdown`` in this session and tracks its jobs."""

    def __init__(
        self,
        plan: RayPlan,
        emit: Callable[[SessionEvent], None],
        ask: Callable[[SessionEvent], RayReply],
    ) -> None:
        self.plan = plan
        self.emit = emit
        self.ask = ask
        self.jobs: list[str] = []
        self.output = JobOutput(self.note)
        self.watch = InfeasibleWatch(lambda: self.module)
        self.module: ModuleType | None = None
        self.real_init: Callable[..., Any] | None = None
        self.real_shutdown: Callable[..., Any] | None = None
        self.notes: list[str] = []
        self.lock = threading.Lock()
        self.init_seconds = 0.0  # time spent in ray.init during the current snippet
        self.has_cluster = False  # build mode: the build holds a cluster for this session

    # --- patching -------------------------------------------------------------------

    def install(self) -> None:
        """Patch ``ray`` now if it is imported, else right after it is."""
        patch_on_import("ray", self.patch)

    def patch(self, module: ModuleType) -> None:
        """Replace ``module.init`` and ``module.shutdown``; route Ray's messages to notes."""
        if self.module is not None:
            return
        self.module = module
        self.real_init = real_init = module.init
        self.real_shutdown = real_shutdown = module.shutdown
        shim = self

        @functools.wraps(real_init)
        def init(*args: Any, **kwargs: Any) -> Any:
            return shim.init(*args, **kwargs)

        @functools.wraps(real_shutdown)
        def shutdown(*args: Any, **kwargs: Any) -> Any:
            return shim.shutdown(*args, **kwargs)

        module.init = init  # type: ignore[attr-defined]
        module.shutdown = shutdown  # type: ignore[attr-defined]
        for name in ("get", "wait"):
            setattr(module, name, self.watch.counting(getattr(module, name)))
        worker = sys.modules.get("ray._private.worker")
        if worker is not None:  # the raylet's messages to the driver ("A worker died ...")
            original = worker.print_to_stdstream
            worker.print_to_stdstream = functools.partial(_print_to_stdstream, self, original)
        self._route_ray_logging()

    def snippet_started(self) -> None:
        """A snippet starts: watch its waits on the post's own cluster."""
        if self.module is not None and self.plan.mode != "external":
            self.watch.start()

    def snippet_ended(self) -> None:
        self.watch.end()

    def snippet_error(self, caught: BaseException, filename: str) -> BaseException:
        """What the snippet failed with (a wait for the impossible becomes its reason)."""
        return self.watch.error(caught, filename)

    def _route_ray_logging(self) -> None:
        import logging  # Ray has imported it by now

        shim = self

        class NoteHandler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.module not in _QUIET_MODULES:
                    shim.note(system_note(record.levelname.lower(), record.getMessage()))

        logger = logging.getLogger("ray")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(NoteHandler(_WARNING))
        logger.setLevel(_WARNING)
        logger.propagate = False

    def note(self, text: str) -> None:
        """A note for the running snippet (any thread)."""
        with self.lock:
            self.notes.append(text)

    def take_notes(self) -> list[str]:
        """The notes of the snippet that just ended, with ``ray.init``'s share of its time."""
        with self.lock:
            notes, self.notes = self.notes, []
        if self.init_seconds > 0:
            spent = _seconds(self.init_seconds)
            notes.append(f"this time includes {spent} in ray.init ({self._cost()})")
            self.init_seconds = 0.0
        return notes

    def _cost(self) -> str:
        if self.plan.mode == "build":
            return "raypress starting this post's own cluster and connecting to it"
        if self.plan.mode == "external":
            return "connecting to the cluster"
        return "Ray starting the post's private cluster"

    # --- ray.init and ray.shutdown ----------------------------------------------------

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """``ray.init`` as the session's snippets see it."""
        ray = self.module
        assert ray is not None and self.real_init is not None
        if ray.is_initialized():  # Ray's own answer: an error, or ignore_reinit_error
            return self.real_init(*args, **kwargs)
        if len(args) > 1:
            return self.real_init(*args, **kwargs)  # let Ray raise its TypeError
        call = _call_text(args, kwargs)
        began = time.perf_counter()
        try:
            return self._init(call, args[0] if args else kwargs.pop("address", None), kwargs)
        finally:
            self.init_seconds += time.perf_counter() - began

    def _init(self, call: str, address: Any, kwargs: dict[str, Any]) -> Any:
        ray = self.module
        assert ray is not None
        try:
            shape = shape_from_kwargs(kwargs)
        except ShapeError as exc:
            raise ValueError(f"{call}: {exc}") from None
        if self.plan.mode == "isolated":
            if address not in (None, "local"):
                self.note(f"{call}: address ignored (this post starts its own cluster)")
            kwargs.update(_temp_dir=self.plan.temp_dir, include_dashboard=False)
            context = self._connect(None, kwargs)
            self._announce(call, shape, f"a private cluster of {self._given()}", ", as asked")
            return context
        for key in SHAPE_ARGS:
            kwargs.pop(key, None)
        dropped = [key for key in kwargs if key in CLUSTER_ARGS]
        for key in dropped:
            kwargs.pop(key)
        if dropped:
            self.note(f"{call}: {', '.join(dropped)} not applied (raypress starts the cluster)")
        if address not in (None, "auto", "local", self.plan.address):
            self.note(f"{call}: address ignored (the post runs on raypress's cluster)")
        if self.plan.mode == "build":
            reply = self.ask(RayRequest(call, shape.to_json()))
            if reply.error is not None or reply.address is None:
                raise RuntimeError(f"{call}: {reply.error or 'no cluster'}")
            self.has_cluster = True
            try:
                context = self._connect(reply.address, kwargs)
            except BaseException:
                self._release()
                raise
            self._announce(call, shape, f"a fresh cluster of {self._given()}", ", as asked")
            return context
        kwargs["namespace"] = self._namespace(call, kwargs.get("namespace"))
        context = self._connect(self.plan.address, kwargs)
        total = ray.cluster_resources()
        unmet = unmet_request(shape, total)
        if unmet is not None:
            self.shutdown()
            raise RuntimeError(f"{call}: the cluster at {self.plan.address} {unmet}")
        self._announce(
            call,
            shape,
            f"the cluster at {self.plan.address}, which has {self._given()} "
            "(shared with whatever else runs on it)",
        )
        return context

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        """``ray.shutdown``: keep what the tasks printed, disconnect, give the cluster back."""
        ray = self.module
        assert ray is not None and self.real_shutdown is not None
        if ray.is_initialized() and self.plan.read_logs:
            self.output.disconnecting(ray)
        result = self.real_shutdown(*args, **kwargs)
        self._release()
        return result

    def _release(self) -> None:
        if self.has_cluster:
            self.has_cluster = False
            self.emit(RayRelease())

    def _namespace(self, call: str, wanted: Any) -> str:
        if wanted not in (None, self.plan.namespace):
            self.note(f"{call}: namespace ignored (each post has its own on a shared cluster)")
        return self.plan.namespace

    def _connect(self, address: str | None, kwargs: dict[str, Any]) -> Any:
        ray = self.module
        assert ray is not None and self.real_init is not None
        kwargs.pop("log_to_driver", None)
        kwargs.pop("logging_level", None)
        kwargs.update(log_to_driver=not self.plan.read_logs, configure_logging=False)
        if self.plan.node_ip:
            kwargs["_node_ip_address"] = self.plan.node_ip
        if address is not None:  # a session may not see the raylet's process
            patch_node_discovery(ray, address)
        if self.plan.mode == "external":
            kwargs.setdefault("namespace", self.plan.namespace)
        context = self.real_init(address, **kwargs)
        self._route_ray_logging()  # ray.init may have set up its own handlers
        if address is not None:  # `ray status` in a subprocess finds the same cluster
            os.environ["RAY_ADDRESS"] = address
        job = ray.get_runtime_context().get_job_id()
        self.jobs.append(job)
        if self.plan.read_logs:
            self.output.connected(ray, job)
        return context

    def _given(self) -> str:
        ray = self.module
        assert ray is not None
        try:
            return describe_resources(ray.cluster_resources())
        except Exception:
            return "unknown resources"

    def _announce(self, call: str, shape: ClusterShape, given: str, how: str = "") -> None:
        ray = self.module
        assert ray is not None
        self.note(f"{call}: ran on {given}{how}")
        try:
            cpus = float(ray.cluster_resources().get("CPU", 0.0)) or None
        except Exception:
            cpus = None
        self.emit(
            RayJob(
                job_id=self.jobs[-1],
                cluster_cpus=cpus,
                ray_version=ray.__version__,
                requested=shape.requested(),
                given=given,
            )
        )

    # --- output of tasks and actors ---------------------------------------------------

    def flush_task_output(self, final: bool = False) -> None:
        """Print what the jobs' tasks printed since the last call (``ray_output``)."""
        if self.plan.read_logs:
            self.output.flush(self.module, final)

    # --- end of the session -----------------------------------------------------------

    def finish(self) -> None:
        """End of the session: on an external cluster, kill the detached actors its jobs
        left; a private cluster is stopped. (The build stops the clusters it started.)"""
        ray = self.module
        if ray is None or not self.jobs:
            return
        try:
            if self.plan.mode == "isolated":
                if ray.is_initialized():
                    ray.shutdown()
                return
            if self.plan.mode != "external":
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


def unmet_request(shape: ClusterShape, total: Mapping[str, float]) -> str | None:
    """What an existing cluster lacks of ``shape`` (None: it has all of it)."""
    wanted = {"CPU": shape.num_cpus, "GPU": shape.num_gpus, **dict(shape.resources)}
    for name, amount in wanted.items():
        if amount and amount > total.get(name, 0.0):
            have = total.get(name, 0.0)
            return (
                f"has {have:g} {name} in all, and the post asks for {amount:g}; run it on a "
                "cluster that has them (or without --ray-address, on a cluster of its own)"
            )
    return None


def _print_to_stdstream(
    shim: RayShim, original: Callable[..., None], data: dict[str, Any], ignore_prefix: bool
) -> None:
    """Ray's printer of forwarded output: its own processes' lines become notes."""
    if data.get("pid") in _SYSTEM_PIDS:
        for line in data.get("lines", []):
            shim.note(system_note(str(data["pid"]), line))
        return
    original(data, ignore_prefix)


def _call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"ray.init({', '.join(parts)})"


def _seconds(value: float) -> str:
    from raypress.execution.durations import format_duration

    return format_duration(value)
