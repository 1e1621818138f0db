"""Session side: what a job's Ray tasks and actors printed, read from the worker log files.

Ray writes each worker's stdout and stderr to ``worker-<id>-<job>-<pid>.out|.err`` in
each node's logs folder (a prestarted worker's files say ``ffffffff`` and gain a
``:job_id:`` line when a job claims it), with ``:task_name:``/``:actor_name:`` lines
before each task. Those files are complete when ``ray.get`` returns, unlike the
asynchronous, deduplicated stream Ray forwards to drivers (its log monitor polls every
100 ms and reads at most 1,000 lines per file and pass, so nothing tells a driver that
everything printed before a given moment has arrived). So after each snippet the
session reads what is new in them, and prints it with Ray's own prefix, ``(name pid=N)``,
plus ``ip=…`` for another node, exactly once and in the snippet that was running.

The driver's own node is read directly (:class:`WorkerLogTail`). Every other node is
read by a :class:`NodeLogReader` actor placed on it (``num_cpus=0``; its class is
shipped by value, so the nodes need only Ray), which the session asks for new lines
after each snippet: one round trip per node, and it works when nodes are other machines.

Lines that are Ray's rather than the program's (worker and raylet log lines, crash
dumps, warnings) come back apart, as notes for the snippet, never in its output.
Standard library only: this module is imported by the fork server and pickled by value
onto other nodes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_UNCLAIMED = "ffffffff"
SYSTEM_NOTE = "Ray ("  # how every note made of Ray's own lines starts: "Ray (raylet): ..."
TQDM_MAGIC = "__ray_tqdm_magic_token__"  # ray.experimental.tqdm_ray's state updates
_READ_LIMIT = 1 << 20  # per file and snippet
_DUMP_LINES = 40  # lines of one crash dump kept in a note
# Ray's own log lines: its C++ format and its Python logging format.
_RAY_CPP = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[DIWEF]) \d+ \d+\] \S+:\d+: "
)
_RAY_PY = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\t(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\S+:\d+ -- "
)
# absl's raw log lines, which bypass Ray's format (a contended mutex, a failed check):
# "[mutex.cc : 452] RAW: Lock blocking 0x... @ 0x... 0x...".
_ABSL_RAW = re.compile(r"^\[[\w.+-]+ : \d+\] RAW: ")
# The start of a crash dump: absl's failure signal handler, Python's faulthandler.
_DUMP_START = re.compile(
    r"^\*\*\* (?:SIG\w+|Aborted) received at time=|^Fatal Python error: |^\*\*\* Check failure"
)


@dataclass(slots=True)
class _FileState:
    offset: int = 0
    job: str | None = None
    task: str = ""
    actor: str = ""
    partial: bytes = b""
    foreign: bool = False
    dump: int = -1  # lines of the current crash dump so far (-1: not in one)


@dataclass(frozen=True, slots=True)
class NewOutput:
    """What a job's workers printed since the last read."""

    stdout: str = ""
    stderr: str = ""
    notes: tuple[str, ...] = ()  # Ray's own lines, for the snippet's notes
    bars: tuple[str, ...] = ()  # tqdm_ray updates, for the driver's bar manager

    def __add__(self, other: NewOutput) -> NewOutput:
        return NewOutput(
            self.stdout + other.stdout,
            self.stderr + other.stderr,
            self.notes + other.notes,
            self.bars + other.bars,
        )


