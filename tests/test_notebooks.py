"""Notebooks in and out: an .ipynb in posts/ is a post, and every post with snippets is
published as an .ipynb with its real outputs that nbformat opens and validates."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

from raypress.commands.build import build
from raypress.config import load_config
from raypress.errors import SourceError
from raypress.publish.notebook_source import cell_lines, notebook_post_text

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SITE_TOML = (
    'title = "t"\nurl = "https://example.org"\nrepository_url = "https://github.com/example/blog"\n'
)


def _notebook() -> nbformat.NotebookNode:
    return v4.new_notebook(
        cells=[
            v4.new_raw_cell("---\ntitle: A notebook post\ndate: 2025-01-05\ntags: [nb]\n---"),
            v4.new_markdown_cell("Some *prose* in a notebook."),
            v4.new_code_cell("#| label: answer\nx = 6 * 7\nprint(x)\nx"),
            v4.new_markdown_cell("## A heading\n\nMore prose."),
            v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.title('NB');"),
            v4.new_code_cell("y = 1\nraise ValueError('boom')"),
        ],
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "P"}},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("notebooks")
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "posts").mkdir()
    nbformat.write(_notebook(), root / "posts" / "2025-01-05-notebook.ipynb")
    (root / "posts" / "2025-01-04-markdown.md").write_text(
        "---\ntitle: Markdown\n---\n\nProse first.\n\n```python\nprint('hi')\n1 + 1\n```\n\n"
        "```python\n#| eval: false\nnot run\n```\n\nThe end.\n",
        encoding="utf-8",
    )
    (root / "posts" / "2025-01-03-rich.md").write_text(
        "---\ntitle: Rich\n---\n\nÜnïcode prose.\n\n```python\nclass Table:\n"
        "    def _repr_html_(self):\n        return '<table>\\n<tr><td>é</td></tr>\\n</table>'\n\n"
        "print('one\\ntwo')\nTable()\n```\n",
        encoding="utf-8",
    )
    (root / "site.toml").write_text(SITE_TOML)
    report = build(load_config(root))
    assert not report.problems, report.problems
    return root, report


def test_a_notebook_post_builds_from_its_cells(built: tuple[Path, object]) -> None:
    root, _ = built
    page = (root / "_site/2025/01/05/notebook/index.html").read_text()
    assert '<h1 class="post-title">A notebook post' in page
    assert "<p>Some <em>prose</em> in a notebook.</p>" in page
    assert 'id="a-heading"' in page and '<pre class="stdout">42\n</pre>' in page
    assert 'data-label="answer"' in page and '<img class="figure"' in page
    assert '/tags/nb/"' in page


def test_problems_name_the_line_of_the_notebook_file(built: tuple[Path, object]) -> None:
    root, report = built
    (problem,) = report.execution_problems  # type: ignore[attr-defined]
    text = (root / "posts" / "2025-01-05-notebook.ipynb").read_text().splitlines()
    assert problem.path == "posts/2025-01-05-notebook.ipynb"
    assert "raise ValueError('boom')" in text[problem.line - 1]


def test_each_post_offers_its_notebook_with_real_outputs(built: tuple[Path, object]) -> None:
    root, _ = built
    page = (root / "_site/2025/01/05/notebook/index.html").read_text()
    assert 'href="/2025/01/05/notebook/notebook.ipynb" download' in page
    notebook = nbformat.read(root / "_site/2025/01/05/notebook/notebook.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3]
    first = code[0].outputs
    assert [o.output_type for o in first] == ["stream", "execute_result"]
    assert first[0].text == "42\n" and first[1].data["text/plain"] == "42"
    (figure,) = code[1].outputs
    assert figure.output_type == "display_data" and figure.data["image/png"].startswith("iVBOR")
    assert figure.metadata["image/png"]["width"] > 0
    (error,) = code[2].outputs
    assert error.output_type == "error" and error.ename == "ValueError"

    markdown = nbformat.read(root / "_site/2025/01/04/markdown/markdown.ipynb", as_version=4)
    kinds = [c.cell_type for c in markdown.cells]
    assert kinds == ["markdown", "markdown", "code", "code", "markdown"]
    ran, shown = markdown.cells[2], markdown.cells[3]
    assert [o.output_type for o in ran.outputs] == ["stream", "execute_result"]
    assert shown.source == "#| eval: false\nnot run" and shown.outputs == []
    assert markdown.cells[4].source == "The end."


def test_published_notebooks_are_what_nbformat_itself_writes(
    built: tuple[Path, object],
) -> None:
    """raypress writes notebooks without nbformat (start-up time): the bytes must be
    those nbformat writes for the same notebook, and the schema must accept it."""
    root, _ = built
    for page in (
        "2025/01/05/notebook/notebook",
        "2025/01/04/markdown/markdown",
        "2025/01/03/rich/rich",
    ):
        published = (root / "_site" / f"{page}.ipynb").read_text(encoding="utf-8")
        notebook = nbformat.reads(published, as_version=nbformat.NO_CONVERT)
        nbformat.validate(notebook)
        assert nbformat.writes(notebook) == published
    rich = nbformat.reads(published, as_version=4).cells[-1].outputs  # the last: rich's
    assert rich[0].text == "one\ntwo\n" and "<td>é</td>" in rich[1].data["text/html"]
    assert '"text/html": [\n       "<table>\\n",' in published  # split into lines, as nbformat does


def test_colab_and_binder_links_with_repository_url(built: tuple[Path, object]) -> None:
    root, _ = built
    notebook = (root / "_site/2025/01/05/notebook/index.html").read_text()
    assert (
        "https://colab.research.google.com/github/example/blog/blob/main/"
        "posts/2025-01-05-notebook.ipynb" in notebook
    )
    assert (
        "https://mybinder.org/v2/gh/example/blog/main?labpath=posts/2025-01-05-notebook.ipynb"
        in notebook
    )
    markdown = (root / "_site/2025/01/04/markdown/index.html").read_text()
    assert "colab.research.google.com" not in markdown  # Colab opens only notebooks
    assert "labpath=posts/2025-01-04-markdown.md" in markdown


def test_bad_notebooks_are_problems_with_the_file_named() -> None:
    with pytest.raises(SourceError, match="not a readable notebook"):
        notebook_post_text(b'{"cells": [', "posts/x.ipynb")
    r_notebook = v4.new_notebook(
        metadata={"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}}
    )
    with pytest.raises(SourceError, match="kernel language is 'r'"):
        notebook_post_text(nbformat.writes(r_notebook).encode(), "posts/x.ipynb")


def test_cell_lines_follow_the_json_text() -> None:
    text = nbformat.writes(_notebook())
    lines = text.splitlines()
    for cell, line in zip(_notebook().cells, cell_lines(text), strict=True):
        first = cell.source.split("\n")[0]
        assert first.replace("'", "\\'")[:10] in lines[line - 1] or first[:10] in lines[line - 1]


def test_notebook_json_is_json_dumps_text_for_any_json_value() -> None:
    """The notebook writer's own encoder writes what ``json.dumps(indent=1,
    sort_keys=True, separators=(",", ": "), ensure_ascii=False)`` writes (nbformat's
    layout), for every JSON value: NaN, infinities, -0.0, control and non-BMP characters."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from raypress.publish.notebook_output import _encode

    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )

    @settings(max_examples=300, deadline=None)
    @given(values)
    def same(value: object) -> None:
        parts: list[str] = []
        _encode(value, "\n", parts)
        expected = json.dumps(
            value, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False
        )
        assert "".join(parts) == expected

    same()
