"""Check a user-given Ray cluster address before any post runs.

An unreachable or wrong address must fail the build at once, with one line that names
it: not after every Ray post has waited for its own connection to time out. The check
is a TCP connection (refused or unreachable: at once), then, for a cluster's GCS
address, a request to the GCS with a deadline (a port that answers but is not a Ray
cluster: within :data:`CHECK_TIMEOUT_S`). ``ray://`` addresses (Ray Client) need the
client's gRPC package on the build machine.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from dataclasses import dataclass

CHECK_TIMEOUT_S = 8.0
_CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """A parsed address: ``host:port`` of a GCS, or ``ray://host:port`` of a Ray Client
    server."""

    text: str
    host: str
    port: int
    client: bool  # ray://


class AddressError(ValueError):
    """The address is malformed, unreachable, or no Ray cluster answers there."""


def parse_address(text: str) -> ClusterAddress:
    """``host:port`` or ``ray://host:port`` (IPv6 hosts in brackets)."""
    address = text.strip()
    client = address.startswith("ray://")
    rest = address[len("ray://") :] if client else address
    if "://" in rest or "/" in rest:
        raise AddressError(f"{text!r} is not a Ray address (host:port or ray://host:port)")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"{text!r} is not a Ray address (host:port or ray://host:port)")
    return ClusterAddress(address, host, int(port), client)


def check_address(text: str, timeout: float = CHECK_TIMEOUT_S) -> ClusterAddress:
    """The parsed address of a Ray cluster that answers; raises :class:`AddressError`
    (its message is the one line the console shows) within about ``timeout`` seconds."""
    address = parse_address(text)
    if address.client and importlib.util.find_spec("grpc") is None:
        raise AddressError(
            f"{text} is a Ray Client address, and Ray Client is not installed here: "
            "pip install 'ray[client]' (or use the cluster's GCS address, host:6379, "
            "from a machine inside the cluster's network)"
        )
    try:
        with socket.create_connection((address.host, address.port), _CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AddressError(f"no Ray cluster at {text}: {reason}") from None
    if not address.client:
        _ask_gcs(address, timeout)
    return address


_ASK = (
    "import sys\n"
    "from ray._raylet import GcsClient\n"
    "print(GcsClient(address=sys.argv[1]).cluster_id)\n"
)


def _ask_gcs(address: ClusterAddress, timeout: float) -> None:
    """Ask the GCS for its cluster id, in a child process with a deadline: Ray's client
    retries for ~40 s and logs each retry on stderr."""
    try:
        answer = subprocess.run(
            [sys.executable, "-c", _ASK, f"{address.host}:{address.port}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AddressError(
            f"no Ray cluster answered at {address.text} within {timeout:g} s "
            "(something listens there, but not a Ray GCS)"
        ) from None
    if answer.returncode != 0:
        last = (answer.stderr.strip().splitlines() or ["no answer"])[-1]
        raise AddressError(f"no Ray cluster at {address.text}: {last[-200:]}")
