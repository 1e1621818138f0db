"""raypress.publish.fast_lexing gives exactly Pygments' tokens, only faster."""

from __future__ import annotations

from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name

from raypress.publish import fast_lexing
from raypress.publish.fast_lexing import _first_characters, _is_plain_regex_lexer, tokens_of

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = [
    "python", "bash", "console", "yaml", "toml", "javascript", "typescript", "c", "cpp",
    "rust", "go", "java", "html", "css", "sql", "diff", "ini", "make", "dockerfile", "jinja",
    "markdown", "rst", "ruby", "php", "haskell", "r", "julia", "xml", "pytb", "latex",
]  # fmt: skip
TRICKY = [
    "",
    "\n",
    "x",
    '"unterminated',
    "s = 'a\\'b' + \"c\" + r'\\d' + f'{x!r:>10}' + b'\\x00'\n",
    "def f(a, *, b=1):\n    return a @ b  # ¶ comment\n\n\tclass K: pass\n",
    "K\u212a\u017f ſ ı İ éà 日本語 \t\r\n",  # letters that match ASCII case-insensitively
    "\x00\x01 weird \\1 \\\\ <<EOF\nbody\nEOF\n",
    "@decorator\nasync def g():\n    await x; yield from y\nmatch v:\n    case [1, *_]: ...\n",
    "echo \"$HOME\" ${x:-y} $(ls | wc -l) `date` 'q' <<< hi && exit 1\n",
]


def _texts() -> list[str]:
    sources = sorted((ROOT / "posts").glob("*.md")) + sorted((ROOT / "raypress").glob("*.py"))
    sources += sorted((ROOT / "raypress" / "theme").glob("*.html"))
    return TRICKY + [p.read_text(encoding="utf-8")[:3000] for p in sources[:12]]


@pytest.mark.parametrize("language", LANGUAGES)
def test_same_tokens_as_pygments(language: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_lexing, "WARM_UP", -1)  # the fast path from the first text on
    lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    for text in _texts():
        assert list(tokens_of(lexer, text)) == list(lexer.get_tokens(text)), text[:60]
    if _is_plain_regex_lexer(lexer):  # the fast path did run: it set states up
        assert len(fast_lexing._combined_states(type(lexer))) > 0


def test_prepared_ahead_the_fast_path_gives_the_same_tokens_at_once() -> None:
    """``prepare`` (before the parse workers fork) sets the fast path up and switches it
    on: the first text a worker lexes takes it, with Pygments' own tokens."""
    from raypress.publish.highlight import lexer_for

    fast_lexing.prepare("python")
    lexer = lexer_for("python")
    states = fast_lexing._combined_states(type(lexer))
    assert states.seen > fast_lexing.WARM_UP and states.get("root")  # root state is built
    compiled = len(states["root"])
    for text in _texts():
        assert list(tokens_of(lexer, text)) == list(lexer.get_tokens(text)), text[:60]
    assert len(states["root"]) >= compiled > 5  # the sample built the common alternations


def test_the_common_languages_take_the_fast_path() -> None:
    for language in ("python", "bash", "javascript", "rust"):
        assert _is_plain_regex_lexer(get_lexer_by_name(language))


def test_first_characters() -> None:
    import re

    def chars(pattern: str, flags: int = re.M) -> str | None:
        found = _first_characters(pattern, flags)
        return None if found is None else "".join(sorted(map(chr, found)))

    assert chars(r"(?i:(rb|br|r)(\"\"\"))") == "BRbr"
    assert chars(r"(?<!\.)(abs|__import__)\b") == "_a"
    assert chars(r"[^\S\n]+") == "\t\x0b\x0c\r\x1c\x1d\x1e\x1f "
    assert chars(r"\$?x") == "$x"
    assert chars(r"a*") is None  # may match empty: always tried
    assert chars(r"") is None
    assert "k" in chars("(?i:\u212a)")  # the Kelvin sign matches k when case is ignored
    assert chars(r"(a)\1") == "a"
