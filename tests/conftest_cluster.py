"""A real multi-node Ray cluster on this machine, for tests where nodes matter.

Each node is a ``ray start --block`` process in a process group of its own, on its own
loopback address (127.0.0.2 for the head, 127.0.0.3, ... for the others; Linux routes
all of 127/8 to the loopback interface), with its own short temp dir and free ports,
so nodes do not share a log folder, a socket or a port, much as if they were separate
machines. Stopping a node is a SIGKILL of its process group (never ``ray stop``, which
would kill every Ray process on the machine, other people's included). Starting waits,
and tries a node again, when the machine is too busy for Ray's own timeouts.

``local_cluster(n, resources)`` starts one; the session-scoped ``two_node_cluster``
fixture gives the tests a head and a second node carrying the custom resource
``{"node2": 2}`` (and the head ``{"head": 2}``), so a task can be sent to either.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_ADDRESS = re.compile(r"ray start --address='([^']+)'")
_NODE_STARTED = re.compile(r"Ray runtime started")


class ClusterStartError(RuntimeError):
    """A node did not start within its attempts."""


@dataclass
class RayNode:
    """One ``ray start`` process group."""

    ip: str
    temp_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    resources: dict[str, float] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node's whole process group (its raylet, workers, agents)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class LocalCluster:
    """Nodes of one cluster; ``address`` is the head's GCS address."""

    address: str
    nodes: list[RayNode]
    env: dict[str, str]

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
            shutil.rmtree(node.temp_dir, ignore_errors=True)

    def wait_for_nodes(self, count: int, timeout: float = 120.0) -> None:
        """Wait until the GCS lists ``count`` alive nodes (a fresh driver, in a child)."""
        script = (
            "import ray, sys, time\n"
            "ray.init(sys.argv[1], logging_level='ERROR')\n"
            "deadline = time.time() + float(sys.argv[3])\n"
            "while len([n for n in ray.nodes() if n['Alive']]) < int(sys.argv[2]):\n"
            "    assert time.time() < deadline, ray.nodes()\n"
            "    time.sleep(0.5)\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, self.address, str(count), str(timeout)],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=timeout + 60,
        )


def node_env() -> dict[str, str]:
    """The environment of the nodes (and of drivers meant to reach them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYPRESS_"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    return env


def local_cluster(
    resources: Sequence[Mapping[str, float]],
    num_cpus: int = 1,
    start_timeout: float = 120.0,
    attempts: int = 3,
) -> LocalCluster:
    """Start ``len(resources)`` nodes (node k gets ``resources[k]``); the head first."""
    env = node_env()
    nodes: list[RayNode] = []
    address = ""
    try:
        for index, extra in enumerate(resources):
            ip = f"127.0.0.{index + 2}"
            node = _start_node(ip, address, dict(extra), num_cpus, env, start_timeout, attempts)
            nodes.append(node)
            if index == 0:
                found = _ADDRESS.search(node.output())
                assert found is not None
                address = found.group(1)
        cluster = LocalCluster(address, nodes, env)
        cluster.wait_for_nodes(len(nodes), timeout=start_timeout)
        return cluster
    except BaseException:
        LocalCluster(address, nodes, env).stop()
        raise


def _start_node(
    ip: str,
    head: str,
    resources: dict[str, float],
    num_cpus: int,
    env: dict[str, str],
    start_timeout: float,
    attempts: int,
) -> RayNode:
    last = ""
    for _ in range(attempts):
        temp_dir = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))  # short: socket paths
        log = temp_dir / "start.log"
        argv = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--block",
            f"--node-ip-address={ip}",
            f"--temp-dir={temp_dir}",
            f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources)}",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
        ]
        if head:
            argv.append(f"--address={head}")
        else:
            argv += [
                "--head",
                "--port=0",
                "--include-dashboard=false",
                f"--dashboard-port={_free_port()}",
            ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node = RayNode(ip, temp_dir, log, process, resources)
        ready = _ADDRESS if not head else _NODE_STARTED
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and node.alive() and not ready.search(node.output()):
            time.sleep(0.2)
        if node.alive() and ready.search(node.output()):
            return node
        last = node.output()[-3000:]
        node.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)
    raise ClusterStartError(f"the Ray node on {ip} did not start in {attempts} attempts:\n{last}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def two_node_cluster() -> Iterator[LocalCluster]:
    """A head (127.0.0.2, resource ``head: 2``) and a node (127.0.0.3, ``node2: 2``)."""
    cluster = local_cluster([{"head": 2}, {"node2": 2}])
    try:
        yield cluster
    finally:
        cluster.stop()
