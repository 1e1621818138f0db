"""A Ray cluster started by the build: ``ray start --head --block`` through the fork server.

Each cluster is started for one post with the resources its ``ray.init`` asked for
(``ray_shape``), in its own process group (stopping it is a SIGKILL of that group, never
``ray stop``, which would kill every Ray process on the machine), on free ports, with its
own short temp dir (Unix socket paths must stay under ~107 bytes) and no dashboard
(raypress reads worker output itself, and pages have no use for it). Everything else is
Ray's default, so a post's timings are those of ``ray.init`` in a plain script: in
particular Ray's own worker start-up concurrency and its prestarting of one worker per CPU
for the first driver (measured in ``bench/bench_fidelity.py``).

On a busy machine a start can fail ("GCS has become overloaded") or take minutes:
:func:`start_cluster` tries again until its time limit (default 120 s), logging one line
per failed attempt and Ray's own output once, when it gives up.

Every cluster requires the build's fresh token, also inside the build's sandbox
(``RAY_AUTH_MODE`` is always set: unset, Ray's behaviour depends on whether
``~/.ray/auth_token`` exists), so no snippet can join another build's cluster. In the
sandbox a cluster's temporary folder lives in the sandbox's own ``/ray`` (no other build,
and no process outside, can reach its Unix sockets; it is removed when the cluster
stops), and the head joins the build's ``ray`` memory cgroup.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from raypress.execution.forkclient import ForkServerClient, ForkServerError
from raypress.execution.ray_shape import ClusterShape

_ADDRESS = re.compile(r"ray start --address='([^']+)'")
_REASON = re.compile(r"(?i)\b(error|overloaded|failed|timed? ?out|exception)\b")
_PERMANENT = re.compile(r"ValueError|Error: Invalid value|No such option|Usage: ")
_RETRY_PAUSE_S = 2.0
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
    """The cluster could not be started; ``output`` is Ray's own (of the last attempt)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """How to start one cluster."""

    shape: ClusterShape
    isolated_network: bool
    start_timeout: float = 120.0  # seconds for all attempts together
    memory_usage_threshold: float = 0.85  # Ray's default, 0.95 of the machine, is too late
    temp_dir: str | None = None  # in the build's sandbox (Ray makes it); None: a new one here
    cgroup_procs: str | None = None  # the memory cgroup the head (and its workers) join


