"""A Jupyter notebook in posts/ read as a post: the text the Markdown reader gets.

The notebook is read with nbformat (any version, converted to 4). Its front matter is a
first raw cell holding YAML between ``---`` lines (as Quarto has it), else the
``raypress`` mapping of the notebook's metadata (else only its ``title``). Markdown cells
become prose, code cells Python fences (their ``#|`` options work as in a Markdown post),
other raw cells are left out. Outputs saved in the notebook are ignored: the snippets
run like any post's.

Line numbers point into the ``.ipynb`` file: each cell is placed at the line of the JSON
text where its source starts (nbformat writes one source line per JSON line), so
``posts/x.ipynb:57`` in a problem is the line of that cell's code an editor shows.
Where that cannot be done (a source written as one string), lines still grow in order.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from raypress.errors import SourceError

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{}\[\]:,]|\n')
_PYTHON = frozenset({"python", "python3", "ipython", "ipython3", ""})


def notebook_post_text(raw: bytes, source: str) -> str:
    """The post text (front matter and Markdown body) of the notebook ``raw``."""
    import nbformat

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(source, None, "notebook is not UTF-8 JSON") from None
    try:
        notebook = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises JSON, schema and conversion errors
        line = getattr(exc, "lineno", None)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(source, line, f"not a readable notebook: {message}") from None
    language = _language(notebook.metadata)
    if language not in _PYTHON:
        raise SourceError(
            source, None, f"notebook kernel language is {language!r}: raypress runs Python"
        )
    places = cell_lines(text)
    if len(places) != len(notebook.cells):
        places = [0] * len(notebook.cells)
    out: list[str] = []  # lines of the post text, out[i] is line i + 1
    cells = list(zip(notebook.cells, places, strict=True))
    if cells and _is_front_matter(cells[0][0]):
        cell, line = cells.pop(0)
        body = cell.source.strip().split("\n")[1:-1]  # between the --- lines
        out.append("---")
        _pad(out, line + 1)  # its YAML on the lines of the notebook that hold it
        out += [*body, "---", ""]
    else:
        front = _metadata_front_matter(notebook.metadata)
        if front:
            out += ["---", *yaml.safe_dump(front, sort_keys=False).splitlines(), "---", ""]
    for cell, line in cells:
        lines = cell.source.split("\n") if cell.source else [""]
        if cell.cell_type == "code":
            _pad(out, line - 1)
            out += ["```python", *lines, "```", ""]
        elif cell.cell_type == "markdown":
            _pad(out, line)
            out += [*lines, ""]
    return "\n".join(out) + "\n"


def _pad(out: list[str], line: int) -> None:
    """Blank lines until the next line written is ``line`` (if it is still ahead)."""
    while len(out) < line - 1:
        out.append("")


def _language(metadata: Any) -> str:
    kernel = metadata.get("kernelspec") or {}
    info = metadata.get("language_info") or {}
    return str(kernel.get("language") or info.get("name") or "").lower()


def _is_front_matter(cell: Any) -> bool:
    lines = cell.source.strip().split("\n")
    return cell.cell_type == "raw" and len(lines) >= 2 and lines[0] == lines[-1] == "---"


def _metadata_front_matter(metadata: Any) -> dict[str, Any]:
    own = metadata.get("raypress")
    if isinstance(own, dict):
        return {str(k): v for k, v in own.items() if k not in ("source", "url")}
    title = metadata.get("title")
    return {"title": title} if isinstance(title, str) and title else {}


def cell_lines(text: str) -> list[int]:
    """For each cell of the notebook JSON ``text``, the 1-based line where its source
    starts (the line of its first source string), by a scan that tracks nesting."""
    found: list[int] = []
    line = 1
    stack: list[str] = []  # "{" or "[" for each open container
    keys: list[str | None] = []  # per open object: its last key
    expecting_key = False
    want_source = False  # the next string token starts a cell's source
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token == "\n":
            line += 1
            continue
        if token in "{[":
            in_cells = len(stack) == 2 and stack[0] == "{" and keys[0] == "cells"
            stack.append(token)
            keys.append(None)
            expecting_key = token == "{"
            if in_cells and token == "{":
                want_source = False
            continue
        if token in "}]":
            if stack:
                stack.pop()
                keys.pop()
            want_source = False
            continue
        if token == ",":
            expecting_key = bool(stack) and stack[-1] == "{"
            continue
        if token == ":":
            expecting_key = False
            if len(stack) == 3 and keys and keys[-1] == "source" and keys[0] == "cells":
                want_source = True
            continue
        # a string
        if expecting_key and stack and stack[-1] == "{":
            keys[-1] = token[1:-1]
            continue
        if want_source:
            found.append(line)
            want_source = False
    return found
