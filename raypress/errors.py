"""Errors about the user's input: each names a file, a line and what to do."""

from __future__ import annotations

from dataclasses import dataclass

from raypress.terminal import printable


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a source file, printed as ``file:line: message (hint)``."""

    path: str
    line: int | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        """One console line; control characters escaped (messages and paths come from
        posts and snippets)."""
        where = f"{self.path}:{self.line}" if self.line else self.path
        hint = f" ({self.hint})" if self.hint else ""
        return printable(f"{where}: error: {self.message}{hint}")


class SourceError(Exception):
    """Raised by a stage when a source file is wrong; carries a :class:`Problem`."""

    def __init__(self, path: str, line: int | None, message: str, hint: str | None = None):
        self.problem = Problem(path, line, message, hint)
        super().__init__(str(self.problem))
