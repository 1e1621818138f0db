"""Markdown to HTML with markdown-it-py; Python fences become Snippets on the way.

The body is parsed once to tokens. Python fences and inline `` `{python} expr` ``
expressions are extracted from the tokens (``token.map`` gives their lines) and rendered
with placeholders around them, so execution results can be put in later without
parsing or highlighting again (see :mod:`raypress.publish.embed_outputs`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.anchors.index import slugify as heading_slug
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.gfm import gfm_plugin

from raypress.errors import Problem, SourceError
from raypress.execution.imports import top_level_imports
from raypress.execution.model import InlineExpression, Snippet
from raypress.publish.highlight import Highlighter
from raypress.publish.local_files import LocalRef, local_reference
from raypress.publish.mathml import MathError, to_mathml
from raypress.publish.posts import Post
from raypress.publish.snippets import (
    code_fold_default,
    is_python,
    parse_options,
    split_options,
)

INLINE_PREFIX = "{python}"
DIAGRAM_LANGUAGES = frozenset({"mermaid"})
_MATH_INLINE = frozenset({"math_inline", "math_inline_double"})
_MATH_BLOCK = frozenset({"math_block", "math_block_label"})


@dataclass(frozen=True, slots=True)
class MarkdownSettings:
    """The options that change how a body renders (part of the render cache key)."""

    html: bool = True
    excerpt_separator: str = "<!--more-->"
    toc_min_headings: int = 3
    baseurl: str = ""  # prefixed to the post's root-relative links and images
    typography: bool = True  # kramdown's dashes, ellipsis, guillemets and smart quotes


@dataclass(frozen=True, slots=True)
class TocEntry:
    level: int
    id: str
    title: str


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A post's body rendered to HTML, with placeholders where execution results go."""

    source: str
    html: str
    marker: str  # placeholder prefix, unique to this post's content
    snippets: tuple[Snippet, ...]
    inline: tuple[InlineExpression, ...]
    toc: tuple[TocEntry, ...]
    excerpt_html: str
    excerpt_text: str
    word_count: int
    problems: tuple[Problem, ...]
    # what the page needs (scripts are loaded only where they are used)
    has_code: bool = False  # a code block: the copy button's script
    has_diagrams: bool = False  # a ```mermaid fence: the diagram script
    has_math: bool = False
    local_files: tuple[LocalRef, ...] = ()  # relative images and links to files beside it

    @property
    def uses_ray(self) -> bool:
        """True when any snippet imports ray (the build then needs a cluster)."""
        return any("ray" in top_level_imports(s.source) for s in self.snippets if s.options.eval)


def snippet_placeholder(marker: str, index: int, part: str) -> str:
    """The comment standing for the ``part`` ("open"/"close") of snippet ``index``."""
    return f"<!--{marker}:s{index}:{part}-->"


def inline_placeholder(marker: str, index: int) -> str:
    """The comment standing for inline expression ``index``."""
    return f"<!--{marker}:x{index}-->"


@lru_cache(maxsize=4)
def create_markdown(enable_html: bool, typography: bool = True) -> MarkdownIt:
    """The markdown-it-py parser: CommonMark + GFM (tables, strikethrough, task lists,
    footnotes, autolinks, alerts) + heading anchors, with raypress's fence rule, and
    (``typography``) kramdown's typographic symbols and smart quotes, as Jekyll gives."""
    md = MarkdownIt("commonmark", {"html": enable_html, "typographer": typography})
    md.use(gfm_plugin)
    # Pandoc's rules: `$` must hug its formula, and `$5 and $10` stays text
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    _look_before_protocol_scan(md)
    if typography:
        md.core.ruler.before("smartquotes", "raw_html_text", _raw_html_text)
        md.core.ruler.before("smartquotes", "typographic_symbols", _typographic_symbols)
        md.enable("smartquotes")
        md.add_render_rule("raw_text", _render_raw_text)
    md.core.ruler.push("anchor", _heading_anchors)
    md.core.ruler.push("baseurl", _prefix_baseurl)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_code_block)
    md.add_render_rule("code_inline", _render_code_inline)
    for name in (*_MATH_INLINE, *_MATH_BLOCK):
        md.add_render_rule(name, _render_math)
    md.add_render_rule("table_open", _render_table_open)
    md.add_render_rule("table_close", _render_table_close)
    return md


