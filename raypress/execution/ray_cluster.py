"""The build's Ray cluster: started lazily through the fork server, stopped by its pid.

It runs ``ray start --head --block`` in its own process group (stopping it is a SIGKILL
of that group, never ``ray stop``, which would kill every Ray process on the machine),
on a free port, with its own short temp dir (Unix socket paths must stay under ~107
bytes), no dashboard, no log monitor (sessions read worker logs themselves), generous
logical CPUs (``@ray.remote(num_cpus=4)`` must not wait forever on a 2-core machine), an
explicit object store size and an earlier memory-pressure threshold. It always requires
a fresh token per build, also inside the build's sandbox (``RAY_AUTH_MODE`` is always set:
unset, Ray's behaviour depends on whether ``~/.ray/auth_token`` exists). In the sandbox
its temporary folder lives in the sandbox's own ``/ray`` (no other build, and no process
outside, can reach its Unix sockets) and it runs in the build's ``ray`` memory cgroup.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from raypress.execution.forkclient import ForkServerClient, ForkServerError
from raypress.execution.model import GIB

_ADDRESS = re.compile(r"ray start --address='([^']+)'")
_START_TIMEOUT_S = 90.0
# The head's and drivers' address inside the loopback-only namespace. Not 127.0.0.1:
# Ray "resolves" that one by probing 8.8.8.8 and prints a warning into every snippet.
LOOPBACK = "127.0.0.2"

# Environment of the sessions (and fork server) for Ray, whatever the cluster.
SESSION_RAY_ENV = {
    "RAY_DEDUP_LOGS": "0",
    "RAY_COLOR_PREFIX": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_gcs_rpc_server_reconnect_timeout_s": "5",  # a dead cluster fails drivers fast
    "RAY_py_gcs_connect_timeout_s": "15",
}


class ClusterError(RuntimeError):
    """The cluster could not be started."""


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """How to start the build's cluster."""

    num_cpus: int
    object_store_bytes: int
    isolated_network: bool
    memory_usage_threshold: float = 0.85  # Ray's default, 0.95 of the machine, is too late
    temp_dir: str | None = None  # in the build's sandbox (Ray makes it); None: a new one here
    cgroup_procs: str | None = None  # the memory cgroup the head (and its workers) join
    worker_startup_concurrency: int = field(
        default_factory=lambda: max(1, (os.cpu_count() or 1) // 2)
    )


def default_num_cpus() -> int:
    """max(8, cores): tasks asking for more CPUs than the machine has still get scheduled."""
    return max(8, os.cpu_count() or 1)


def default_object_store_bytes() -> int:
    """A tenth of the machine's memory, between 256 MiB and 2 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 * GIB
    return max(256 << 20, min(2 * GIB, total // 10))


def auth_env(token: str | None = None) -> dict[str, str]:
    """``RAY_AUTH_MODE`` and a fresh token for the build's own cluster (always required)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token or secrets.token_hex(32)}


def external_auth_env(builder_env: Mapping[str, str]) -> dict[str, str]:
    """Authentication for a user-given cluster: theirs if set, else explicitly disabled."""
    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    env = {k: builder_env[k] for k in keys if k in builder_env}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return env


class BuildCluster:
    """A running head started for this build."""

    def __init__(
        self,
        server: ForkServerClient,
        base_env: Mapping[str, str],
        options: ClusterOptions,
        parent: str,
    ) -> None:
        self.server = server
        self.options = options
        # short: socket paths
        self.temp_dir = options.temp_dir or tempfile.mkdtemp(prefix="c", dir=parent)
        self.node_ip = LOOPBACK if options.isolated_network else None
        self.stopping = False
        self.death: str | None = None
        self.output: deque[str] = deque(maxlen=40)
        self.started_s = 0.0
        start = time.perf_counter()
        read_fd, write_fd = os.pipe()
        head_env = {  # base_env carries RAY_AUTH_MODE (and the build's token)
            **base_env,
            **SESSION_RAY_ENV,
            "RAY_memory_usage_threshold": str(options.memory_usage_threshold),
            # Python workers started side by side on a small machine slow each other down:
            # measured here (2 cores), one at a time made the seed post's ray.get 10x faster
            "RAY_worker_maximum_startup_concurrency": str(options.worker_startup_concurrency),
        }
        try:
            self.pid = server.launch(
                self._argv(),
                head_env,
                "/" if options.temp_dir else self.temp_dir,
                write_fd,
                on_exit=self._on_exit,
                cgroup_procs=options.cgroup_procs,
            )
        except BaseException:
            os.close(read_fd)
            self._remove_temp_dir()
            raise
        finally:
            os.close(write_fd)
        self.output_file = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")
        self._found: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_output, name="ray-head-output", daemon=True).start()
        self._ready.wait(_START_TIMEOUT_S)
        if self._found is None:
            self.stop()
            tail = "\n".join(self.output)
            raise ClusterError(f"the Ray head did not start:\n{tail}")
        self.address: str = self._found
        self.started_s = time.perf_counter() - start

    def failure(self) -> str | None:
        """Why the cluster is gone, if it died during the build."""
        return self.death

    def stop(self) -> None:
        """SIGKILL the head's process group (frees every worker in ~0.1 s) and clean up.

        If the fork server is gone: in the sandbox the head went with it (its PID
        namespace ended); outside, its process group is killed from here.
        """
        self.stopping = True
        try:
            self.server.kill(self.pid)
            self.server.wait_exit(self.pid, timeout=10.0)
        except ForkServerError:
            if self.options.temp_dir is None:  # the head's pid is one of this machine's
                with contextlib.suppress(OSError):
                    os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.output_file.close()
        self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self.options.temp_dir is None:  # one of ours; in the sandbox it goes with it
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            "--port=0",
            "--include-dashboard=false",
            "--include-log-monitor=false",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={self.options.num_cpus}",
            f"--object-store-memory={self.options.object_store_bytes}",
        ]
        if self.node_ip:
            argv.append(f"--node-ip-address={self.node_ip}")
        else:  # in the machine's namespace: no fixed ports a second build would collide on
            argv += [
                f"--dashboard-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}",
            ]
        return argv

    def _read_output(self) -> None:
        """Find the address in the head's output, then keep draining it."""
        with contextlib.suppress(OSError, ValueError):
            for line in self.output_file:
                self.output.append(line.rstrip())
                found = _ADDRESS.search(line)
                if found and self._found is None:
                    self._found = found.group(1)
                    self._ready.set()
        self._ready.set()

    def _on_exit(self, status: int) -> None:
        if not self.stopping:
            code = os.waitstatus_to_exitcode(status)
            self.death = f"the build's Ray cluster stopped during the build (head exit {code})"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def short_temp_dir() -> str:
    """A fresh directory with a short path (Ray's Unix socket paths must fit 107 bytes)."""
    return tempfile.mkdtemp(prefix="rp", dir="/tmp")
