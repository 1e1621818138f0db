"""A post's runnable code as a Jupytext "percent" script (``# %%`` cells).

Readers download it from the post ("Download the code"); Jupytext, VS Code, PyCharm and
Spyder open it as a notebook, and ``python script.py`` runs it top to bottom.
"""

from __future__ import annotations

from raypress.config import Config
from raypress.execution.model import Snippet
from raypress.publish.markdown import ParsedBody
from raypress.publish.posts import Post

_HEADER = """\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---
"""


def script_name(post: Post) -> str:
    """The file name of a post's script, published next to its page."""
    return f"{post.slug}.py"


def percent_script(post: Post, body: ParsedBody, page_url: str) -> str:
    """The post's snippets, in order, as Jupytext percent cells."""
    parts = [
        _HEADER,
        "# %% [markdown]",
        f"# # {post.title}",
        "#",
        f"# The code of {page_url}, in the order the post runs it.",
        f"# Source: {post.source}",
        "",
    ]
    for snippet in body.snippets:
        parts += _cell(snippet)
    return "\n".join(parts).rstrip("\n") + "\n"


def _cell(snippet: Snippet) -> list[str]:
    options = snippet.options
    title = f" {options.label}" if options.label else ""
    where = f"# {snippet.post}:{snippet.line}"
    code = snippet.source.rstrip("\n")
    if not options.eval:  # shown in the post, never run: kept as a comment
        commented = "\n".join(f"# {line}" if line else "#" for line in code.splitlines())
        return [f"# %% [markdown]{title}", f"{where} (shown, not run)", commented, ""]
    tags = []
    if options.error:
        tags.append('"raises-exception"')
    if not options.echo:
        tags.append('"remove-input"')
    metadata = f" tags=[{', '.join(tags)}]" if tags else ""
    return [f"# %%{title}{metadata}", where, code, ""]


def post_script(post: Post, body: ParsedBody, config: Config) -> str:
    """The post's code as a Jupytext percent script (published beside the page and kept
    in snippets/)."""
    return percent_script(post, body, config.url + config.baseurl + post.url)