class _AttemptFailed(Exception):
    def __init__(self, reason: str, output: str, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output
        self.permanent = permanent


def auth_env(token: str | None = None) -> dict[str, str]:
    """``RAY_AUTH_MODE`` and a fresh token for the build's own clusters (always required)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token or secrets.token_hex(32)}


def external_auth_env(builder_env: Mapping[str, str]) -> dict[str, str]:
    """Authentication for a user-given cluster: theirs if set, else explicitly disabled."""
    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    env = {k: builder_env[k] for k in keys if k in builder_env}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return env


def start_cluster(
    server: ForkServerClient,
    base_env: Mapping[str, str],
    options: ClusterOptions,
    parent: str,
    log: Callable[[str], None],
) -> BuildCluster:
    """Start a cluster, trying again after a failed attempt until ``options.start_timeout``.

    One log line per failed attempt; on giving up, ClusterError carries Ray's output (of
    the last attempt) for the caller to show once.
    """
    began = time.monotonic()
    deadline = began + options.start_timeout
    attempt = 0
    while True:
        attempt += 1
        attempt_began = time.monotonic()
        try:
            attempt_options = options
            if options.temp_dir and attempt > 1:  # the last one's folder is being removed
                attempt_options = replace(options, temp_dir=f"{options.temp_dir}-{attempt}")
            return BuildCluster(server, base_env, attempt_options, parent, deadline)
        except _AttemptFailed as failed:
            now = time.monotonic()
            if failed.permanent or now + _RETRY_PAUSE_S >= deadline:
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                raise ClusterError(
                    f"the Ray cluster ({options.shape.requested()}) did not start: "
                    f"{failed.reason} ({tries} in {now - began:.0f} s; the limit is "
                    f"{options.start_timeout:g} s, `ray_start_timeout`)",
                    failed.output.strip() or "(no output)",
                ) from None
            log(
                f"execution: Ray cluster start attempt {attempt} failed after "
                f"{now - attempt_began:.1f} s ({failed.reason}); trying again"
            )
            time.sleep(_RETRY_PAUSE_S)


class BuildCluster:
    """A running head (one start attempt; raises ``_AttemptFailed``)."""

    def __init__(
        self,
        server: ForkServerClient,
        base_env: Mapping[str, str],
        options: ClusterOptions,
        parent: str,
        deadline: float,
    ) -> None:
        self.server = server
        self.options = options
        self.shape = options.shape
        # short: socket paths
        self.temp_dir = options.temp_dir or tempfile.mkdtemp(prefix="c", dir=parent)
        self.node_ip = LOOPBACK if options.isolated_network else None
        self.stopping = False
        self.death: str | None = None
        self.exit_code: int | None = None
        self.output: deque[str] = deque(maxlen=60)
        start = time.perf_counter()
        read_fd, write_fd = os.pipe()
        head_env = {  # base_env carries RAY_AUTH_MODE (and the build's token)
            **base_env,
            **SESSION_RAY_ENV,
            "RAY_memory_usage_threshold": str(options.memory_usage_threshold),
        }
        self._found: str | None = None
        self._ready = threading.Event()
        try:
            self.pid = server.launch(
                self._argv(),
                head_env,
                "/" if options.temp_dir else self.temp_dir,
                write_fd,
                on_exit=self._on_exit,
                cgroup_procs=options.cgroup_procs,
            )
        except BaseException as exc:
            os.close(read_fd)
            self._remove_temp_dir()
            if isinstance(exc, ForkServerError | OSError):
                raise _AttemptFailed(str(exc), "", True) from None
            raise
        finally:
            os.close(write_fd)
        self.output_file = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")
        self._reader = threading.Thread(
            target=self._read_output, name="ray-head-output", daemon=True
        )
        self._reader.start()
        self._ready.wait(max(0.0, deadline - time.monotonic()))
        if self._found is None or self.death is not None:
            self.stop()
            self._reader.join(timeout=2.0)
            output = "\n".join(self.output)
            raise _AttemptFailed(self._reason(output), output, bool(_PERMANENT.search(output)))
        self.address: str = self._found
        self.started_s = time.perf_counter() - start

    def failure(self) -> str | None:
        """Why the cluster is gone, if it died while in use."""
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
        if self.options.temp_dir is None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            return
        # in the sandbox's own /ray: removed there, by a process the fork server starts
        with contextlib.suppress(ForkServerError, OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                self.server.launch([sys.executable, "-c", _REMOVE, self.temp_dir], {}, "/", devnull)
            finally:
                os.close(devnull)

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
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
            # ports Ray would otherwise fix (8265, 52365): several clusters run at once
            f"--dashboard-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}",
            *self.shape.start_args(),
        ]
        if self.node_ip:
            argv.append(f"--node-ip-address={self.node_ip}")
        return argv

    def _reason(self, output: str) -> str:
        if self.exit_code is not None:
            what = f"the head exited with status {self.exit_code}"
        else:
            what = "no answer before the time limit"
        for line in reversed(output.splitlines()):
            if _REASON.search(line):
                return f"{what}: {_short(line)}"
        return what

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
            self.exit_code = os.waitstatus_to_exitcode(status)
            self.death = f"the post's Ray cluster stopped (head exit {self.exit_code})"
        self._ready.set()


_REMOVE = "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)"


def _short(line: str, limit: int = 160) -> str:
    line = re.sub(r"^\S+ \S+\s+(?:ERROR|WARNING|INFO)\s+\S+ -- ", "", line.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def short_temp_dir() -> str:
    """A fresh directory with a short path (Ray's Unix socket paths must fit 107 bytes)."""
    return tempfile.mkdtemp(prefix="rp", dir="/tmp")
