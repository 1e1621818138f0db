"""Messages between the build process, the fork server and the sessions, and their framing.

Both channels are Unix stream sockets carrying length-prefixed frames. The control
channel carries pickles from the build process to the fork server (with file descriptors
via SCM_RIGHTS) and JSON back: the fork server runs in the sandbox beside the posts' Ray
workers, so the build process never unpickles what it sends. A session's own channel
carries JSON only, and its frames are bounded (:class:`FrameReader` ``limit``).

The messages are ``NamedTuple``s rather than frozen dataclasses: every build's fork server
and session imports them all, and 22 frozen dataclasses take about 30 ms to create.
Compare them with their type too (a NamedTuple equals any tuple of the same values).
"""

import base64
import json
import pickle
import socket
import struct
from collections import deque
from typing import Any, NamedTuple

_HEADER = struct.Struct("!I")
MAX_FDS = 8
# Inside the build's sandbox: the build's memory cgroup folder, and the fork server's own
CGROUP_DIR = "/run/raypress/cgroup"
SERVER_CGROUP = f"{CGROUP_DIR}/server/cgroup.procs"


# What a Warm request may import in the fork server, by the name a snippet imports (with
# the submodules most posts touch): a session may find these already imported; it imports
# others itself. All are fork-safe: no threads at import.
WARMABLE: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy", "numpy.random"),
    "matplotlib": ("matplotlib", "matplotlib.pyplot"),
    "matplotlib.pyplot": ("matplotlib", "matplotlib.pyplot"),
    "pandas": ("pandas",),
    "ray": ("ray",),
}


# --- the plan a session runs (build process -> fork server -> session, pickled) ---------


class SnippetCode(NamedTuple):
    """What a session needs of a snippet (not ``publish.snippets``: the fork server stays lean)."""

    index: int
    code_line: int  # post line of the first line of ``source``
    source: str
    run: bool  # the ``eval`` option
    expect_error: bool
    repeat: int
    label: str | None
    fig_format: str = "png"  # matplotlib figures: png or webp (at 2x), or svg
    fig_dpi: int | None = None  # dots per inch of the 1x image (None: the figure's own)


class InlineCode(NamedTuple):
    """An inline expression, evaluated after snippet ``after_snippet`` (-1: first)."""

    index: int
    line: int
    source: str
    after_snippet: int


class RayPlan(NamedTuple):
    """How a session's ``ray.init`` behaves."""

    # "build": ask the build process for a fresh cluster of the call's shape (RayRequest);
    # "external": connect to ``address``; "isolated": start a private cluster itself
    mode: str
    address: str | None
    namespace: str
    node_ip: str | None  # passed as _node_ip_address (inside the loopback namespace)
    temp_dir: str | None  # isolated mode: the private cluster's short temp dir
    read_logs: bool  # read the job's worker logs (False: let Ray forward them)


class SessionSandbox(NamedTuple):
    """The namespaces a session makes for itself inside the build's sandbox (paths are
    as the sandbox sees them)."""

    cgroup_procs: str | None  # the session's memory cgroup to join (its cgroup.procs file)
    home: str  # $HOME, on the session's private /tmp
    work: str  # the working directory, on the session's private /tmp
    tmp_bytes: int  # size of the private /tmp and /dev/shm
    keep: tuple[str, ...]  # read-only folders below /tmp to show again over the private /tmp
    read_only: tuple[str, ...]  # writable folders of the build's sandbox made read-only
    writable: tuple[str, ...]  # ...except these folders below them (Ray's logs)
    hide: tuple[str, ...]  # folders covered by an empty one (the cgroup folder)
    seed: tuple[str, ...]  # files copied to the same path in the private /tmp (font cache)


class SessionPlan(NamedTuple):
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
    sandbox: SessionSandbox | None = None  # None: no namespaces of its own (reduced isolation)


# --- control channel (pickled) ---------------------------------------------------------


