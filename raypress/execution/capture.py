"""Build-process side of output capture: split a session's stdout or stderr into phases.

A session's fds 1 and 2 are pipes read here. After each phase (a snippet, an inline
expression, extra repeat runs) the session writes a marker carrying a random nonce and
the phase's sequence number to both, so bytes written by threads, subprocesses and C
code land in the phase that was running. Each phase keeps at most ``cap`` bytes, and all
the phases of a post together at most what is left of the post's :class:`Budget`; the
rest is counted: a 1 GB print costs a 1 GB read, never 1 GB of memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

_SEQ_DIGITS = 8
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def new_marker_prefix() -> str:
    """A fresh random marker prefix (text, ASCII) for one session."""
    return f"\x1e\x1fRAYPRESS-{os.urandom(16).hex()}:"


def marker(prefix: str, seq: int) -> bytes:
    """The bytes that end phase ``seq``."""
    return f"{prefix}{seq:0{_SEQ_DIGITS}d}\x1e\n".encode("ascii")


@dataclass(slots=True)
class Budget:
    """Bytes a whole post may still show (its output cap), shared by its streams, values
    and images."""

    left: int

    def take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` bytes; returns how many were granted."""
        granted = max(0, min(wanted, self.left))
        self.left -= granted
        return granted


@dataclass(slots=True)
class Segment:
    """The output of one phase on one stream: its first ``cap`` bytes and its total size."""

    kept: bytearray = field(default_factory=bytearray)
    total: int = 0
    starved: bool = False  # bytes were dropped because the post's output cap was reached


class SegmentedStream:
    """Feeds on one pipe's bytes; completed segments are keyed by their marker's sequence."""

    def __init__(self, prefix: str, cap: int, budget: Budget | None = None) -> None:
        self.prefix = prefix.encode("ascii")
        self.marker_len = len(self.prefix) + _SEQ_DIGITS + 2
        self.cap = cap
        self.budget = budget
        self.pending = b""
        self.done: dict[int, Segment] = {}
        self.current = Segment()
        self.eof = False

    def feed(self, data: bytes) -> None:
        """Consume bytes read from the pipe."""
        buf = self.pending + data if self.pending else data
        start = 0
        while True:
            found = buf.find(self.prefix, start)
            if found < 0:
                break
            end = found + self.marker_len
            if end > len(buf):  # a marker cut in two by the read
                self._commit(buf, start, found)
                self.pending = buf[found:]
                return
            digits = buf[found + len(self.prefix) : found + len(self.prefix) + _SEQ_DIGITS]
            self._commit(buf, start, found)
            if digits.isdigit():
                self.done[int(digits)] = self.current
                self.current = Segment()
            start = end
        keep = self._partial_prefix(buf, start)
        self._commit(buf, start, len(buf) - keep)
        self.pending = buf[len(buf) - keep :] if keep else b""

    def finish(self) -> None:
        """The pipe reached EOF: what is pending belongs to the open segment."""
        if self.pending:
            self._commit(self.pending, 0, len(self.pending))
            self.pending = b""
        self.eof = True

    def take(self, seq: int) -> Segment:
        """The segment ended by marker ``seq`` (the open one if that marker never came)."""
        segment = self.done.pop(seq, None)
        if segment is None:
            segment, self.current = self.current, Segment()
        for old in [s for s in self.done if s < seq]:
            del self.done[old]
        return segment

    def has(self, seq: int) -> bool:
        """True once marker ``seq`` has been read."""
        return seq in self.done

    def _commit(self, buf: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        segment = self.current
        room = self.cap - len(segment.kept)
        if room > 0:
            wanted = min(end - start, room)
            granted = self.budget.take(wanted) if self.budget is not None else wanted
            segment.kept += buf[start : start + granted]
            segment.starved = segment.starved or granted < wanted
        segment.total += end - start

    def _partial_prefix(self, buf: bytes, start: int) -> int:
        """Length of the longest tail of ``buf`` that could start a marker."""
        longest = min(len(self.prefix) - 1, len(buf) - start)
        for size in range(longest, 0, -1):
            if self.prefix.startswith(buf[len(buf) - size :]):
                return size
        return 0


def clean_text(data: bytes) -> str:
    """Decode captured bytes for display: ANSI codes removed, carriage returns resolved.

    A line rewritten with ``\\r`` (progress bars) keeps its final state, as in a notebook.
    """
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    text = _ANSI.sub("", text)
    if "\r" in text:
        text = "\n".join(_last_rewrite(line) for line in text.split("\n"))
    return _CONTROL.sub("", text)


def _last_rewrite(line: str) -> str:
    for part in reversed(line.split("\r")):
        if part:
            return part
    return ""


def size_text(size: int) -> str:
    """A byte count for a note: "1.0 GB", "230 kB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            digits = 1 if size < 10 * scale else 0
            return f"{size / scale:.{digits}f} {unit}"
    return f"{size} bytes"