# kramdown's TYPOGRAPHIC_SYMS, matched left to right as kramdown scans ("----" is "—-")
_SYMBOLS = {
    "---": "\u2014",
    "--": "\u2013",
    "...": "\u2026",
    "<< ": "\u00ab\u00a0",
    " >>": "\u00a0\u00bb",
    "<<": "\u00ab",
    ">>": "\u00bb",
}
_SYMBOLS_RE = re.compile("|".join(re.escape(k) for k in _SYMBOLS))
# raw HTML whose content kramdown leaves as it is (its HTML_CONTENT_MODEL_RAW)
_RAW_HTML = re.compile(r"<(/?)(code|kbd|samp|var|pre|script|style|math|textarea)\b", re.I)


def _raw_html_text(state: StateCore) -> None:
    """Text inside raw ``<code>``, ``<kbd>``, ... spans of a paragraph is code: kept from
    typography by giving it a type of its own (rendered as escaped text)."""
    for block in state.tokens:
        depth = 0
        for token in block.children or ():
            if token.type == "html_inline":
                for closing, _name in _RAW_HTML.findall(token.content):
                    depth = max(0, depth + (-1 if closing else 1))
            elif token.type == "text" and depth:
                token.type = "raw_text"


def _typographic_symbols(state: StateCore) -> None:
    """``---`` em dash, ``--`` en dash, ``...`` ellipsis, ``<<``/``>>`` guillemets, as
    kramdown; only in prose text (code spans, fences, raw HTML and autolinks are left)."""
    for block in state.tokens:
        if block.type != "inline" or not _SYMBOLS_RE.search(block.content):
            continue
        in_autolink = False
        for token in block.children or ():
            if token.type in ("link_open", "link_close") and token.info == "auto":
                in_autolink = token.type == "link_open"
            elif token.type == "text" and not in_autolink:
                token.content = _SYMBOLS_RE.sub(lambda m: _SYMBOLS[m.group(0)], token.content)


