"""Session side: run one post's snippets in order in one ``__main__`` namespace.

Per snippet: compile with the post's path and line offset (tracebacks name post lines),
run the body with ``exec`` and a final bare expression with ``eval`` (its value is shown
like a notebook's Out, unless the line ends with ``;``), time wall and CPU (children
included), print new Ray task output, show the value and the open matplotlib figures
(``display``), then write the phase marker to fds 1 and 2 and send the result on the
channel. A snippet that raises unexpectedly ends the run, except one that does not even
compile because it is a shell command (``pip install ray`` fenced as Python): it defined
nothing, so the snippets after it still run.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import ctypes
import os
import resource
import socket
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raypress.execution.capture import marker
from raypress.execution.display import Displayer
from raypress.execution.durations import format_duration
from raypress.execution.environment import package_versions
from raypress.execution.imports import names_in_tree
from raypress.execution.protocol import (
    Finished,
    FrameReader,
    InlineCode,
    InlineDone,
    RayReply,
    SessionEvent,
    SessionPlan,
    SnippetCode,
    SnippetDone,
    SnippetStarted,
    decode_ray_reply,
    encode_event,
    send_frame,
)
from raypress.execution.ray_cleanup import clean_up
from raypress.execution.ray_driver import patch_node_discovery
from raypress.execution.ray_shim import RayShim
from raypress.execution.rich_output import close_all_figures
from raypress.execution.tracebacks import (
    describe,
    exception_message,
    looks_like_shell,
    padded_source,
    register_source,
    type_name,
)

_COMPILE_FLAGS = 0


class SessionRunner:
    """Runs a plan inside an already sandboxed process."""

    def __init__(self, plan: SessionPlan, channel: socket.socket) -> None:
        self.plan = plan
        self.channel = channel
        self.replies = FrameReader(channel)
        self.pid = os.getpid()
        self.filename = plan.post
        self.seq = 0
        self.walls: dict[int, float] = {}
        self.imported: set[str] = set()
        # third-party packages the fork server imported before this post ran: the snippet
        # that first imports one is told so (in a plain script it pays the import)
        self.preloaded = _preloaded_packages()
        self.fresh_preloaded: list[str] = []
        self.libc = ctypes.CDLL(None)
        self.shim = RayShim(plan.ray, self.emit, self.ask) if plan.ray else None
        self.displayer = Displayer(self.emit, self.end_phase)
        self.namespace = self._main_namespace()

    def emit(self, event: SessionEvent) -> None:
        """Send an event to the build process."""
        send_frame(self.channel, encode_event(event))

    def ask(self, event: SessionEvent) -> RayReply:
        """Send a request to the build process and wait for its reply."""
        self.emit(event)
        while True:
            frames = self.replies.frames()
            if frames:
                return decode_ray_reply(frames[0])
            self.replies.fill()
            if self.replies.closed:
                raise RuntimeError("the build process stopped answering")

    def run(self) -> None:
        """Run every snippet (until one fails) and the inline expressions between them."""
        register_source(self.filename, self.plan.snippets)
        if self.shim is not None:
            self.shim.install()
        self.displayer.install()
        inline: dict[int, list[InlineCode]] = {}
        for expression in self.plan.inline:
            inline.setdefault(expression.after_snippet, []).append(expression)
        self._run_inline(inline.get(-1, []))
        for snippet in self.plan.snippets:
            if snippet.run and not self._run_snippet(snippet):
                break
            self._run_inline(inline.get(snippet.index, []))
        if self.shim is not None:
            self.shim.finish()
            self.end_phase()
        packages = package_versions(self.imported)
        self.emit(Finished(packages=[[name, version] for name, version in packages]))

    def end_phase(self) -> int:
        """Flush every buffer and end the current phase's output; returns its number."""
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):  # a snippet's own replacement may be broken
                stream.flush()  # type: ignore[union-attr]
        self.libc.fflush(None)  # C stdio buffers of extensions
        data = marker(self.plan.marker, self.seq)
        for fd in (1, 2):
            with contextlib.suppress(OSError):  # a snippet may have closed it
                os.write(fd, data)
        self.seq += 1
        return self.seq - 1

    def _run_snippet(self, snippet: SnippetCode) -> bool:
        """Run one snippet and report it; False when the session must stop."""
        seq = self.seq
        self.emit(SnippetStarted(index=snippet.index, seq=seq))
        runs: list[float] = []
        cpu = 0.0
        caught: BaseException | None = None
        notes: list[str] = []
        compile_start = time.perf_counter()
        try:
            body, last = self._compile(snippet)
        except (SyntaxError, ValueError, OverflowError) as exc:
            caught, body, last = exc, None, None
            runs.append(time.perf_counter() - compile_start)  # how long until it failed
        for run in range(max(1, snippet.repeat) if body is not None else 0):
            self.displayer.begin(snippet if run == 0 else None)  # repeats show nothing
            wall, run_cpu, result, caught = self._timed(body, last)
            runs.append(wall)
            cpu += run_cpu
            if self.shim is not None:
                self.shim.flush_task_output()
            if run == 0:  # what the page shows comes from the first run
                if caught is None:
                    self.displayer.result(result)
                self.displayer.show_figures()
                notes = self.displayer.notes
                seq = self.end_phase()
            else:
                close_all_figures()
                self.end_phase()  # the output of repeats is discarded
            self.displayer.begin(None)
            if caught is not None:
                break
        if body is None:
            seq = self.end_phase()
        expected = snippet.expect_error
        if caught is not None:
            status = "expected-error" if expected else "error"
        else:
            status = "missing-expected-error" if expected else "ok"
        error = None
        if caught is not None:
            described = describe(caught, self.filename)
            error = {
                "type": described.type,
                "message": described.message,
                "traceback": described.traceback,
                "line": described.line,
            }
        wall = _median(runs)
        self.walls[snippet.index] = wall
        if self.fresh_preloaded and body is not None:
            notes.append(_preloaded_note(self.fresh_preloaded))
        if self.shim is not None:
            notes += self.shim.take_notes()
        self.emit(
            SnippetDone(
                index=snippet.index,
                seq=seq,
                status=status,
                error=error,
                wall_s=wall,
                cpu_s=cpu / max(1, len(runs)),
                runs=runs,
                notes=notes,
            )
        )
        if body is None and isinstance(caught, SyntaxError) and looks_like_shell(snippet.source):
            return True  # a shell command: it defined nothing the next snippets could need
        return status in ("ok", "expected-error", "missing-expected-error")

    def _compile(self, snippet: SnippetCode) -> tuple[types.CodeType, types.CodeType | None]:
        source = padded_source(snippet)
        tree = ast.parse(source, self.filename, "exec")
        names = names_in_tree(tree)
        self.fresh_preloaded = sorted((names & self.preloaded) - self.imported)
        self.imported |= names
        last = None
        if (
            tree.body
            and isinstance(tree.body[-1], ast.Expr)
            and not _ends_with_semicolon(tree.body[-1], source)
        ):
            expression = ast.Expression(tree.body.pop().value)
            last = compile(expression, self.filename, "eval", _COMPILE_FLAGS, dont_inherit=True)
        body = compile(tree, self.filename, "exec", _COMPILE_FLAGS, dont_inherit=True)
        return body, last

    def _timed(
        self, body: types.CodeType, last: types.CodeType | None
    ) -> tuple[float, float, Any, BaseException | None]:
        namespace = self.namespace
        caught = None
        result = None
        cpu_start = time.process_time() + _children_cpu()
        if self.shim is not None:
            self.shim.snippet_started()
        start = time.perf_counter()
        try:
            exec(body, namespace)
            if last is not None:
                result = eval(last, namespace)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are the snippet's too
            caught = exc if self.shim is None else self.shim.snippet_error(exc, self.filename)
        finally:
            if self.shim is not None:
                self.shim.snippet_ended()
        if os.getpid() != self.pid:  # a child the snippet forked came back here: end it
            os._exit(0)
        wall = time.perf_counter() - start
        cpu = time.process_time() + _children_cpu() - cpu_start
        return wall, cpu, result, caught

    def _run_inline(self, expressions: list[InlineCode]) -> None:
        if not expressions:
            return
        for expression in expressions:
            text = error = None
            try:
                code = compile(
                    "\n" * (expression.line - 1) + expression.source.strip(),
                    self.filename,
                    "eval",
                    _COMPILE_FLAGS,
                    dont_inherit=True,
                )
                text = str(eval(code, self.namespace))
            except BaseException as exc:
                error = f"{type_name(type(exc))}: {exception_message(exc)}"
            self.emit(InlineDone(index=expression.index, text=text, error=error))
        self.end_phase()

    def _main_namespace(self) -> dict[str, Any]:
        """A fresh ``__main__`` module (so pickle finds the snippets' classes) with ``elapsed``."""
        module = types.ModuleType("__main__")
        module.__dict__.update(
            __builtins__=builtins,
            __file__=str(Path(self.plan.post_dir) / Path(self.plan.post).name),
            elapsed=self._elapsed_helper(),
        )
        sys.modules["__main__"] = module
        return module.__dict__

    def _elapsed_helper(self) -> Callable[[str | int], str]:
        walls = self.walls
        labels = {s.label: s.index for s in self.plan.snippets if s.label}

        def elapsed(snippet: str | int) -> str:
            """Wall time of a snippet of this post (by label or 0-based index), e.g. "1.23 ms"."""
            index = labels.get(snippet, snippet) if isinstance(snippet, str) else snippet
            if not isinstance(index, int):
                raise KeyError(f"no snippet labelled {snippet!r}")
            if index not in walls:
                raise LookupError(f"snippet {snippet!r} has not run (yet)")
            return format_duration(walls[index])

        return elapsed


