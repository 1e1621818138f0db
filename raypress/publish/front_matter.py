"""Split a post into YAML front matter and Markdown body; parse the YAML safely.

Only the safe loader is used: front matter is data, and a ``!!python/...`` tag is
refused before anything could be constructed from it. PyYAML's C parser (libyaml) reads
it when installed, five times faster; whatever it refuses is read again by the pure
Python one, whose messages the error reports are made from.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raypress.errors import SourceError

if TYPE_CHECKING:  # imported where used: the command line starts the engine before YAML
    import yaml

_OPEN = "---"
_CLOSERS = ("---", "...")


@dataclass(frozen=True, slots=True)
class SplitPost:
    """A post's text cut in two: the front-matter mapping and the Markdown body."""

    data: dict[str, Any]
    has_front_matter: bool
    body: str
    body_line: int  # 1-based line of the file where the body starts
    key_lines: dict[str, int]  # top-level key -> 1-based line in the file


def split_front_matter(text: str, path: str) -> SplitPost:
    """Separate and parse the front matter of ``text`` (the file at ``path``)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != _OPEN:
        return SplitPost({}, False, text, 1, {})
    for number, line in enumerate(lines[1:], start=2):
        if line.rstrip() in _CLOSERS:
            yaml_text = "".join(lines[1 : number - 1])
            body = "".join(lines[number:])
            data = _load(yaml_text, path)
            return SplitPost(data, True, body, number + 1, _key_lines(yaml_text))
    raise SourceError(
        path, 1, "front matter opened here is never closed", "add a line '---' after the YAML"
    )


def _load(yaml_text: str, path: str) -> dict[str, Any]:
    import yaml

    tag = re.search(r"!!python/\S*|!<?tag:yaml\.org,2002:python/\S*", yaml_text)
    if tag:
        line = 2 + yaml_text[: tag.start()].count("\n")
        raise SourceError(
            path,
            line,
            f"front matter uses the YAML tag {tag.group(0)!r}, which is refused",
            "front matter is plain data: remove the tag",
        )
    try:
        data = safe_load(yaml_text)
    except yaml.YAMLError as exc:
        mark, problem = yaml_error_place(exc, yaml_text)
        last = max(0, len(yaml_text.rstrip().splitlines()) - 1)  # not the closing '---'
        line = 2 + min(mark.line, last) if mark is not None else 1
        if "could not determine a constructor" in str(exc):
            problem = f"unsupported YAML tag ({problem})"
        raise SourceError(
            path, line, f"malformed YAML in front matter: {problem}", "fix the YAML syntax"
        ) from None
    except (ValueError, OverflowError) as exc:  # a timestamp that is no date: 2024-13-45
        offset, value = bad_scalar(yaml_text)
        raise SourceError(
            path,
            2 + offset,
            f"invalid date or value {_short(value)!r} in front matter ({_short(str(exc))})",
            "write dates as YYYY-MM-DD or YYYY-MM-DD HH:MM:SS +01:00, or quote the value",
        ) from None
    except RecursionError:
        lines = yaml_text.splitlines() or [""]
        deepest = max(range(len(lines)), key=lambda i: lines[i].count("[") + lines[i].count("{"))
        raise SourceError(
            path,
            2 + deepest,
            "front matter nests lists or mappings too deeply to be read",
            "front matter holds plain values: flatten it",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(
            path,
            2,
            f"front matter must be a mapping of keys to values, not a {type(data).__name__}",
            "write it as 'key: value' lines",
        )
    return {str(k): v for k, v in data.items()}


def yaml_error_place(exc: yaml.YAMLError, text: str) -> tuple[Any, str]:
    """The mark to report for a YAML error in ``text``, and its description.

    An error found only at the end of the text (an unclosed ``[`` or quote) is reported
    where the unclosed construct starts, not on the line after the YAML.
    """
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if context_mark is not None and (problem_mark is None or problem_mark.index >= len(text)):
        context = getattr(exc, "context", None)
        return context_mark, f"{context}: {problem}" if context else problem
    return problem_mark or context_mark, problem


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, by libyaml when it has it; on any error by the pure parser
    again, so that problems are reported exactly as ``yaml.safe_load`` reports them."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        with contextlib.suppress(Exception):  # the pure parser says what is wrong
            return yaml.load(text, Loader=loader)
    return yaml.safe_load(text)


def bad_scalar(yaml_text: str) -> tuple[int, str]:
    """The 0-based line and the value of the first scalar YAML cannot construct (a
    timestamp that is no date, such as 2024-13-45), found line by line."""
    import yaml

    for offset, text in enumerate(yaml_text.splitlines()):
        try:
            yaml.safe_load(text)
        except (ValueError, OverflowError):
            return offset, text.split(":", 1)[-1].strip()
        except yaml.YAMLError:
            continue
    return 0, yaml_text.strip()


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key_lines(yaml_text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for offset, line in enumerate(yaml_text.splitlines()):
        match = re.match(r"([A-Za-z_][\w-]*)\s*:", line)
        if match and match.group(1) not in found:
            found[match.group(1)] = 2 + offset
    return found
