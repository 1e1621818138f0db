"""Messages between the build process, the fork server and the sessions, and their framing.

Both channels are Unix stream sockets carrying length-prefixed frames. The control
channel (build process <-> fork server) carries pickles, and file descriptors via
SCM_RIGHTS; it never reaches a session. A session's own channel carries JSON only, so
the build process never unpickles what a snippet could have forged.
"""

from __future__ import annotations

import base64
import json
import pickle
import socket
import struct
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any

_HEADER = struct.Struct("!I")
MAX_FDS = 8


# --- the plan a session runs (build process -> fork server -> session, pickled) ---------


@dataclass(frozen=True, slots=True)
class SnippetCode:
    """What a session needs of a snippet (not ``publish.snippets``: the fork server stays lean)."""

    index: int
    code_line: int  # post line of the first line of ``source``
    source: str
    run: bool  # the ``eval`` option
    expect_error: bool
    repeat: int
    label: str | None


@dataclass(frozen=True, slots=True)
class InlineCode:
    """An inline expression, evaluated after snippet ``after_snippet`` (-1: first)."""

    index: int
    line: int
    source: str
    after_snippet: int


@dataclass(frozen=True, slots=True)
class RayPlan:
    """How a session's ``ray.init`` behaves."""

    mode: str  # "shared": connect to address; "isolated": start a private cluster
    address: str | None
    namespace: str
    node_ip: str | None  # passed as _node_ip_address (inside the loopback namespace)
    temp_dir: str | None  # isolated mode: the private cluster's short temp dir
    read_logs: bool  # read the job's worker logs (False: let Ray forward them)


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """Everything a forked session needs to run one post."""

    post: str
    post_dir: str
    cwd: str
    snippets: tuple[SnippetCode, ...]
    inline: tuple[InlineCode, ...]
    env: tuple[tuple[str, str], ...]
    marker: str  # random; ends each phase's output on fds 1 and 2
    memory_limit_bytes: int | None
    ray: RayPlan | None
    janitor_jobs: tuple[str, ...] = ()  # a janitor session: kill these jobs' actors, run nothing


# --- control channel (pickled) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spawn:
    """Fork a session; the frame carries its channel and its stdout and stderr pipes."""

    token: int
    plan: SessionPlan


@dataclass(frozen=True, slots=True)
class Launch:
    """Start a command (the Ray head) in its own session; the frame carries its stdout."""

    token: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str


@dataclass(frozen=True, slots=True)
class Kill:
    """SIGKILL the process group of a child of the fork server (if not yet reaped)."""

    pid: int


@dataclass(frozen=True, slots=True)
class Warm:
    """Import these modules in the fork server so sessions start with them loaded."""

    token: int
    modules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Listen:
    """Also take requests from clients on this listening Unix socket (the frame carries
    it): session drivers on the same node (``session_host``). A client's first frame must
    be ``secret``; nothing it sends is unpickled before that."""

    token: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class Started:
    """Reply to Spawn, Launch or Warm; ``pid`` 0 and ``error`` set when it failed."""

    token: int
    pid: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    """The fork server's first message."""

    pid: int
    isolated_network: bool  # it runs in a loopback-only network namespace
    problem: str | None  # why it could not enter one, when asked to


@dataclass(frozen=True, slots=True)
class Exited:
    """A child of the fork server ended; ``status`` is the raw wait status."""

    pid: int
    status: int


def send_frame(sock: socket.socket, payload: bytes, fds: tuple[int, ...] = ()) -> None:
    """Send one length-prefixed frame, with file descriptors attached to its first byte."""
    data = _HEADER.pack(len(payload)) + payload
    if fds:
        sent = socket.send_fds(sock, [data], list(fds))
        data = data[sent:]
    if data:
        sock.sendall(data)


def send_pickle(sock: socket.socket, message: object, fds: tuple[int, ...] = ()) -> None:
    """Send a control message."""
    send_frame(sock, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL), fds)


class FrameReader:
    """Reassembles frames (and received file descriptors, in order) from a stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.fds: deque[int] = deque()
        self.closed = False

    def fill(self) -> None:
        """Read what is available (call when the socket is readable); sets ``closed`` at EOF."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, MAX_FDS)
        except (ConnectionResetError, BrokenPipeError):
            data, fds = b"", []
        self.fds.extend(fds)
        if not data:
            self.closed = True
        self.buffer += data

    def frames(self) -> list[bytes]:
        """Complete frames received so far."""
        out = []
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            out.append(bytes(self.buffer[_HEADER.size : _HEADER.size + size]))
            del self.buffer[: _HEADER.size + size]
        return out

    def take_fds(self, count: int) -> list[int]:
        """The next ``count`` received descriptors."""
        return [self.fds.popleft() for _ in range(count)]


# --- session channel (JSON) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnippetStarted:
    """A snippet starts; its output ends with marker ``seq``."""

    index: int
    seq: int


@dataclass(frozen=True, slots=True)
class SnippetDone:
    """A snippet ended; its output is what fds 1 and 2 got before marker ``seq``."""

    index: int
    seq: int
    status: str
    value: str | None
    value_html: str | None  # raw: the build process sanitises it
    images: list[dict[str, Any]]  # {"mime", "data" (base64), "alt"}
    error: dict[str, Any] | None  # {"type", "message", "traceback", "line"}
    wall_s: float
    cpu_s: float
    runs: list[float]  # wall time of each run (repeat)
    notes: list[str]


@dataclass(frozen=True, slots=True)
class InlineDone:
    """An inline expression was evaluated."""

    index: int
    text: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Note:
    """A message for the build log."""

    text: str


@dataclass(frozen=True, slots=True)
class RayJob:
    """The session connected to Ray as this job."""

    job_id: str
    cluster_cpus: float | None
    ray_version: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The session ran everything it was asked to; ``packages``: (name, version) imported."""

    packages: list[list[str]]


SessionEvent = SnippetStarted | SnippetDone | InlineDone | Note | RayJob | Finished
_EVENT_TYPES = {cls.__name__: cls for cls in SessionEvent.__args__}  # type: ignore[attr-defined]


def encode_event(event: SessionEvent) -> bytes:
    """JSON for a session event."""
    return json.dumps({"type": type(event).__name__, **asdict(event)}).encode()


def decode_event(frame: bytes) -> SessionEvent:
    """Parse a session event; raises ValueError for anything malformed."""
    data = json.loads(frame)
    if not isinstance(data, dict):
        raise ValueError("session event is not an object")
    cls = _EVENT_TYPES.get(data.pop("type", None))
    if cls is None:
        raise ValueError("unknown session event")
    names = {f.name for f in fields(cls)}
    if set(data) != names:
        raise ValueError(f"bad fields for {cls.__name__}")
    return cls(**data)


def b64(data: bytes) -> str:
    """Bytes as base64 text (images inside JSON)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Inverse of :func:`b64`."""
    return base64.b64decode(text.encode("ascii"), validate=True)
