"""Text for the console: control characters escaped, so nothing printed can move the
cursor, clear the screen, recolour the terminal or fake a line of its own.

Snippets, their exceptions and post file names are untrusted, and they reach the console
in problems, notes and diffs. Every line printed goes through :func:`printable`: C0 and
C1 control characters, DEL and the bidirectional-text controls become visible escapes
(``\\x1b``, ``\\u202e``); a newline inside a message is escaped too, or (``multiline``)
kept with the following lines marked as its continuation.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTINUATION = "\n    │ "


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, multiline: bool = False) -> str:
    """``text`` safe to print: control characters escaped (tabs kept). ``multiline``:
    newlines kept, each following line indented and marked as a continuation."""
    if multiline:
        return _CONTINUATION.join(_CONTROL.sub(_escape, line) for line in text.split("\n"))
    return _CONTROL.sub(_escape, text)
