"""The fork server: a pre-warmed, single-threaded process that forks one session per post.

Started once per build by the build process (``python -m raypress.execution.forkserver
FD NETWORK``): inside the build's bubblewrap sandbox (NETWORK ``sandbox``; see
``sandbox_launch``), else optionally in a loopback-only network namespace of its own. It
imports the heavy modules once (NumPy at start, Ray and others on request) so sessions
start in milliseconds with them loaded; in the sandbox each session then makes its own
namespaces (``session_ns``). It also launches the Ray head (so the head shares its
sandbox), reaps its children, SIGKILLs each child's whole process group when asked or
when the child ends (so nothing a post started outlives it) and reports exits. It is not
dumpable: the posts' Ray workers, which run beside it in the sandbox under the same
user, can neither trace it nor read its memory. What it sends back is JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
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

from raypress.execution import netns, sandbox, session, session_ns
from raypress.execution.protocol import (
    SERVER_CGROUP,
    WARMABLE,
    Exited,
    FrameReader,
    Kill,
    Launch,
    Ready,
    SessionPlan,
    Spawn,
    Started,
    Warm,
    send_reply,
)

if TYPE_CHECKING:
    import subprocess

_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4


class ForkServer:
    """The server's loop over its control socket and SIGCHLD."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.reader = FrameReader(control)
        self.children: dict[int, subprocess.Popen[bytes] | None] = {}  # None: a session
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def serve(self) -> None:
        """Handle requests until the build process closes the control socket."""
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        try:
            while not self.reader.closed:
                readable, _, _ = select.select([self.control, self.wake_r], [], [])
                if self.wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    self.reap()
                if self.control in readable:
                    self.reader.fill()
                    for frame in self.reader.frames():
                        self.handle(pickle.loads(frame))
        finally:
            for pid in list(self.children):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            self.reap(block=True)
            _kill_and_reap_the_rest()

    def handle(self, request: object) -> None:
        """Carry out one request."""
        if isinstance(request, Spawn):
            self.spawn(request.token, request.plan, self.reader.take_fds(3))
        elif isinstance(request, Launch):
            self.launch(request, self.reader.take_fds(1)[0])
        elif isinstance(request, Kill):
            if request.pid in self.children:
                with contextlib.suppress(OSError):
                    os.killpg(request.pid, signal.SIGKILL)
        elif isinstance(request, Warm):
            error = warm(request.modules)
            send_reply(self.control, Started(request.token, os.getpid(), error))

    def spawn(self, token: int, plan: SessionPlan, fds: list[int]) -> None:
        """Fork a session; in the child, never return to this loop."""
        pid = os.fork()
        if pid == 0:
            status = 70
            try:
                if plan.sandbox is not None:
                    session_ns.enter(plan.sandbox)
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
        send_reply(self.control, Started(token, pid))

    def launch(self, request: Launch, output_fd: int) -> None:
        """Start a command in its own session and process group, output to ``output_fd``."""
        import subprocess  # only the Ray head is launched

        cgroup = request.cgroup_procs

        def join_cgroup() -> None:  # this server is single-threaded: safe before exec
            if cgroup:
                Path(cgroup).write_text(str(os.getpid()))

        try:
            process = subprocess.Popen(
                request.argv,
                env=dict(request.env),
                cwd=request.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=join_cgroup if cgroup else None,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            send_reply(self.control, Started(request.token, 0, str(exc)))
            return
        finally:
            os.close(output_fd)
        self.children[process.pid] = process
        send_reply(self.control, Started(request.token, process.pid))

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
        if process is not None:
            process.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            send_reply(self.control, Exited(pid, status))


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
    stop_idle_blas_threads()
    gc.freeze()  # children then leave these objects' pages shared (no GC writes to them)
    return "; ".join(errors) or None


def stop_idle_blas_threads() -> None:
    """Stop the worker threads OpenBLAS (NumPy's BLAS) started in this server at import.

    Idle, they spin for about 0.1 s of a core each before sleeping, which the sessions
    starting meanwhile lose; and this server is meant to be single-threaded. OpenBLAS's
    own fork handler stops them the same way before every fork, so sessions are as
    before: a forked child never has them, and starts them at its first BLAS call.
    The library is looked up by name (a wheel's bundled copy, or the system's), not in
    /proc/self/maps: this server is not dumpable, so its /proc files are not its own.
    """
    numpy = sys.modules.get("numpy")
    if numpy is None or not getattr(numpy, "__file__", None):
        return
    site = Path(numpy.__file__).parent.parent
    bundled = sorted(site.glob("numpy.libs/*openblas*.so*")) + sorted(
        site.glob("scipy.libs/*openblas*.so*")
    )
    for name in [*map(str, bundled), "libopenblas.so.0", "libblas.so.3"]:
        try:  # RTLD_NOLOAD: a handle only to a library this process has already loaded
            library = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        shutdown = getattr(library, "blas_thread_shutdown_", None)
        if shutdown is not None:
            shutdown()


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


def nested_namespaces_problem() -> str | None:
    """Why a session could not make its own namespaces here (None: it can); tried in a
    short-lived child before the heavy imports, when forking is cheapest."""
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        flags = 0x10000000 | 0x00020000 | 0x20000000 | 0x08000000  # user, mount, PID, IPC
        os._exit(0 if libc.unshare(flags) == 0 else min(ctypes.get_errno(), 255) or 1)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    return f"sessions cannot make namespaces of their own (unshare: {os.strerror(code)})"


def main(argv: list[str] | None = None) -> int:
    """``python -m raypress.execution.forkserver CONTROL_FD NETWORK [MODULE ...]``.

    NETWORK: ``sandbox`` (already in the build's sandbox), ``auto``, ``isolated`` (a
    loopback-only network namespace, where possible or required) or ``host``.
    """
    args = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(args[0]))
    network, modules = args[1], tuple(args[2:])
    isolated, problem, nested = False, None, None
    if network == "sandbox":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        isolated = True
        cgroup = Path(SERVER_CGROUP)
        if cgroup.exists():  # the build's memory cgroup is mounted in the sandbox
            cgroup.write_text(str(os.getpid()))
        nested = nested_namespaces_problem()
    elif network in ("auto", "isolated"):
        try:
            netns.enter_loopback_namespace()
            isolated = True
        except OSError as exc:
            problem = f"no loopback-only network namespace: {exc}"
    _become_subreaper()
    warm(modules)
    send_reply(control, Ready(os.getpid(), isolated, problem, nested))
    if network == "isolated" and not isolated:
        return 1
    ForkServer(control).serve()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter finalisation: tens of ms with NumPy loaded
