"""Session side: fail a snippet that waits for what no node of its cluster can hold.

Plain Ray waits forever for a task or actor that asks for more than any node has
(``@ray.remote(num_gpus=2)`` on a machine without GPUs); the autoscaler only warns. While
a snippet runs and waits in ``ray.get``/``ray.wait`` (wrapped by the shim to count the
waits of the main thread), a thread asks the GCS for the cluster's resource state every
second, as Ray's autoscaler does; a pending request that fits no node, still pending
after a few seconds, interrupts the main thread, and the snippet fails at the line that
waited with a message naming the request and what the cluster has. Only for the post's
own cluster: on a shared one, another job's requests are none of the post's business.
"""

from __future__ import annotations

import _thread
import functools
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from raypress.execution.ray_shape import describe_resources

_AFTER_S = 5.0  # how long a request no node can hold may wait before the snippet fails
_DEAD = 2  # autoscaler_pb2.NodeStatus.DEAD


class InfeasibleWatch:
    """Watches one session's waits while its snippets run."""

    def __init__(self, ray: Callable[[], ModuleType | None]) -> None:
        self.ray = ray
        self.waiting = 0  # ray.get/ray.wait calls in progress in the main thread
        self.reason: str | None = None  # why the watch interrupted the snippet
        self.stop: threading.Event | None = None

    def counting(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """``call`` (``ray.get`` or ``ray.wait``), counting the main thread's waits."""
        main = threading.main_thread()

        @functools.wraps(call)
        def waiting(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not main:
                return call(*args, **kwargs)
            self.waiting += 1
            try:
                return call(*args, **kwargs)
            finally:
                self.waiting -= 1

        return waiting

    def start(self) -> None:
        """A snippet starts."""
        self.reason = None
        self.stop = threading.Event()
        threading.Thread(
            target=self._watch, args=(self.stop,), name="raypress-infeasible", daemon=True
        ).start()

    def end(self) -> None:
        """The snippet ended."""
        if self.stop is not None:
            self.stop.set()
            self.stop = None

    def error(self, caught: BaseException, filename: str) -> BaseException:
        """The error the snippet fails with if the watch interrupted it: raised at the post's
        line that waited (Ray's own frames below it dropped); else ``caught``."""
        if self.reason is None or not isinstance(caught, KeyboardInterrupt):
            return caught
        last = None
        tb = caught.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                last = tb
            tb = tb.tb_next
        if last is not None:
            last.tb_next = None
        return RuntimeError(self.reason).with_traceback(caught.__traceback__)

    def _watch(self, stop: threading.Event) -> None:
        since: float | None = None
        while not stop.wait(1.0):
            ray = self.ray()
            if ray is None or not ray.is_initialized() or not self.waiting:
                since = None
                continue
            try:
                reason = infeasible_requests(ray)
            except Exception:
                reason = None
            if reason is None:
                since = None
                continue
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since >= _AFTER_S and self.waiting and not stop.is_set():
                self.reason = reason
                _thread.interrupt_main()
                return


def infeasible_requests(ray: ModuleType) -> str | None:
    """Why a pending request of the cluster can never be met (no node has that much), or
    None. Asks the GCS for its resource state, as Ray's autoscaler does."""
    from ray.autoscaler.v2.sdk import get_cluster_resource_state

    state = get_cluster_resource_state(ray._private.worker.global_worker.gcs_client)
    totals = [dict(node.total_resources) for node in state.node_states if node.status != _DEAD]
    bundles = [dict(r.request.resources_bundle) for r in state.pending_resource_requests]
    for gang in state.pending_gang_resource_requests:
        bundles += [dict(request.resources_bundle) for request in gang.requests]
    for bundle in bundles:
        if not any(all(node.get(k, 0.0) >= v for k, v in bundle.items()) for node in totals):
            wanted = ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items()))
            biggest = max(totals, key=lambda n: n.get("CPU", 0.0), default={})
            return (
                f"a task or actor asks for {{{wanted}}}, more than any node of this post's "
                f"cluster has ({describe_resources(biggest)}), so Ray can never run it "
                "(ask ray.init for more, or the task for less)"
            )
    return None
