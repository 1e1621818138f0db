"""A post as a Jupyter notebook with its real outputs (``<slug>.ipynb`` beside its page).

The notebook is made with nbformat: the prose between snippets becomes Markdown cells,
each Python snippet a code cell (its ``#|`` options kept, as Quarto keeps them) with the
outputs it produced in this build, in order (streams, ``display_data``,
``execute_result``, ``error``), and execution counts in the order they ran. Snippets
that were not run (``eval: false``) are code cells without outputs or count. The result
is validated against the notebook schema before it is published.
"""

from __future__ import annotations

import base64
import json
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
    import nbformat
    from nbformat import v4

    results = {r.index: r for r in execution.snippets} if execution else {}
    lines = post.body.split("\n")
    cells = [v4.new_markdown_cell(f"# {post.title}\n\n*From {page_url}*")]
    position = 0  # index into ``lines`` of what is not yet in a cell
    count = 0
    for snippet in body.snippets:
        fence = snippet.line - post.body_line  # index of the opening fence in ``lines``
        closing = snippet.code_line - post.body_line + snippet.source.count("\n")
        prose = "\n".join(lines[position:fence]).strip("\n")
        if prose.strip():
            cells.append(v4.new_markdown_cell(prose))
        source = "\n".join(lines[fence + 1 : closing]) if 0 <= fence < closing else snippet.source
        cell = v4.new_code_cell(source.rstrip("\n"))
        result = results.get(snippet.index)
        if result is not None and result.status not in NOT_RUN:
            count += 1
            cell.execution_count = count
            cell.outputs = _outputs(result, count, snippet)
        if snippet.options.error:
            cell.metadata["tags"] = ["raises-exception"]
        cells.append(cell)
        position = max(position, closing + 1)
    rest = "\n".join(lines[position:]).strip("\n")
    if rest.strip():
        cells.append(v4.new_markdown_cell(rest))
    for number, cell in enumerate(cells):  # nbformat draws random ids: builds must not differ
        cell["id"] = f"cell-{number}"
    notebook = v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "raypress": {"source": post.source, "url": page_url},
        },
    )
    nbformat.validate(notebook)
    return nbformat.writes(notebook)


def _outputs(result: SnippetResult, count: int, snippet: Snippet) -> list[Any]:
    from nbformat import v4

    outputs: list[Any] = []
    if snippet.options.output:
        for output in result.outputs:
            if isinstance(output, StreamOutput):
                outputs.append(v4.new_output("stream", name=output.name, text=output.text))
            else:
                outputs.append(_display(output, count))
    error = result.error
    if error is not None:
        outputs.append(
            v4.new_output(
                "error",
                ename=error.type,
                evalue=error.message,
                traceback=error.traceback.splitlines(),
            )
        )
    return outputs


def _display(output: DisplayOutput, count: int) -> Any:
    from nbformat import v4

    data: dict[str, Any] = {}
    for mime, value in output.data:
        if isinstance(value, bytes):
            data[mime] = base64.b64encode(value).decode("ascii")
        elif mime == "application/json" or mime.endswith("+json"):
            data[mime] = json.loads(value)
        else:
            data[mime] = value
    if output.result:
        return v4.new_output(
            "execute_result", data=data, metadata=output.meta, execution_count=count
        )
    return v4.new_output("display_data", data=data, metadata=output.meta)
