"""LaTeX formulas (``$…$``, ``$$…$$``) to MathML at build time: no JavaScript on the page.

latex2mathml converts; it is lenient where a reader would not be: an unknown command comes
out as the text ``\\foo``, an unknown environment is dropped and an unclosed brace is
closed silently. :func:`to_mathml` refuses those (and the converter's own errors) with a
:class:`MathError` saying what is wrong, so the build can name the post's file and line.
"""

from __future__ import annotations

import functools
import re

_BEGIN = re.compile(r"\\begin\s*\{([^}]*)\}")
_LEFTOVER_COMMAND = re.compile(r">(\\[A-Za-z]+)<")  # an unknown command, kept as text
_EXCEPTION_WORDS = re.compile(r"(?<=[a-z])(?=[A-Z])")


class MathError(ValueError):
    """A formula the converter cannot render faithfully; the message says why."""


@functools.cache
def _environments() -> frozenset[str]:
    """Environments latex2mathml renders (\\begin{pmatrix} ...); others it drops silently."""
    from latex2mathml import commands  # 60 ms to import: only for a post with a formula

    return frozenset(name.removeprefix("\\") for name in commands.MATRICES)


def to_mathml(latex: str, display: bool) -> str:
    """The ``<math>`` element for ``latex`` (``display``: a block formula)."""
    from latex2mathml.converter import convert

    _check_braces(latex)
    environments = _environments()
    for name in _BEGIN.findall(latex):
        if name.strip() not in environments:
            known = ", ".join(sorted(n for n in environments if n.isalpha()))
            raise MathError(f"environment {{{name}}} is not supported (supported: {known})")
    try:
        mathml = convert(latex, display="block" if display else "inline")
    except Exception as exc:  # the converter's own errors: MissingEndError, ...
        raise MathError(_describe(exc)) from None
    unknown = _LEFTOVER_COMMAND.search(mathml)
    if unknown:
        raise MathError(f"unknown command {unknown.group(1)}")
    return mathml


def _check_braces(latex: str) -> None:
    depth = 0
    escaped = False
    for char in latex:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise MathError("a '}' closes no '{'")
    if depth:
        raise MathError(f"{depth} unclosed '{{'")


def _describe(exc: Exception) -> str:
    name = type(exc).__name__.removesuffix("Error")
    words = _EXCEPTION_WORDS.sub(" ", name).lower()
    detail = str(exc).strip()
    return f"{words}: {detail}" if detail else words
