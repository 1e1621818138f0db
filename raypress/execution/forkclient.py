"""Build-process side of the fork server: start it, ask it for sessions, learn of exits.

The server's stderr is read here (its last lines explain a failed start or a death) and
never copied raw to the console. When the server dies, :attr:`ForkServerClient.death`
says how, in one line.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from raypress.execution.bytecode import write_missing_bytecode
from raypress.execution.protocol import (
    Exited,
    FrameReader,
    Kill,
    Launch,
    Ready,
    SessionPlan,
    Spawn,
    Started,
    Warm,
    decode_reply,
    send_pickle,
)
from raypress.terminal import printable

if TYPE_CHECKING:
    from raypress.execution.build_sandbox import Launcher


def _how(code: int) -> str:
    """An exit code in words (bubblewrap exits with 128 + N when its command got signal N)."""
    number = -code if code < 0 else code - 128 if 128 < code < 160 else 0
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"exited with status {code}"


class ForkServerError(RuntimeError):
    """The fork server could not be started or stopped answering."""


class ForkServerClient:
    """A running fork server. Thread-safe; use as a context manager."""

    def __init__(
        self,
        env: Mapping[str, str],
        network: str,
        warm: Sequence[str],
        launcher: Launcher | None = None,
    ) -> None:
        write_missing_bytecode()  # the sandbox cannot write it: see bytecode.py
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        inner = [
            sys.executable,
            "-m",
            "raypress.execution.forkserver",
            str(child.fileno()),
            "sandbox" if launcher else network,
            *warm,
        ]
        fds = [child.fileno()]
        spec, spec_w, user, group = None, None, None, None
        if launcher is not None:
            command = launcher.command(inner)
            argv, spec, user, group = command.argv, command.spec, command.user, command.group
            fds += command.pass_fds
            if spec is not None:  # sandbox_launch reads its specification from a pipe
                spec_r, spec_w = os.pipe()
                argv.append(str(spec_r))
                fds.append(spec_r)
        else:
            argv = inner
        try:
            self.process = subprocess.Popen(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=fds,
                start_new_session=True,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
            )
        finally:
            child.close()
            for fd in fds[1:]:
                os.close(fd)
        if spec_w is not None:
            with contextlib.suppress(BrokenPipeError), os.fdopen(spec_w, "wb") as handle:
                handle.write(spec or b"")
        self.errors: deque[str] = deque(maxlen=20)
        self.stopping = False
        threading.Thread(target=self._read_errors, name="forkserver-stderr", daemon=True).start()
        self.sock = parent
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
        cgroup_procs: str | None = None,
    ) -> int:
        """Start a command in its own process group (and memory cgroup); ``on_exit(status)``
        when it ends."""
        started = self._request(
            lambda token: Launch(token, tuple(argv), tuple(env.items()), cwd, cgroup_procs),
            (output,),
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

    def answers(self, timeout: float) -> bool:
        """Whether the server is alive: it answers a request that does nothing within
        ``timeout``. A dead one never answers: False once its channel has closed."""
        try:
            self.warm(()).result(timeout)
        except (ForkServerError, TimeoutError):
            return False
        return True

    def death(self) -> str | None:
        """How the server ended, if it died while the build still needed it."""
        if self.stopping or not self.closed:
            return None
        code = self.process.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(timeout=2)
        how = "stopped answering" if code is None else _how(code)
        return f"the execution fork server {how}"

    def error_tail(self) -> str:
        """The last lines the server (or the sandbox's launcher) wrote on stderr."""
        return "\n".join(self.errors)

    def close(self) -> None:
        """Stop the server: it SIGKILLs the process groups of its remaining children."""
        self.stopping = True
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
                try:
                    ready = decode_reply(frames[0])
                except ValueError:
                    ready = None
                if not isinstance(ready, Ready):
                    self.process.kill()
                    raise ForkServerError("the fork server sent a malformed first message")
                self._pending = frames[1:]
                return ready
            reader.fill()
            if reader.closed:
                code = self.process.wait()
                time.sleep(0.05)  # let the stderr reader catch the last line
                tail = "; ".join(line for line in self.errors if line.strip())
                raise ForkServerError(
                    f"the fork server failed to start ({_how(code)})"
                    + (f": {tail}" if tail else "")
                )

    def _read_loop(self) -> None:
        reader = self._reader
        frames = self._pending
        while True:
            try:
                for frame in frames:
                    self._dispatch(decode_reply(frame))
            except ValueError:  # a malformed reply: the server is not to be trusted any more
                self.process.kill()
                break
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

    def _read_errors(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        with contextlib.suppress(OSError, ValueError):
            for raw in stream:
                self.errors.append(printable(raw.decode("utf-8", "replace").rstrip("\n")))

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
