"""Hypothesis strategies for random posts: front matter, Markdown, fences, snippet options.

They aim at the edges a hostile or careless author reaches: YAML that is valid but of
the wrong type, values far out of range, NaN and infinities, control characters, fences
of every length that are closed, closed too short or never closed, options in the wrong
place, Markdown containers around fences.
"""

from __future__ import annotations

import yaml
from hypothesis import strategies as st

KNOWN_KEYS = (
    "title", "date", "updated", "tags", "categories", "layout", "permalink", "slug", "draft",
    "timeout", "execute", "ray", "deps", "description", "author", "excerpt", "published",
)  # fmt: skip
OPTION_KEYS = (
    "label", "eval", "echo", "output", "error", "timeout", "repeat", "deps", "compare",
    "fig-format", "unknown",
)  # fmt: skip

text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30
)  # any character, control characters included
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(["2025-01-01", "2025-13-45", "yesterday", "2025-01-01 10:00:00 +0100"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def front_matter(draw: st.DrawFn) -> str:
    """A front matter block: YAML made from random keys and values, or raw lines."""
    keys = draw(st.lists(st.one_of(st.sampled_from(KNOWN_KEYS), text), max_size=6))
    data = {key: draw(values) for key in keys}
    if draw(st.booleans()):
        try:
            block = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        except (yaml.YAMLError, ValueError):
            block = ""
    else:
        block = "\n".join(f"{key}: {draw(text)}" for key in keys)
    return f"---\n{block}\n---\n" if draw(st.booleans()) else f"---\n{block}\n"


@st.composite
def option_line(draw: st.DrawFn) -> str:
    key = draw(st.one_of(st.sampled_from(OPTION_KEYS), text))
    value = draw(st.one_of(scalars.map(lambda v: yaml.safe_dump(v).split("\n")[0]), text))
    return f"#| {key}: {value}"


@st.composite
def fence(draw: st.DrawFn, code: st.SearchStrategy[str] | None = None) -> str:
    """A fence: ``` or ~~~ of 3 to 6, a language, options, code, and a closing line that
    may be missing, too short or of the other kind."""
    char = draw(st.sampled_from("`~"))
    size = draw(st.integers(3, 6))
    language = draw(st.sampled_from(["python", "py", "python3", "{python}", "bash", "", "text"]))
    options = draw(st.lists(option_line(), max_size=3))
    body = draw(code if code is not None else text)
    closing = draw(
        st.sampled_from(
            [char * size, char * (size + 1), char * max(0, size - 1), "", "`~"[char == "`"] * 3]
        )
    )
    indent = draw(st.sampled_from(["", "> ", "  ", "- "]))
    lines = [char * size + language, *options, *body.split("\n"), closing]
    return "\n".join(indent + line for line in lines) + "\n"


@st.composite
def markdown(draw: st.DrawFn, code: st.SearchStrategy[str] | None = None) -> str:
    """Paragraphs, headings, inline code and inline expressions, lists, quotes, fences."""
    blocks = draw(
        st.lists(
            st.one_of(
                text,
                text.map(lambda t: "# " + t),
                text.map(lambda t: f"Inline `{{python}} {t}` expression."),
                text.map(lambda t: f"> {t}"),
                text.map(lambda t: f"- {t}\n- `{t}`"),
                st.just("<!--more-->"),
                fence(code),
            ),
            max_size=6,
        )
    )
    return "\n\n".join(blocks) + "\n"


@st.composite
def post_file(draw: st.DrawFn, code: st.SearchStrategy[str] | None = None) -> str:
    """A whole post file: maybe front matter, then Markdown."""
    head = draw(st.one_of(st.just(""), front_matter()))
    return head + "\n" + draw(markdown(code))