def _render_raw_text(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return html.escape(tokens[idx].content, quote=False)


def _prefix_baseurl(state: StateCore) -> None:
    """``[x](/2025/...)`` and ``![](/img.png)`` get the site's baseurl, so a site served
    under a sub-path keeps working links (raw HTML is left as the author wrote it)."""
    baseurl = state.env.get("baseurl", "") if isinstance(state.env, dict) else ""
    if not baseurl:
        return
    for block in state.tokens:
        for token in block.children or ():
            name = {"link_open": "href", "image": "src"}.get(token.type)
            value = token.attrGet(name) if name else None
            if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
                token.attrSet(name, baseurl + value)


def _heading_anchors(state: StateCore) -> None:
    """An id and a ``¶`` link for h1-h4, as mdit-py-plugins' ``anchors_plugin(permalink=True)``
    gives, but with repeated titles made unique in linear time: the plugin tries ``-1``,
    ``-2``, ... afresh for every repeat, so a post of 25,000 equal headings took minutes."""
    taken: set[str] = set()
    next_suffix: dict[str, int] = {}
    tokens = state.tokens
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or token.tag not in ("h1", "h2", "h3", "h4"):
            continue
        inline = tokens[index + 1]
        children = inline.children = inline.children or []
        slug = str(token.attrGet("id") or "")
        if not slug:
            base = heading_slug(
                "".join(c.content for c in children if c.type in ("text", "code_inline"))
            )
            slug, suffix = base, next_suffix.get(base, 1)
            while slug in taken:  # base-1 .. base-(suffix-1) are taken already
                slug, suffix = f"{base}-{suffix}", suffix + 1
            next_suffix[base] = suffix
            token.attrSet("id", slug)
        taken.add(slug)
        link_open = Token("link_open", "a", 1)
        link_open.attrSet("class", "header-anchor")
        link_open.attrSet("href", f"#{slug}")
        children += [
            Token("text", "", 0, content=" "),
            link_open,
            Token("html_block", "", 0, content="¶"),
            Token("link_close", "a", -1),
        ]


def _look_before_protocol_scan(md: MarkdownIt) -> None:
    """gfm_autolink's ``http:``-style rule copies the rest of the paragraph before it looks
    at the character in front of it, at every position it is tried: quadratic, minutes for
    a 1 MB paragraph. Look at that character first."""
    ruler = md.inline.ruler
    for rule in ruler.__rules__:
        if rule.name == "gfm_autolink_protocol":
            scan = rule.fn

            def protocol(state: StateInline, silent: bool, scan: Any = scan) -> bool:
                return state.src.startswith(":", state.pos) and scan(state, silent)

            ruler.at(rule.name, protocol)


def parse_body(
    post: Post, settings: MarkdownSettings, highlighter: Highlighter | None = None
) -> ParsedBody:
    """Parse and render ``post.body``; extract its snippets, TOC, excerpt and word count.
    ``highlighter`` highlights the code (it may remember fences of an earlier parse)."""
    md = create_markdown(settings.html, settings.typography)
    highlighter = highlighter or Highlighter()
    marker = f"raypress:{post.digest[:12]}"
    separator = settings.excerpt_separator
    body = post.body.replace(separator, "") if separator else post.body
    tokens = md.parse(body, {"baseurl": settings.baseurl})
    snippets, inline, problems = _extract(tokens, post, body.split("\n"))
    problems += _convert_math(tokens, post)
    local_files = _local_files(tokens, post)
    env: dict[str, Any] = {
        "marker": marker,
        "baseurl": settings.baseurl,
        "highlight": highlighter.block,
    }
    body_html = md.renderer.render(tokens, md.options, env)
    if post.excerpt:  # front matter 'excerpt', Jekyll's
        excerpt_html = _without_local_anchors(
            md.render(post.excerpt, {"baseurl": settings.baseurl})
        )
    else:
        excerpt_html = _excerpt_html(md, post.body, separator, tokens, env, post.url)
    toc = _toc(tokens)
    kinds = {t.type for t in tokens}
    languages = {_fence_language(t.info) for t in tokens if t.type == "fence"}
    return ParsedBody(
        source=post.source,
        html=body_html,
        marker=marker,
        snippets=tuple(snippets),
        inline=tuple(inline),
        toc=toc if len(toc) >= settings.toc_min_headings else (),
        excerpt_html=excerpt_html,
        excerpt_text=_plain_text(excerpt_html),
        word_count=_word_count(tokens),
        problems=tuple(problems),
        has_code="code_block" in kinds or any(t.type == "fence" and _shows_code(t) for t in tokens),
        has_diagrams=bool(languages & DIAGRAM_LANGUAGES),
        has_math=bool(kinds & _MATH_BLOCK)
        or any(c.type in _MATH_INLINE for t in tokens for c in t.children or ()),
        local_files=local_files,
    )


def _shows_code(token: Token) -> bool:
    """A fence shown as highlighted code (not a diagram, not a hidden snippet)."""
    if _fence_language(token.info) in DIAGRAM_LANGUAGES:
        return False
    return token.meta.get("snippet") is None or bool(token.meta.get("echo"))


_CONTAINER = re.compile(r"^[ \t>]*")  # blockquote markers and list indentation


def _fence_language(info: str) -> str:
    word = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    return word.strip("{}").lower()


def unclosed(token: Token, lines: Sequence[str]) -> bool:
    """True when a fence has no closing line of its own (it runs to the end of the post
    or of its blockquote or list item, swallowing the prose after it)."""
    if token.map is None:
        return False
    start, end = token.map
    if end - 1 <= start or end - 1 >= len(lines):
        return True
    closing = _CONTAINER.sub("", lines[end - 1]).rstrip()
    char = token.markup[:1]
    return not (closing and set(closing) == {char} and len(closing) >= len(token.markup))


def _extract(
    tokens: Sequence[Token], post: Post, lines: Sequence[str]
) -> tuple[list[Snippet], list[InlineExpression], list[Problem]]:
    snippets: list[Snippet] = []
    inline: list[InlineExpression] = []
    problems: list[Problem] = []
    fold_default: bool | str = False  # front matter `code-fold:`, as Quarto's documents have
    if "code-fold" in post.extra:
        line = post.extra_lines.get("code-fold", 1)
        try:
            fold_default = code_fold_default(post.extra["code-fold"], post.source, line)
        except SourceError as exc:
            problems.append(exc.problem)
    for token in tokens:
        language = _fence_language(token.info) if token.type == "fence" else ""
        if token.type == "fence" and unclosed(token, lines):
            problems.append(
                Problem(
                    post.source,
                    post.body_line + (token.map[0] if token.map else 0),
                    f"this code fence ({token.markup}) is never closed: the rest of the post "
                    "would be code (and a python fence would run it)",
                    f"add a closing {token.markup} line",
                )
            )
            continue
        if is_python(language) and token.map:
            fence_line = post.body_line + token.map[0]
            option_lines, code = split_options(token.content)
            try:
                options = parse_options(option_lines, post.source, fence_line + 1)
            except SourceError as exc:
                problems.append(exc.problem)
                continue
            token.meta["snippet"] = len(snippets)
            token.meta["echo"] = options.echo
            fold = options.code_fold
            token.meta["code_fold"] = fold_default if fold is None else fold
            token.meta["code_summary"] = options.code_summary
            token.meta["display"] = code
            snippets.append(
                Snippet(
                    post=post.source,
                    index=len(snippets),
                    line=fence_line,
                    code_line=fence_line + 1 + len(option_lines),
                    language=language,
                    source=code,
                    options=options,
                )
            )
        elif token.type == "inline" and token.children and token.map:
            offset = 0
            for child in token.children:
                if child.type in ("softbreak", "hardbreak"):
                    offset += 1
                if child.type == "code_inline" and child.content.startswith(INLINE_PREFIX):
                    child.meta["inline"] = len(inline)
                    inline.append(
                        InlineExpression(
                            index=len(inline),
                            line=post.body_line + token.map[0] + offset,
                            source=child.content[len(INLINE_PREFIX) :].strip(),
                            after_snippet=len(snippets) - 1,
                        )
                    )
    return snippets, inline, problems


def _render_fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    language = _fence_language(token.info)
    index = token.meta.get("snippet")
    highlight = _highlighter(env)
    if language in DIAGRAM_LANGUAGES and index is None:
        return (
            f'<div class="diagram"><pre class="mermaid">{html.escape(token.content)}</pre></div>\n'
        )
    if index is None or "marker" not in env:
        return highlight(token.content, language)
    code = highlight(token.meta["display"], language) if token.meta["echo"] else ""
    fold = token.meta.get("code_fold")
    if code and fold:
        is_open = " open" if fold == "show" else ""
        summary = html.escape(token.meta.get("code_summary") or "Code")
        code = (
            f'<details class="code-fold"{is_open}><summary>{summary}</summary>\n{code}</details>\n'
        )
    marker = env["marker"]
    return (
        snippet_placeholder(marker, index, "open")
        + code
        + snippet_placeholder(marker, index, "close")
        + "\n"
    )


def _render_code_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return _highlighter(env)(tokens[idx].content, "")


def _highlighter(env: Any) -> Any:
    """The parse's highlighter (env "highlight"), or a fresh one."""
    found = env.get("highlight") if isinstance(env, dict) else None
    return found or Highlighter().block


def _render_code_inline(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    token = tokens[idx]
    index = token.meta.get("inline")
    if index is not None and "marker" in env:
        return inline_placeholder(env["marker"], index)
    return f"<code>{html.escape(token.content)}</code>"


def _excerpt_html(
    md: MarkdownIt,
    body: str,
    separator: str,
    tokens: Sequence[Token],
    env: dict[str, Any],
    page_url: str,
) -> str:
    """The excerpt, shown on other pages: a relative image or link beside the post is made
    site-absolute (``/2025/11/01/post/plot.png``) so it still works there."""
    baseurl = env.get("baseurl", "")
    if separator and separator in body:
        head = body.split(separator, 1)[0]
        head_env = {"baseurl": baseurl, "highlight": env.get("highlight")}
        head_tokens = md.parse(head, head_env)
        _absolute_local_links(head_tokens, baseurl + page_url)
        return _without_local_anchors(md.renderer.render(head_tokens, md.options, head_env))
    for i, token in enumerate(tokens):
        if token.type == "paragraph_open" and token.level == 0:
            paragraph = [tokens[i], _copy_inline(tokens[i + 1]), tokens[i + 2]]
            _absolute_local_links(paragraph, baseurl + page_url)
            return _without_local_anchors(md.renderer.render(paragraph, md.options, {}))
    return ""


def _copy_inline(token: Token) -> Token:
    """A copy of an inline token whose children may be changed without touching the body."""
    children = [child.copy(attrs=dict(child.attrs)) for child in token.children or ()]
    return token.copy(children=children)


def _absolute_local_links(tokens: Sequence[Token], page_path: str) -> None:
    for block in tokens:
        for child in block.children or ():
            name = {"link_open": "href", "image": "src"}.get(child.type)
            value = child.attrGet(name) if name else None
            if isinstance(value, str) and local_reference(value) is not None:
                child.attrSet(name, urljoin(page_path, value))


def _without_local_anchors(fragment: str) -> str:
    """An excerpt shown on another page: footnote references and heading ``¶`` links
    would point at nothing there."""
    fragment = re.sub(r'<sup class="footnote-ref">.*?</sup>', "", fragment)
    return re.sub(r'\s*<a class="header-anchor"[^>]*>.*?</a>', "", fragment)


def _toc(tokens: Sequence[Token]) -> tuple[TocEntry, ...]:
    entries: list[TocEntry] = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag in ("h2", "h3") and token.attrGet("id"):
            title = "".join(
                c.content for c in tokens[i + 1].children or () if c.type in ("text", "code_inline")
            )
            entries.append(TocEntry(int(token.tag[1]), str(token.attrGet("id")), title.strip()))
    return tuple(entries)


def _word_count(tokens: Sequence[Token]) -> int:
    words = 0
    for token in tokens:
        if token.type == "inline":
            words += sum(len(c.content.split()) for c in token.children or () if c.type == "text")
        elif token.type in ("fence", "code_block"):
            words += len(token.content.split())
    return words


def _plain_text(fragment: str) -> str:
    text = re.sub(r"<[^>]+>", "", fragment)
    return " ".join(html.unescape(text).split())


def _convert_math(tokens: Sequence[Token], post: Post) -> list[Problem]:
    """Render every formula to MathML now (kept in ``token.meta``); a formula that cannot
    be rendered is a problem at its line."""
    problems: list[Problem] = []

    def convert(token: Token, line: int, display: bool) -> None:
        try:
            token.meta["mathml"] = to_mathml(token.content, display)
        except MathError as exc:
            formula = " ".join(token.content.split())
            shown = formula if len(formula) <= 60 else formula[:57] + "..."
            problems.append(
                Problem(
                    post.source,
                    line,
                    f"cannot render the formula ${shown}$: {exc}",
                    "fix the LaTeX, or write a literal dollar as \\$",
                )
            )

    for token in tokens:
        if token.type in _MATH_BLOCK and token.map:
            convert(token, post.body_line + token.map[0], display=True)
        elif token.type == "inline" and token.children and token.map:
            offset = 0
            for child in token.children:
                if child.type in ("softbreak", "hardbreak"):
                    offset += 1
                elif child.type in _MATH_INLINE:
                    display = child.type == "math_inline_double"
                    convert(child, post.body_line + token.map[0] + offset, display)
    return problems


def _render_math(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    mathml = token.meta.get("mathml")
    if mathml is None:  # a body parsed without conversion (an excerpt): convert now
        try:
            mathml = to_mathml(token.content, token.type not in ("math_inline",))
        except MathError:
            mathml = f"<code>{html.escape(token.content)}</code>"
    if token.type == "math_inline":
        return mathml
    if token.type == "math_block_label":
        label = html.escape(token.info)
        anchor = f'<a class="math-label" href="#{label}">({label})</a>'
        return f'<div class="math-display" id="{label}">{mathml}{anchor}</div>\n'
    return f'<div class="math-display">{mathml}</div>\n'


def _render_table_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """Tables scroll sideways inside their own box (keyboard-focusable, labelled) on
    narrow screens, instead of widening the page."""
    return (
        '<div class="table-scroll" tabindex="0" role="region" aria-label="Table">\n'
        + self.renderToken(tokens, idx, options, env)
    )


def _render_table_close(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    return self.renderToken(tokens, idx, options, env) + "</div>\n"


def _local_files(tokens: Sequence[Token], post: Post) -> tuple[LocalRef, ...]:
    """Relative images (and links to files) of the body, with their lines: they are
    published beside the post's page (a missing image is a problem of the build)."""
    found: list[LocalRef] = []
    for token in tokens:
        if token.type != "inline" or not token.children or not token.map:
            continue
        offset = 0
        for child in token.children:
            if child.type in ("softbreak", "hardbreak"):
                offset += 1
            name = {"link_open": "href", "image": "src"}.get(child.type)
            value = child.attrGet(name) if name else None
            if not isinstance(value, str):
                continue
            path = local_reference(value)
            if path is not None:
                line = post.body_line + token.map[0] + offset
                found.append(LocalRef(path, line, required=child.type == "image"))
    return tuple(found)