class Spawn(NamedTuple):
    """Fork a session; the frame carries its channel and its stdout and stderr pipes."""

    token: int
    plan: SessionPlan


class Launch(NamedTuple):
    """Start a command (the Ray head) in its own session; the frame carries its stdout."""

    token: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    cgroup_procs: str | None = None  # the memory cgroup it joins before it starts


class Kill(NamedTuple):
    """SIGKILL the process group of a child of the fork server (if not yet reaped)."""

    pid: int


class Warm(NamedTuple):
    """Import these modules in the fork server so sessions start with them loaded."""

    token: int
    modules: tuple[str, ...]


class Started(NamedTuple):
    """Reply to Spawn, Launch or Warm; ``pid`` 0 and ``error`` set when it failed."""

    token: int
    pid: int
    error: str | None = None


class Ready(NamedTuple):
    """The fork server's first message."""

    pid: int
    isolated_network: bool  # it runs in a loopback-only network namespace
    problem: str | None  # why it could not enter one, when asked to
    nested: str | None = None  # why sessions cannot make namespaces of their own (None: they can)


class Exited(NamedTuple):
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
    """Send a control message (build process -> fork server)."""
    send_frame(sock, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL), fds)


Reply = Started | Ready | Exited
_REPLY_TYPES = {cls.__name__: cls for cls in (Started, Ready, Exited)}
_REPLY_FIELDS = {
    "token": int,
    "pid": int,
    "status": int,
    "error": (str, type(None)),
    "problem": (str, type(None)),
    "nested": (str, type(None)),
    "isolated_network": bool,
}


def send_reply(sock: socket.socket, message: Reply) -> None:
    """Send a reply (fork server -> build process) as JSON."""
    send_frame(sock, json.dumps({"type": type(message).__name__, **message._asdict()}).encode())


def decode_reply(frame: bytes) -> Reply:
    """Parse a fork server reply; raises ValueError for anything malformed."""
    data = json.loads(frame)
    if not isinstance(data, dict):
        raise ValueError("reply is not an object")
    cls = _REPLY_TYPES.get(data.pop("type", None))
    if cls is None:
        raise ValueError("unknown reply")
    names = set(cls._fields)
    if not set(data) <= names:
        raise ValueError(f"bad fields for {cls.__name__}")
    for name, value in data.items():
        kind = _REPLY_FIELDS[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"bad {name} in {cls.__name__}")
    return cls(**data)


