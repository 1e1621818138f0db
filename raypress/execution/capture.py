"""Build-process side of output capture: split a session's stdout or stderr into phases.

A session's fds 1 and 2 are pipes read here. After each phase (a snippet, an inline
expression, extra repeat runs) the session writes a marker carrying a random nonce and
the phase's sequence number to both, so bytes written by threads, subprocesses and C
code land in the phase that was running. Each phase keeps at most ``cap`` bytes, and all
the phases of a post together at most what is left of the post's :class:`Budget`; the
rest is counted: a 1 GB print costs a 1 GB read, never 1 GB of memory.

A line rewritten with carriage returns (a tqdm progress bar, thousands of updates) is
resolved while it is read, as a terminal shows it, so only its last state takes room:
the final "100%|██████| 2000/2000" is what the page shows, not an early state cut at
the cap.
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

    def give_back(self, size: int) -> None:
        """Return bytes taken earlier (a progress line rewritten shorter)."""
        self.left += size


@dataclass(slots=True)
class Segment:
    """The output of one phase on one stream: its first ``cap`` bytes and its total size."""

    kept: bytearray = field(default_factory=bytearray)
    total: int = 0
    line_start: int = 0  # where the last line of ``kept`` begins (carriage returns)
    dropped: bool = False  # bytes were left out at the cap
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
        segment.total += end - start
        before = len(segment.kept)
        if buf.find(b"\r", start, end) >= 0:
            self._commit_rewrites(segment, buf[start:end])
        else:
            room = self.cap - len(segment.kept)
            if room > 0:
                segment.kept += buf[start : min(end, start + room)]
            segment.dropped = segment.dropped or end - start > room
            last = buf.rfind(b"\n", start, end)
            if last >= 0:
                segment.line_start = min(len(segment.kept), self.cap)
        self._charge(segment, before)

    def _charge(self, segment: Segment, before: int) -> None:
        """The post's budget pays for what ``segment`` grew by (what it cannot pay for is
        cut off); a rewritten line that shrank gives its room back."""
        if self.budget is None:
            return
        grown = len(segment.kept) - before
        if grown < 0:
            self.budget.give_back(-grown)
            return
        granted = self.budget.take(grown)
        if granted < grown:
            del segment.kept[before + granted :]
            segment.line_start = min(segment.line_start, len(segment.kept))
            segment.starved = True

    def _commit_rewrites(self, segment: Segment, chunk: bytes) -> None:
        """Append ``chunk``, which has carriage returns: each line is kept as the terminal
        would show it (its last ``\\r`` and what follows it kept until the line ends)."""
        lines = chunk.split(b"\n")
        for number, piece in enumerate(lines):
            kept = segment.kept
            line = bytes(kept[segment.line_start :]) + piece
            if b"\r" in line:
                line = compress_rewrites(line)
            del kept[segment.line_start :]
            room = self.cap - len(kept)
            if room > 0:
                kept += line[:room]
            segment.dropped = segment.dropped or len(line) > room
            if number < len(lines) - 1:  # the line ended
                if len(kept) < self.cap:
                    kept += b"\n"
                else:
                    segment.dropped = True
                segment.line_start = len(kept)

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
    """A line as a terminal shows it: each part after a ``\\r`` overwrites from column 0."""
    screen = ""
    for part in line.split("\r"):
        screen = part + screen[len(part) :]
    return screen


def compress_rewrites(line: bytes) -> bytes:
    """A line with carriage returns resolved up to its last one, which is kept with what
    follows it (more may be written over it): ``a\\rb\\rcd`` -> ``b\\rcd``."""
    head, _, tail = line.rpartition(b"\r")
    text = head.decode("utf-8", errors="surrogateescape")
    resolved = _last_rewrite(text).encode("utf-8", errors="surrogateescape")
    return resolved + b"\r" + tail


def size_text(size: int) -> str:
    """A byte count for a note: "1.0 GB", "230 kB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            digits = 1 if size < 10 * scale else 0
            return f"{size / scale:.{digits}f} {unit}"
    return f"{size} bytes"
