"""Build-process side of the fork server: start it, ask it for sessions, learn of exits."""

from __future__ import annotations

import contextlib
import itertools
import pickle
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

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
    send_frame,
    send_pickle,
)


class ForkServerError(RuntimeError):
    """The fork server could not be started or stopped answering."""


class ForkServerClient:
    """A running fork server. Thread-safe; use as a context manager."""

    def __init__(self, env: Mapping[str, str], network: str, warm: Sequence[str]) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raypress.execution.forkserver",
                str(child.fileno()),
                network,
                *warm,
            ],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            pass_fds=[child.fileno()],
            start_new_session=True,
        )
        child.close()
        self._attach(parent, process)

    @classmethod
    def connect(cls, path: str, secret: bytes, timeout: float = 10.0) -> ForkServerClient:
        """A client of a fork server started elsewhere on this machine, that listens on
        the Unix socket ``path`` (see :meth:`listen`)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            send_frame(sock, secret)
            sock.settimeout(None)
        except OSError as exc:
            sock.close()
            raise ForkServerError(f"cannot reach the fork server at {path}: {exc}") from None
        client = cls.__new__(cls)
        client._attach(sock, None)
        return client

    def listen(self, path: str) -> bytes:
        """Let other processes of this machine use the server through a Unix socket at
        ``path`` (owner-only); returns the secret they must present (:meth:`connect`)."""
        secret = secrets.token_bytes(32)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            Path(path).chmod(0o600)
            listener.listen(64)
            self._request(lambda token: Listen(token, secret), (listener.fileno(),)).result()
        finally:
            listener.close()  # the server holds its own copy now
        return secret

    def _attach(self, sock: socket.socket, process: subprocess.Popen[bytes] | None) -> None:
        self.process = process
        self.sock = sock
        self.send_lock = threading.Lock()
        self.state = threading.Condition()
        self.replies: dict[int, Future[Started]] = {}
        self.exits: dict[int, int] = {}
        self.exit_callbacks: dict[int, Callable[[int], None]] = {}
        self.tokens = itertools.count(1)
        self.closed = False
        self.ready = self._read_ready()
        self.thread = threading.Thread(target=self._read_loop, name="forkserver", daemon=True)
        self.thread.start()

    def __enter__(self) -> ForkServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, plan: SessionPlan, channel: int, stdout: int, stderr: int) -> int:
        """Fork a session; returns its pid (also its process group id)."""
        started = self._request(
            lambda token: Spawn(token, plan), (channel, stdout, stderr)
        ).result()
        if not started.pid:
            raise ForkServerError(started.error or "fork failed")
        return started.pid

    def launch(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        output: int,
        on_exit: Callable[[int], None] | None = None,
    ) -> int:
        """Start a command in its own process group; ``on_exit(status)`` when it ends."""
        started = self._request(
            lambda token: Launch(token, tuple(argv), tuple(env.items()), cwd), (output,)
        ).result()
        if started.pid and on_exit is not None:
            with self.state:  # an exit reported before this point waits in self.exits
                status = self.exits.get(started.pid)
                if status is None:
                    self.exit_callbacks[started.pid] = on_exit
            if status is not None:
                on_exit(status)
        if not started.pid:
            raise ForkServerError(started.error or "launch failed")
        return started.pid

    def warm(self, modules: Sequence[str]) -> Future[Started]:
        """Ask the server to import modules (its reply's ``error`` lists failures)."""
        return self._request(lambda token: Warm(token, tuple(modules)), ())

    def kill(self, pid: int) -> None:
        """SIGKILL a child's process group (a no-op once it has been reaped)."""
        self._send(Kill(pid), ())

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        """The raw wait status of a child, or None if it has not ended within ``timeout``."""
        with self.state:
            self.state.wait_for(lambda: pid in self.exits or self.closed, timeout)
            return self.exits.pop(pid, None)

    def close(self) -> None:
        """Stop the server: it SIGKILLs the process groups of its remaining children. A
        client that :meth:`connect`-ed only goes away (the server kills its sessions)."""
        if self.process is None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.thread.join(timeout=5)
            self.sock.close()
            return
        if self.process.returncode is not None:
            return
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.thread.join(timeout=5)
        self.sock.close()

    def _request(self, make: Callable[[int], object], fds: tuple[int, ...]) -> Future[Started]:
        token = next(self.tokens)
        future: Future[Started] = Future()
        with self.state:
            if self.closed:
                raise ForkServerError("the fork server has stopped")
            self.replies[token] = future
        self._send(make(token), fds)
        return future

    def _send(self, message: object, fds: tuple[int, ...]) -> None:
        try:
            with self.send_lock:
                send_pickle(self.sock, message, fds)
        except OSError as exc:
            raise ForkServerError(f"the fork server has stopped ({exc})") from None

    def _read_ready(self) -> Ready:
        reader = FrameReader(self.sock)
        self._reader = reader
        while True:
            frames = reader.frames()
            if frames:
                ready = pickle.loads(frames[0])
                self._pending = frames[1:]
                return ready
            reader.fill()
            if reader.closed:
                if self.process is None:
                    raise ForkServerError("the fork server refused the connection")
                code = self.process.wait()
                raise ForkServerError(f"the fork server failed to start (exit status {code})")

    def _read_loop(self) -> None:
        reader = self._reader
        frames = self._pending
        while True:
            for frame in frames:
                self._dispatch(pickle.loads(frame))
            if reader.closed:
                break
            reader.fill()
            frames = reader.frames()
        with self.state:
            self.closed = True
            for future in self.replies.values():
                future.set_exception(ForkServerError("the fork server has stopped"))
            self.replies.clear()
            self.state.notify_all()

    def _dispatch(self, message: object) -> None:
        callback = None
        with self.state:
            if isinstance(message, Started):
                future = self.replies.pop(message.token, None)
                if future is not None:
                    future.set_result(message)
            elif isinstance(message, Exited):
                callback = self.exit_callbacks.pop(message.pid, None)
                self.exits[message.pid] = message.status
                self.state.notify_all()
        if callback is not None:
            callback(message.status)  # type: ignore[union-attr]
