"""The fork server: a pre-warmed, single-threaded process that forks one session per post.

Started once per build by the build process (``python -m raypress.execution.forkserver
FD``), optionally inside a loopback-only network namespace, it imports the heavy
modules once (NumPy at start, Ray and others on request) so sessions start in
milliseconds with them loaded. It also launches the Ray head (so the head shares its
namespace), reaps its children, SIGKILLs each child's whole process group when asked or
when the child ends (so nothing a post started outlives it) and reports exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hmac
import importlib
import os
import pickle
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from raypress.execution import netns, sandbox, session
from raypress.execution.protocol import (
    Exited,
    FrameReader,
    Kill,
    Launch,
    Listen,
    Ready,
    SessionPlan,
    Spawn,
    Started,
    Warm,
    send_pickle,
)

if TYPE_CHECKING:
    import subprocess

_PR_SET_CHILD_SUBREAPER = 36

# Modules a session may find already imported (with the submodules most posts touch);
# others are imported by the sessions themselves. All are fork-safe: no threads at import.
WARMABLE: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy", "numpy.random"),
    "matplotlib": ("matplotlib", "matplotlib.pyplot"),
    "matplotlib.pyplot": ("matplotlib", "matplotlib.pyplot"),
    "pandas": ("pandas",),
    "ray": ("ray",),
}


class _Client:
    """A connection that sends requests: the control channel, or one accepted on the
    listening socket (it must send the secret as its first frame before anything else)."""

    def __init__(self, sock: socket.socket, authenticated: bool) -> None:
        self.sock = sock
        self.reader = FrameReader(sock)
        self.authenticated = authenticated


class ForkServer:
    """The server's loop over its control socket, its clients and SIGCHLD."""

    def __init__(self, control: socket.socket, isolated_network: bool = False) -> None:
        self.isolated_network = isolated_network
        self.control = _Client(control, authenticated=True)
        self.clients: dict[int, _Client] = {control.fileno(): self.control}
        self.listener: socket.socket | None = None
        self.secret = b""
        self.children: dict[int, subprocess.Popen[bytes] | None] = {}  # None: a session
        self.owners: dict[int, _Client] = {}  # child pid -> the client that asked for it
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def serve(self) -> None:
        """Handle requests until the build process closes the control socket."""
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        try:
            while not self.control.reader.closed:
                waiting: list[int] = [self.wake_r, *self.clients]
                if self.listener is not None:
                    waiting.append(self.listener.fileno())
                readable, _, _ = select.select(waiting, [], [])
                if self.wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    self.reap()
                if self.listener is not None and self.listener.fileno() in readable:
                    self.accept()
                for fd in readable:
                    client = self.clients.get(fd)
                    if client is not None:
                        self.read(client)
        finally:
            for pid in list(self.children):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            self.reap(block=True)
            _kill_and_reap_the_rest()

    def accept(self) -> None:
        """A new client on the listening socket (a session driver on this node)."""
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        self.clients[sock.fileno()] = _Client(sock, authenticated=False)

    def read(self, client: _Client) -> None:
        """Handle what ``client`` sent; forget it (and kill its sessions) once it is gone."""
        client.reader.fill()
        for frame in client.reader.frames():
            if not client.authenticated:
                if not hmac.compare_digest(frame, self.secret):
                    client.reader.closed = True  # a stranger: never unpickle its frames
                    break
                client.authenticated = True
                send_pickle(client.sock, Ready(os.getpid(), self.isolated_network, None))
                continue
            self.handle(client, pickle.loads(frame))
        if client.reader.closed and client is not self.control:
            self.drop(client)

    def drop(self, client: _Client) -> None:
        """A client went away: its sessions end with it."""
        del self.clients[client.sock.fileno()]
        for pid, owner in list(self.owners.items()):
            if owner is client:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
        client.sock.close()

    def handle(self, client: _Client, request: object) -> None:
        """Carry out one request of ``client``."""
        if isinstance(request, Spawn):
            self.spawn(client, request.token, request.plan, client.reader.take_fds(3))
        elif isinstance(request, Launch):
            self.launch(client, request, client.reader.take_fds(1)[0])
        elif isinstance(request, Kill):
            if request.pid in self.children and self.owners.get(request.pid) is client:
                with contextlib.suppress(OSError):
                    os.killpg(request.pid, signal.SIGKILL)
        elif isinstance(request, Warm):
            error = warm(request.modules)
            send_pickle(client.sock, Started(request.token, os.getpid(), error))
        elif isinstance(request, Listen) and client is self.control:
            listener = socket.socket(fileno=client.reader.take_fds(1)[0])
            listener.setblocking(False)
            self.listener, self.secret = listener, request.secret
            send_pickle(client.sock, Started(request.token, os.getpid()))

    def spawn(self, client: _Client, token: int, plan: SessionPlan, fds: list[int]) -> None:
        """Fork a session; in the child, never return to this loop."""
        pid = os.fork()
        if pid == 0:
            status = 70
            try:
                channel_fd = sandbox.enter(plan, *fds)
                channel = socket.socket(fileno=channel_fd)
                if plan.janitor_jobs:
                    session.run_janitor(plan)
                else:
                    session.SessionRunner(plan, channel).run()
                status = 0
            except BaseException:
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                    sys.stderr.flush()
            finally:
                os._exit(status)
        for fd in fds:
            os.close(fd)
        self.children[pid] = None
        self.owners[pid] = client
        _send(client, Started(token, pid))

    def launch(self, client: _Client, request: Launch, output_fd: int) -> None:
        """Start a command in its own session and process group, output to ``output_fd``."""
        import subprocess  # only the Ray head is launched

        try:
            process = subprocess.Popen(
                request.argv,
                env=dict(request.env),
                cwd=request.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            _send(client, Started(request.token, 0, str(exc)))
            return
        finally:
            os.close(output_fd)
        self.children[process.pid] = process
        self.owners[process.pid] = client
        _send(client, Started(request.token, process.pid))

    def reap(self, block: bool = False) -> None:
        """Report ended children, after SIGKILLing what is left of their process groups.

        The server is a child subreaper, so orphans (Ray workers whose raylet was killed,
        daemons a snippet started) end up here too and are reaped instead of lingering as
        zombies.
        """
        for pid in list(self.children):
            options = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
            try:
                if os.waitid(os.P_PID, pid, options) is None:
                    continue
            except ChildProcessError:
                pass
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            self._report(pid, status)
        while True:  # adopted orphans
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.children:
                self._report(pid, status)

    def _report(self, pid: int, status: int) -> None:
        process = self.children.pop(pid)
        owner = self.owners.pop(pid, self.control)
        if process is not None:
            process.returncode = os.waitstatus_to_exitcode(status)
        if owner.sock.fileno() in self.clients:
            _send(owner, Exited(pid, status))


def _send(client: _Client, message: object) -> None:
    """A reply to ``client``; one that went away meanwhile gets nothing."""
    with contextlib.suppress(OSError):
        send_pickle(client.sock, message)


def warm(modules: tuple[str, ...]) -> str | None:
    """Import the warmable ones among ``modules``; returns the errors, if any."""
    errors = []
    for name in modules:
        for module in WARMABLE.get(name, ()):
            if module in sys.modules:
                continue
            try:
                importlib.import_module(module)
            except Exception as exc:
                errors.append(f"{module}: {type(exc).__name__}: {exc}")
    gc.freeze()  # children then leave these objects' pages shared (no GC writes to them)
    return "; ".join(errors) or None


def _kill_and_reap_the_rest(timeout: float = 5.0) -> None:
    """SIGKILL and reap every remaining child: daemons that left their session's group,
    Ray workers orphaned by their raylet (this process adopted them as subreaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
        except OSError:
            children = []
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return  # no children left
        time.sleep(0.01)


def _become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so the server can reap them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    """``python -m raypress.execution.forkserver CONTROL_FD NETWORK [MODULE ...]``."""
    args = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(args[0]))
    network, modules = args[1], tuple(args[2:])
    isolated, problem = False, None
    if network in ("auto", "isolated"):
        try:
            netns.enter_loopback_namespace()
            isolated = True
            os.environ["RAY_AUTH_MODE"] = "disabled"  # before any import of ray
            os.environ.pop("RAY_AUTH_TOKEN", None)
        except OSError as exc:
            problem = f"no loopback-only network namespace: {exc}"
    _become_subreaper()
    warm(modules)
    send_pickle(control, Ready(os.getpid(), isolated, problem))
    if network == "isolated" and not isolated:
        return 1
    ForkServer(control, isolated).serve()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter finalisation: tens of ms with NumPy loaded
