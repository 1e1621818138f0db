"""A post as a Jupyter notebook with its real outputs (``<slug>.ipynb`` beside its page).

The notebook is nbformat 4.5 JSON: the prose between snippets becomes Markdown cells,
each Python snippet a code cell (its ``#|`` options kept, as Quarto keeps them) with the
outputs it produced in this build, in order (streams, ``display_data``,
``execute_result``, ``error``), and execution counts in the order they ran. Snippets
that were not run (``eval: false``) are code cells without outputs or count.

It is written as plain dictionaries, serialised exactly as ``nbformat.writes`` does
(multi-line text split into lines, sorted keys, one-space indent), not with nbformat
itself: importing nbformat and validating with jsonschema cost about 130 ms in every
build that publishes a notebook. The tests hold it to nbformat: the same bytes as
``nbformat.writes`` and valid against the schema (``tests/test_notebooks.py``).
"""

from __future__ import annotations

import base64
import json
import math
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from raypress.execution.model import (
    NOT_RUN,
    DisplayOutput,
    PostExecution,
    Snippet,
    SnippetResult,
    StreamOutput,
)
from raypress.publish.markdown import ParsedBody
from raypress.publish.posts import Post


def notebook_name(post: Post) -> str:
    """The file name of a post's notebook, published next to its page."""
    return f"{post.slug}.ipynb"


def post_notebook(
    post: Post, body: ParsedBody, execution: PostExecution | None, page_url: str
) -> str:
    """The post as ``.ipynb`` JSON text (nbformat 4), with outputs when it was executed."""
    results = {r.index: r for r in execution.snippets} if execution else {}
    lines = post.body.split("\n")
    cells = [_markdown_cell(f"# {post.title}\n\n*From {page_url}*")]
    position = 0  # index into ``lines`` of what is not yet in a cell
    count = 0
    for snippet in body.snippets:
        fence = snippet.line - post.body_line  # index of the opening fence in ``lines``
        closing = snippet.code_line - post.body_line + snippet.source.count("\n")
        prose = "\n".join(lines[position:fence]).strip("\n")
        if prose.strip():
            cells.append(_markdown_cell(prose))
        source = "\n".join(lines[fence + 1 : closing]) if 0 <= fence < closing else snippet.source
        cell: dict[str, Any] = {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": source.rstrip("\n"),
        }
        result = results.get(snippet.index)
        if result is not None and result.status not in NOT_RUN:
            count += 1
            cell["execution_count"] = count
            cell["outputs"] = _outputs(result, count, snippet)
        if snippet.options.error:
            cell["metadata"]["tags"] = ["raises-exception"]
        cells.append(cell)
        position = max(position, closing + 1)
    rest = "\n".join(lines[position:]).strip("\n")
    if rest.strip():
        cells.append(_markdown_cell(rest))
    for number, cell in enumerate(cells):  # stable ids (nbformat draws random ones)
        cell["id"] = f"cell-{number}"
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "raypress": {"source": post.source, "url": page_url},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return notebook_json(notebook)


def notebook_json(notebook: dict[str, Any]) -> str:
    """``notebook`` as nbformat writes it (``nbformat.v4.nbjson.JSONWriter``): source,
    stream text and textual MIME data split into lines, keys sorted, indented by one."""
    for cell in notebook["cells"]:
        cell["source"] = cell["source"].splitlines(True)
        for output in cell.get("outputs", ()):
            if output["output_type"] == "stream":
                output["text"] = output["text"].splitlines(True)
            elif "data" in output:
                output["data"] = {
                    mime: value.splitlines(True)
                    if isinstance(value, str) and (mime.startswith("text/") or mime in _SPLIT_MIMES)
                    else value
                    for mime, value in output["data"].items()
                }
    parts: list[str] = []
    try:
        _encode(notebook, "\n", parts)
    except TypeError:  # a value nbformat's JSON would not hold either: json says what
        return json.dumps(
            notebook, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False
        )
    return "".join(parts)


def _encode(value: Any, newline: str, parts: list[str]) -> None:
    """``json.dumps(value, indent=1, sort_keys=True, separators=(",", ": "),
    ensure_ascii=False)``, appended to ``parts``: the same text, twice as fast (json's
    indenting encoder is its pure-Python one; a cold 1,000-post build writes a notebook
    per post). Anything but JSON's own types raises TypeError."""
    if isinstance(value, str):
        parts.append(encode_basestring(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(_float(value))
    elif isinstance(value, list | tuple):
        if not value:
            parts.append("[]")
            return
        inner = newline + " "
        parts.append("[")
        for number, item in enumerate(value):
            parts.append("," + inner if number else inner)
            _encode(item, inner, parts)
        parts.append(newline + "]")
    elif isinstance(value, dict):
        if not value:
            parts.append("{}")
            return
        inner = newline + " "
        parts.append("{")
        for number, (key, item) in enumerate(sorted(value.items())):
            if not isinstance(key, str):
                raise TypeError(f"key {key!r}")
            parts.append(("," + inner if number else inner) + encode_basestring(key) + ": ")
            _encode(item, inner, parts)
        parts.append(newline + "}")
    else:
        raise TypeError(type(value).__name__)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


_SPLIT_MIMES = frozenset({"application/javascript", "image/svg+xml"})  # as nbformat splits


def _markdown_cell(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _outputs(result: SnippetResult, count: int, snippet: Snippet) -> list[Any]:
    outputs: list[Any] = []
    if snippet.options.output:
        for output in result.outputs:
            if isinstance(output, StreamOutput):
                outputs.append({"name": output.name, "output_type": "stream", "text": output.text})
            else:
                outputs.append(_display(output, count))
    error = result.error
    if error is not None:
        outputs.append(
            {
                "ename": error.type,
                "evalue": error.message,
                "output_type": "error",
                "traceback": error.traceback.splitlines(),
            }
        )
    return outputs


def _display(output: DisplayOutput, count: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for mime, value in output.data:
        if isinstance(value, bytes):
            data[mime] = base64.b64encode(value).decode("ascii")
        elif mime == "application/json" or mime.endswith("+json"):
            data[mime] = json.loads(value)
        else:
            data[mime] = value
    shown = {"data": data, "metadata": dict(output.meta)}
    if output.result:
        return {**shown, "execution_count": count, "output_type": "execute_result"}
    return {**shown, "output_type": "display_data"}