def run_janitor(plan: SessionPlan) -> None:
    """Remove the detached actors and placement groups left by the jobs of a session
    that was killed."""
    import ray  # only janitors and Ray posts pay for it

    assert plan.ray is not None and plan.ray.address is not None
    kwargs: dict[str, Any] = {}
    if plan.ray.node_ip:
        kwargs["_node_ip_address"] = plan.ray.node_ip
    patch_node_discovery(ray, plan.ray.address)
    ray.init(plan.ray.address, namespace=plan.ray.namespace, log_to_driver=False, **kwargs)
    actors, groups = clean_up(ray, plan.janitor_jobs)
    print(f"killed {actors} detached actor(s), removed {groups} placement group(s)")


def _preloaded_packages() -> set[str]:
    """Top-level third-party packages already imported in this process (by the fork
    server, to save every post its import time)."""
    names = {name.partition(".")[0] for name in list(sys.modules)}
    return {
        name
        for name in names
        if name not in sys.stdlib_module_names
        and not name.startswith("_")
        and name not in ("raypress", "__main__")
    }


def _preloaded_note(names: list[str]) -> str:
    listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    verb = "was" if len(names) == 1 else "were"
    return (
        f"{listed} {verb} already imported when this snippet ran (raypress imports "
        f"{'it' if len(names) == 1 else 'them'} once per build): in a plain script this "
        "time would include the import"
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if not ordered:
        return 0.0
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _ends_with_semicolon(node: ast.stmt, source: str) -> bool:
    """True when the statement is followed by ``;`` (IPython: show no Out for it)."""
    lines = source.splitlines()
    if node.end_lineno is None or node.end_col_offset is None or node.end_lineno > len(lines):
        return False
    rest = lines[node.end_lineno - 1].encode()[node.end_col_offset :].decode(errors="replace")
    return rest.lstrip().startswith(";")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
