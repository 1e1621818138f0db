"""Session side: read what a job's Ray tasks and actors printed, from the worker log files.

Ray writes each worker's stdout and stderr to ``worker-<id>-<job>-<pid>.out|.err`` in the
session's logs folder (a prestarted worker's files say ``ffffffff`` and gain a
``:job_id:`` line when a job claims it), with ``:task_name:``/``:actor_name:`` lines
before each task. Those files are complete when ``ray.get`` returns, unlike the
asynchronous, deduplicated and lossy stream Ray forwards to drivers, so the session
reads them after each snippet and prints the new lines with a ``(task pid=…)`` prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_UNCLAIMED = "ffffffff"
_RAY_LOG_LINE = re.compile(
    r"^(?:\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DI] \d+ \d+\]"  # Ray's C++ INFO lines
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(?:DEBUG|INFO)\s)"  # its Python INFO lines
)
_READ_LIMIT = 1 << 20  # per file and snippet


@dataclass(slots=True)
class _FileState:
    offset: int = 0
    job: str | None = None
    task: str = ""
    actor: str = ""
    partial: bytes = b""
    foreign: bool = False


@dataclass(slots=True)
class WorkerLogTail:
    """New task output of some jobs, as prefixed lines per stream."""

    logs_dir: Path
    jobs: set[str] = field(default_factory=set)
    files: dict[Path, _FileState] = field(default_factory=dict)

    def read_new(self, final: bool = False) -> tuple[str, str]:
        """Lines printed since the last call: (stdout text, stderr text)."""
        out: list[str] = []
        err: list[str] = []
        try:
            names = [p for p in self.logs_dir.iterdir() if p.name.startswith("worker-")]
        except OSError:
            return "", ""
        for path in sorted(names):
            target = out if path.suffix == ".out" else err if path.suffix == ".err" else None
            state = self._state(path)
            if target is None or state is None or state.foreign:
                continue
            target.extend(self._read(path, state, final))
        return "".join(out), "".join(err)

    def _state(self, path: Path) -> _FileState | None:
        state = self.files.get(path)
        if state is not None:
            return state
        parts = path.stem.split("-")
        if len(parts) < 4:
            return None
        job = parts[-2]
        if job != _UNCLAIMED and job not in self.jobs:
            return None
        state = self.files[path] = _FileState(job=None if job == _UNCLAIMED else job)
        return state

    def _read(self, path: Path, state: _FileState, final: bool) -> list[str]:
        try:
            with path.open("rb") as handle:
                handle.seek(state.offset)
                data = handle.read(_READ_LIMIT)
        except OSError:
            return []
        state.offset += len(data)
        data = state.partial + data
        lines = data.split(b"\n")
        tail = lines.pop()
        if final and tail:
            lines.append(tail)
            tail = b""
        state.partial = tail
        pid = path.stem.rsplit("-", 1)[-1]
        shown = []
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            if line.startswith(":job_id:"):
                state.job = line[len(":job_id:") :]
                if state.job not in self.jobs:
                    state.foreign = True
                    return shown
            elif line.startswith(":task_name:"):
                state.task = line[len(":task_name:") :]
            elif line.startswith(":actor_name:"):
                state.actor = line[len(":actor_name:") :]
            elif state.job in self.jobs and not _RAY_LOG_LINE.match(line):
                shown.append(f"({state.actor or state.task or 'worker'} pid={pid}) {line}\n")
        return shown
