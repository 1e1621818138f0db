"""A simulated multi-node Ray cluster for tests and benchmarks: one ``ray start`` per node.

Each node is a ``ray start --block`` process in its own process group, on its own
loopback address (127.0.0.2 for the head, 127.0.0.3, ... for the others), with its own
short temp dir, a custom resource naming it (``node1``, ``node2``, ...) and free ports
for every service, so that several clusters (other test sessions, other builds) can run
on one machine. It is stopped by SIGKILL of each node's process group, never by
``ray stop``, which would stop every Ray cluster of the machine. The cluster requires a
fresh token; :attr:`SimulatedCluster.env` is what a client needs to connect.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 240.0  # a busy 2-core machine starts a node in 5-60 s
_ALIVE = """
import json, sys
from ray._raylet import GcsClient
info = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10)
print(json.dumps({k.hex(): v.node_manager_address for k, v in info.items() if v.state == 0}))
"""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (held open together while chosen)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(slots=True)
class SimNode:
    """One ``ray start`` process."""

    index: int  # 1-based: node1 is the head
    ip: str
    temp_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def resource(self) -> str:
        """The custom resource only this node has (1 unit)."""
        return f"node{self.index}"


@dataclass(slots=True)
class SimulatedCluster:
    """``nodes`` Ray nodes on loopback addresses, ``cpus`` logical CPUs each."""

    nodes: int = 2
    cpus: int = 2
    object_store_bytes: int = 150 << 20
    client_server: bool = False  # also start a Ray Client server on the head
    members: list[SimNode] = field(default_factory=list)
    port: int = 0
    client_port: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The GCS address (``--ray-address``)."""
        return f"127.0.0.2:{self.port}"

    @property
    def client_address(self) -> str:
        """The Ray Client address (``ray://``), when :attr:`client_server` is on."""
        return f"ray://127.0.0.2:{self.client_port}"

    def start(self) -> SimulatedCluster:
        """Start every node and wait until all are alive (raises RuntimeError if not)."""
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            # a killed node is declared dead in ~10 s, not ~30 s
            "RAY_health_check_period_ms": "2000",
            "RAY_health_check_failure_threshold": "5",
        }
        self.port, self.client_port = free_ports(2)
        try:
            for index in range(1, self.nodes + 1):
                self._start_node_patiently(index)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node_patiently(self, index: int, attempts: int = 3) -> None:
        """Start node ``index`` and wait until the GCS sees it; on a busy machine Ray may
        give up after its fixed 30 s ("timed out during startup"): start it again."""
        for attempt in range(1, attempts + 1):
            node = self._start_node(index)
            self.members.append(node)
            try:
                self._wait_alive(index)
                return
            except RuntimeError:
                if attempt == attempts:
                    raise
                self.members.remove(node)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait()
                shutil.rmtree(node.temp_dir, ignore_errors=True)

    def restart_node(self, index: int) -> None:
        """Start node ``index`` again after :meth:`kill_node` (same address, fresh dir)."""
        old = self.members[index - 1]
        shutil.rmtree(old.temp_dir, ignore_errors=True)
        node = self._start_node(index)
        self.members[index - 1] = node
        self._wait_alive(len(self.members))

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``'s whole process group (raylet, workers, object store)."""
        node = self.members[index - 1]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait()

    def stop(self) -> None:
        """Kill every node's process group and remove the temp dirs."""
        for node in reversed(self.members):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=10)
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        self.members.clear()

    def alive_nodes(self) -> dict[str, str]:
        """Node id -> IP of the nodes the GCS reports alive (asked from a child process:
        Ray reads its token once per process, and this one may know another cluster)."""
        answer = subprocess.run(
            [sys.executable, "-c", _ALIVE, self.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(answer.stdout.splitlines()[-1])

    def _start_node(self, index: int) -> SimNode:
        ip = f"127.0.0.{index + 1}"
        temp_dir = Path(tempfile.mkdtemp(prefix=f"rn{index}", dir="/tmp"))  # short: sockets
        agent_http, agent_grpc, runtime_env, metrics, dashboard = free_ports(5)
        argv = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--block",
            f"--node-ip-address={ip}",
            f"--num-cpus={self.cpus}",
            f'--resources={{"node{index}": 1}}',
            f"--object-store-memory={self.object_store_bytes}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
        ]
        if index == 1:
            argv += [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--dashboard-port={dashboard}",
            ]
            if self.client_server:
                argv.append(f"--ray-client-server-port={self.client_port}")
        else:
            argv.append(f"--address={self.address}")
        log = temp_dir / "ray-start.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return SimNode(index, ip, temp_dir, process, log)

    def _wait_alive(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for node in self.members:
                if node.process.poll() is not None:
                    tail = node.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"ray start of node{node.index} exited:\n{tail}")
            with contextlib.suppress(Exception):
                if len(self.alive_nodes()) >= count:
                    return
            time.sleep(1.0)
        raise RuntimeError(f"{count} Ray node(s) did not come up in {START_TIMEOUT_S:g} s")
