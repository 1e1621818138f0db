"""Exceptions raised by snippets: tracebacks trimmed to the post's frames, post line numbers.

Snippets are compiled with ``"\\n" * (code_line - 1)`` in front and the post's path as
file name (as sphinx-gallery does), so every frame of snippet code already names a line
of the post; the post's lines are registered in ``linecache`` so frames show their code.
"""

from __future__ import annotations

import linecache
import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

_SHELL_START = re.compile(
    r"^\s*(?:\$\s|!|%)|^\s*(?:pip3?|conda|mamba|uv|apt(?:-get)?|brew|sudo|git|npm|yarn|cd|ls|"
    r"mkdir|rm|cp|mv|export|source|curl|wget|docker|make|python3?\s+-m|ray\s+(?:start|stop|up))"
    r"(?:\s|$)"
)


class HasCode(Protocol):
    """A snippet, as far as tracebacks care."""

    @property
    def code_line(self) -> int: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CaughtError:
    """An exception as a session reports it."""

    type: str
    message: str
    traceback: str
    line: int | None


def register_source(filename: str, snippets: Sequence[HasCode]) -> None:
    """Make the snippets' lines known to ``linecache`` under the post's path."""
    size = max((s.code_line + s.source.count("\n") for s in snippets), default=0) + 1
    lines = ["\n"] * size
    for snippet in snippets:
        for offset, text in enumerate(snippet.source.splitlines()):
            lines[snippet.code_line - 1 + offset] = text + "\n"
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def padded_source(snippet: HasCode) -> str:
    """The snippet's code, shifted so that compiled line numbers are post lines."""
    return "\n" * (snippet.code_line - 1) + snippet.source


def describe(exc: BaseException, filename: str) -> CaughtError:
    """Describe ``exc``: frames before the first one in ``filename`` (the session's) dropped."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    if tb is None and not isinstance(exc, SyntaxError):
        tb = exc.__traceback__
    report = traceback.TracebackException(type(exc), exc, tb)
    if type(exc).__module__.startswith("ray."):  # ray.get's own frames say nothing
        while len(report.stack) > 1 and report.stack[-1].filename != filename:
            report.stack.pop()
    text = "".join(report.format())
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        line = exc.lineno
    for frame in report.stack:
        if frame.filename == filename:
            line = frame.lineno
    return CaughtError(type_name(type(exc)), exception_message(exc), text, line)


def type_name(cls: type) -> str:
    """``ZeroDivisionError``, or ``package.module.Error`` outside builtins."""
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def exception_message(exc: BaseException) -> str:
    """The exception's message as one would print it."""
    if isinstance(exc, SyntaxError):
        return exc.msg or "invalid syntax"
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not break the report
        return f"<unprintable {type(exc).__name__}>"


def console_message(type_: str, message: str) -> str:
    """``Type: message`` on one line; a Ray task error names its cause, as the page does."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    short_type = type_.rsplit(".", 1)[-1] if type_.startswith("ray.") else type_
    if "RayTaskError" in type_ and lines:
        cause = lines[-1]  # "ZeroDivisionError: division by zero"
        return f"{short_type}: {cause.split(': ', 1)[-1]}" if ": " in cause else short_type
    return f"{short_type}: {lines[0]}" if lines else short_type


def looks_like_shell(source: str) -> bool:
    """True when the code's first line reads like a shell command (``pip install x``)."""
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return bool(_SHELL_START.match(line))
    return False