@dataclass(slots=True)
class WorkerLogTail:
    """New task output of some jobs in one node's logs folder, as prefixed lines."""

    logs_dir: Path
    jobs: set[str] = field(default_factory=set)
    ip: str | None = None  # shown in the prefix (another node than the driver's)
    skip_pids: set[str] = field(default_factory=set)
    files: dict[Path, _FileState] = field(default_factory=dict)

    def read_new(self, final: bool = False) -> NewOutput:
        """Lines printed since the last call (``final``: a last line without newline too)."""
        out: list[str] = []
        err: list[str] = []
        notes: list[str] = []
        bars: list[str] = []
        try:
            names = [p for p in self.logs_dir.iterdir() if p.name.startswith("worker-")]
        except OSError:
            return NewOutput()
        for path in sorted(names):
            target = out if path.suffix == ".out" else err if path.suffix == ".err" else None
            state = self._state(path)
            if target is None or state is None or state.foreign:
                continue
            self._read(path, state, final, target, notes, bars)
        return NewOutput("".join(out), "".join(err), tuple(notes), tuple(bars))

    def _state(self, path: Path) -> _FileState | None:
        state = self.files.get(path)
        if state is not None:
            return state
        parts = path.stem.split("-")
        if len(parts) < 4 or parts[-1] in self.skip_pids:
            return None
        job = parts[-2]
        if job != _UNCLAIMED and job not in self.jobs:
            return None
        state = self.files[path] = _FileState(job=None if job == _UNCLAIMED else job)
        return state

    def _read(
        self,
        path: Path,
        state: _FileState,
        final: bool,
        shown: list[str],
        notes: list[str],
        bars: list[str],
    ) -> None:
        try:
            with path.open("rb") as handle:
                handle.seek(state.offset)
                data = handle.read(_READ_LIMIT)
        except OSError:
            return
        state.offset += len(data)
        data = state.partial + data
        lines = data.split(b"\n")
        tail = lines.pop()
        if final and tail:
            lines.append(tail)
            tail = b""
        state.partial = tail
        pid = path.stem.rsplit("-", 1)[-1]
        system: list[str] = []
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            if line.startswith(":job_id:"):
                state.job = line[len(":job_id:") :]
                if state.job not in self.jobs:
                    state.foreign = True
                    return
            elif line.startswith((":task_name:", ":actor_name:")):
                if system:  # the lines so far were the previous task's
                    notes.append(system_note(self._source(state, pid), "\n".join(system)))
                    system.clear()
                name = line.split(":", 2)[2]
                if line.startswith(":task_name:"):
                    state.task = name
                else:
                    state.actor = name
                state.dump = -1
            elif state.job in self.jobs and TQDM_MAGIC in line:
                bars.append(line)
            elif state.job in self.jobs:
                kept = _system_line(line, state)
                if kept is None:
                    shown.append(f"({self._source(state, pid)}) {line}\n")
                elif kept:
                    system.append(kept)
        if system:  # one note per worker and read: a crash dump stays in one piece
            notes.append(system_note(self._source(state, pid), "\n".join(system)))

    def _source(self, state: _FileState, pid: str) -> str:
        ip = f", ip={self.ip}" if self.ip else ""
        return f"{state.actor or state.task or 'worker'} pid={pid}{ip}"


def system_note(source: str, text: str) -> str:
    """A note made of Ray's own lines (``check`` leaves these out of its comparison)."""
    return f"{SYSTEM_NOTE}{source}): {text}"


def split_absl_lines(text: str) -> tuple[str, list[str]]:
    """``text`` without absl's raw log lines, and those lines. A driver's own (its core
    worker's contended mutex, say) reach the snippet's stderr directly, not a log file."""
    if "] RAW: " not in text:
        return text, []
    kept: list[str] = []
    found: list[str] = []
    for line in text.splitlines(keepends=True):
        (found if _ABSL_RAW.match(line) else kept).append(line)
    return "".join(kept), [line.rstrip("\n") for line in found]


def _system_line(line: str, state: _FileState) -> str | None:
    """None for the program's own output; else the text of a note ("" to drop the line)."""
    if state.dump >= 0:
        state.dump += 1
        if state.dump < _DUMP_LINES:
            return line
        return f"[crash dump cut after {_DUMP_LINES} lines]" if state.dump == _DUMP_LINES else ""
    if _DUMP_START.match(line):
        state.dump = 0
        return line
    if _ABSL_RAW.match(line):
        return line
    found = _RAY_CPP.match(line) or _RAY_PY.match(line)
    if found is None:
        return None
    level = found["level"][0]
    return "" if level in "DI" else line  # INFO and DEBUG: Ray's chatter, dropped


class NodeLogReader:
    """A Ray actor (``num_cpus=0``) that reads a job's worker logs on the node it runs on."""

    def __init__(self, jobs: list[str], ip: str) -> None:
        import ray  # on the node, inside a Ray worker

        logs = ray._private.worker._global_node.get_logs_dir_path()
        self.tail = WorkerLogTail(Path(logs), set(jobs), ip, {str(os.getpid())})

    def add_job(self, job: str) -> None:
        self.tail.jobs.add(job)

    def read(self, final: bool) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
        """New output as plain values (this class travels by value; plain data back)."""
        new = self.tail.read_new(final)
        return new.stdout, new.stderr, new.notes, new.bars