class FrameReader:
    """Reassembles frames (and received file descriptors, in order) from a stream socket."""

    def __init__(self, sock: socket.socket, limit: int | None = None) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.fds: deque[int] = deque()
        self.closed = False
        self.limit = limit  # largest frame accepted; a larger one sets ``oversized``
        self.oversized = 0  # the size a peer announced over the limit (the stream stops)

    def fill(self) -> None:
        """Read what is available (call when the socket is readable); sets ``closed`` at EOF."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, MAX_FDS)
        except (ConnectionResetError, BrokenPipeError):
            data, fds = b"", []
        self.fds.extend(fds)
        if not data:
            self.closed = True
        if not self.oversized:  # past an oversized frame the stream is only drained
            self.buffer += data

    def frames(self) -> list[bytes]:
        """Complete frames received so far."""
        out = []
        while len(self.buffer) >= _HEADER.size and not self.oversized:
            (size,) = _HEADER.unpack_from(self.buffer)
            if self.limit is not None and size > self.limit:
                self.oversized = size
                self.buffer.clear()
                break
            if len(self.buffer) < _HEADER.size + size:
                break
            out.append(bytes(self.buffer[_HEADER.size : _HEADER.size + size]))
            del self.buffer[: _HEADER.size + size]
        return out

    def take_fds(self, count: int) -> list[int]:
        """The next ``count`` received descriptors."""
        return [self.fds.popleft() for _ in range(count)]


# --- session channel (JSON) -------------------------------------------------------------


class SnippetStarted(NamedTuple):
    """A snippet starts; its output ends with marker ``seq``."""

    index: int
    seq: int


class Displayed(NamedTuple):
    """A rich output of snippet ``index``: what fds 1 and 2 got before marker ``seq`` comes
    before it on the page. ``data`` is a Jupyter MIME bundle (binary images in base64,
    JSON types as JSON values), unchecked: the build process bounds and sanitises it.
    ``result``: the value of the snippet's final expression (Jupyter's execute_result)."""

    index: int
    seq: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    result: bool


class SnippetDone(NamedTuple):
    """A snippet ended; its last output is what fds 1 and 2 got before marker ``seq``
    (the output before each of its ``Displayed`` events ended at that event's marker)."""

    index: int
    seq: int
    status: str
    error: dict[str, Any] | None  # {"type", "message", "traceback", "line"}
    wall_s: float
    cpu_s: float
    runs: list[float]  # wall time of each run (repeat)
    notes: list[str]


class InlineDone(NamedTuple):
    """An inline expression was evaluated."""

    index: int
    text: str | None
    error: str | None


class Note(NamedTuple):
    """A message for the build log."""

    text: str


class RayJob(NamedTuple):
    """The session connected to Ray as this job, on a cluster that has ``given``."""

    job_id: str
    cluster_cpus: float | None
    ray_version: str
    requested: str  # ray.init's resource arguments, e.g. "num_cpus=4" or "Ray's defaults"
    given: str  # what the job's cluster has, e.g. "4 CPUs, 0 GPUs"


class RayRequest(NamedTuple):
    """``ray.init`` asks for a fresh cluster of this shape; the session then waits for
    the build process's :class:`RayReply` on its channel."""

    call: str  # the call as written, for messages: "ray.init(num_cpus=4)"
    shape: dict[str, Any]  # ray_shape.ClusterShape.to_json()


class RayRelease(NamedTuple):
    """The session called ``ray.shutdown()``: its cluster can go."""


class Finished(NamedTuple):
    """The session ran everything it was asked to; ``packages``: (name, version) imported."""

    packages: list[list[str]]


SessionEvent = (
    SnippetStarted
    | Displayed
    | SnippetDone
    | InlineDone
    | Note
    | RayJob
    | RayRequest
    | RayRelease
    | Finished
)
_EVENT_TYPES = {cls.__name__: cls for cls in SessionEvent.__args__}  # type: ignore[attr-defined]


def encode_event(event: SessionEvent) -> bytes:
    """JSON for a session event."""
    return json.dumps({"type": type(event).__name__, **event._asdict()}).encode()


def decode_event(frame: bytes) -> SessionEvent:
    """Parse a session event; raises ValueError for anything malformed."""
    data = json.loads(frame)
    if not isinstance(data, dict):
        raise ValueError("session event is not an object")
    cls = _EVENT_TYPES.get(data.pop("type", None))
    if cls is None:
        raise ValueError("unknown session event")
    names = set(cls._fields)
    if set(data) != names:
        raise ValueError(f"bad fields for {cls.__name__}")
    return cls(**data)


# --- replies on a session's channel (build process -> session, JSON) ---------------------


class RayReply(NamedTuple):
    """The answer to a RayRequest: a cluster's address, or why there is none."""

    address: str | None
    error: str | None
    waited_s: float  # how long the build process took to answer (a cluster start)


def encode_ray_reply(reply: RayReply) -> bytes:
    return json.dumps(reply._asdict()).encode()


def decode_ray_reply(frame: bytes) -> RayReply:
    """Parse a RayReply; ValueError when malformed."""
    data = json.loads(frame)
    if not isinstance(data, dict) or set(data) != set(RayReply._fields):
        raise ValueError("malformed reply")
    return RayReply(**data)


def b64(data: bytes) -> str:
    """Bytes as base64 text (images inside JSON)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Inverse of :func:`b64`."""
    return base64.b64decode(text.encode("ascii"), validate=True)
