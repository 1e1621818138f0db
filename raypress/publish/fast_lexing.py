"""Pygments' RegexLexers, driven faster, to exactly the same tokens.

Design note. A Pygments ``RegexLexer`` state is a list of rules; at every position the
lexer tries each rule's regex in turn, in Python, until one matches. Lexing dominates a
cold build (the Python lexer's root state has about 60 rules, and the common tokens, a
space or an operator, only match after 30 to 40 of them failed). This module drives the
same rules with two changes that cannot change the result:

- A state's rules become one regex, ``(rule0)|(rule1)|...``. Python's ``re`` tries the
  alternatives of an alternation in order and takes the first that matches, which is
  exactly the lexer's "first rule that matches"; ``match.lastindex`` is the wrapping group
  of the matching rule (it closes last). Each rule keeps its own groups after its wrapper,
  back-references shifted accordingly.
- Before matching, the character at the position picks a smaller alternation: a rule
  whose regex cannot match the empty string and cannot start with that character (its
  FIRST set, computed from ``re``'s own parse of the pattern) is left out. The rules kept
  stay in their order, so the first that matches is the same. Characters outside ASCII,
  and the end of the text, use the whole alternation.

A rule whose action is a callback (``bygroups``, ``using``, ...) gets a match from its own
compiled regex at the same position (the same match, one regex call more), so callbacks
see exactly what Pygments gives them. State changes are Pygments' code, copied. A state
whose rules cannot be combined (named groups, conditional groups, differing flags) is run
by Pygments' own loop; lexers that are not plain RegexLexers are not touched at all.
``tests/test_fast_lexing.py`` compares both drivers token by token. Setting the
alternations up costs about 0.1 s for the Python lexer, so a process lexes its first
WARM_UP characters with Pygments' loop and only then switches.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterator
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from pygments.lexer import Lexer, RegexLexer
from pygments.token import Error, Whitespace, _TokenType

WARM_UP = 32_000  # characters lexed by Pygments' loop before the fast path is set up
_ASCII = frozenset(range(128))
_LEADING_FLAGS = re.compile(r"\(\?([imsx]+)\)")
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")

Rule = tuple[Any, Any, Any, bool]  # action, new state, the rule's own match, plain token
# a regex and which rule each wrapping group is, or a rule's own regex and that rule
Chunk = tuple[Callable[[str, int], re.Match[str] | None], dict[int, Rule] | None, Rule | None]
Alternation = tuple[Chunk, ...]


def tokens_of(lexer: Lexer, text: str) -> Iterator[tuple[Any, str]]:
    """``lexer.get_tokens(text)``: the same (token type, value) pairs, faster for plain
    RegexLexers."""
    states = _combined_states(type(lexer)) if _is_plain_regex_lexer(lexer) else None
    if states is None or not states.worth_it(len(text)):
        yield from lexer.get_tokens(text)
        return
    text = lexer._preprocess_lexer_input(text)
    stream = ((kind, value) for _, kind, value in _unprocessed(lexer, states, text))
    if lexer.filters:
        from pygments.filter import apply_filters

        stream = apply_filters(stream, lexer.filters, lexer)
    yield from stream


# Python as blog posts show it: the common states and characters of Pygments' lexer
_PYTHON_SAMPLE = '''import numpy as np
from collections import defaultdict  # a comment

@decorator(key="value")
class Model(Base):
    """Docstring with {braces}."""

    def method(self, a: int, *args, b=2.5e-3, **kw) -> list[str]:
        x = [i ** 2 for i in range(10) if i % 2 == 0 and not a]
        y = {"k": (1, 2), 'q': None, f"f{x!r:>10}": b'bytes'}
        try:
            return await self.call(x, y) or lambda z: z | 0x1F
        except (ValueError, KeyError) as exc:
            raise RuntimeError(f"failed: {exc}") from exc
        finally:
            print(r"raw\n", end="")
    >>> 1 + 1
    2
'''


def prepare(language: str) -> None:
    """Set the fast path up for ``language`` now, in this process (a process about to
    fork workers that will lex a lot: they inherit it instead of each warming up)."""
    from raypress.publish.highlight import lexer_for

    lexer = lexer_for(language)
    if not _is_plain_regex_lexer(lexer):
        return
    states = _combined_states(type(lexer))
    states.seen = max(states.seen, WARM_UP + 1)
    if language in ("python", "py", "python3"):
        for _ in _unprocessed(lexer, states, lexer._preprocess_lexer_input(_PYTHON_SAMPLE)):
            pass


def _is_plain_regex_lexer(lexer: Lexer) -> bool:
    method = type(lexer).get_tokens_unprocessed
    return isinstance(lexer, RegexLexer) and method is RegexLexer.get_tokens_unprocessed


@functools.lru_cache(maxsize=32)
def _combined_states(lexer_class: type) -> dict[str, _State | None]:
    flags = lexer_class.flags | re.UNICODE
    return _States({name: (rules, flags) for name, rules in lexer_class._tokens.items()})


class _States(dict):
    """State name -> its _State (None: Pygments' loop), made the first time it is entered."""

    def __init__(self, definitions: dict[str, tuple[list, int]]):
        super().__init__()
        self.definitions = definitions
        self.seen = 0  # characters this process has lexed with this lexer

    def worth_it(self, characters: int) -> bool:
        """Whether to take the fast path: not for the first WARM_UP characters a process
        lexes (setting the alternations up costs about what lexing that much saves, so
        a build of one post does not pay for it)."""
        self.seen += characters
        return self.seen > WARM_UP

    def __missing__(self, name: str) -> _State | None:
        rules, flags = self.definitions[name]
        state = self[name] = _State.of(rules, flags)
        return state


class _State(dict):
    """First character -> the alternation of the rules that may match there; compiled
    the first time that character is met (compiling is most of the set-up cost)."""

    def __init__(self, prepared: list[tuple[str, int, Rule, frozenset[int] | None]], flags: int):
        super().__init__()
        self.prepared = prepared
        self.flags = flags
        self.everything = tuple(range(len(prepared)))
        self.by_group: dict[str, tuple[int, ...]] = {}
        for group, members in _CHARACTER_GROUPS.items():
            self.by_group[group] = tuple(
                i for i, rule in enumerate(prepared) if rule[3] is None or rule[3] & members
            )
        self.compiled: dict[tuple[int, ...], Alternation] = {}

    @classmethod
    def of(cls, rules: list, flags: int) -> _State | None:
        prepared = []
        for rexmatch, action, new_state in rules:
            pattern = getattr(rexmatch, "__self__", None)
            if not isinstance(pattern, re.Pattern):
                return None
            text = _scoped(pattern, flags)
            if text is None or pattern.groupindex:
                return None
            entry = (action, new_state, rexmatch, type(action) is _TokenType)
            prepared.append((text, pattern.groups, entry, _first_characters(text, flags)))
        return cls(prepared, flags) if prepared else None

    def __missing__(self, character: str) -> Alternation | None:
        members = self.by_group.get(_GROUP_OF.get(character, ""), self.everything)
        alternation = self.compiled.get(members)
        if alternation is None:
            alternation = self.compiled[members] = self._compile(members)
        self[character] = alternation
        return alternation

    def _compile(self, members: tuple[int, ...]) -> Alternation | None:
        """The rules ``members`` as chunks tried in order: runs of rules combined into
        one regex, and alone each rule with a large non-ASCII character class (Pygments
        has compiled it already; compiling it into every alternation would cost more)."""
        chunks: list[Chunk] = []
        run: list[int] = []
        for index in (*members, None):
            alone = index is not None and _expensive(self.prepared[index][0])
            if run and (index is None or alone):
                chunk = self._combine(run)
                if chunk is None:
                    return None  # these rules do not combine: Pygments' own loop runs them
                chunks.append(chunk)
                run = []
            if alone:
                entry = self.prepared[index][2]
                chunks.append((entry[2], None, entry))
            elif index is not None:
                run.append(index)
        return tuple(chunks)

    def _combine(self, members: list[int]) -> Chunk | None:
        parts: list[str] = []
        table: dict[int, Rule] = {}
        group = 1
        for index in members:
            text, groups, entry, _ = self.prepared[index]
            parts.append(f"({_shift_backreferences(text, group)})")
            table[group] = entry
            group += 1 + groups
        try:
            return re.compile("|".join(parts), self.flags).match, table, None
        except (re.error, RecursionError, OverflowError):
            return None


def _expensive(text: str) -> bool:
    """Whether a pattern is costly to compile: a large non-ASCII character class."""
    return len(text) > 500 and sum(1 for char in text if ord(char) > 127) > 100


def _character_groups() -> dict[str, frozenset[int]]:
    """Characters that share an alternation: letters and ``_`` (names), digits, and every
    other ASCII character alone. Fewer alternations mean fewer compilations; a group's
    alternation holds every rule that may start with any of its characters."""
    groups = {"name": frozenset(map(ord, "_" + string.ascii_letters))}
    groups["digit"] = frozenset(range(ord("0"), ord("9") + 1))
    for code in _ASCII - groups["name"] - groups["digit"]:
        groups[chr(code)] = frozenset({code})
    return groups


_CHARACTER_GROUPS = _character_groups()
_GROUP_OF = {chr(c): name for name, members in _CHARACTER_GROUPS.items() for c in members}


def _scoped(pattern: re.Pattern[str], flags: int) -> str | None:
    """The rule's pattern with leading global flags ``(?i)`` made scoped ``(?i:...)``, so
    it can sit inside an alternation; None when its flags differ otherwise."""
    text = pattern.pattern
    leading = _LEADING_FLAGS.match(text)
    if leading:
        text = f"(?{leading[1]}:{text[leading.end() :]})"
    elif pattern.flags != flags and text:  # an empty pattern matches whatever its flags
        return None
    if _BACKREFERENCE.search(text) and _shift_backreferences(text, 0) is None:
        return None
    return text


def _shift_backreferences(text: str, shift: int) -> str | None:
    """``\\N`` -> ``(?:\\N+shift)``; None for what cannot be shifted safely (two-digit or
    named references, conditional groups, a digit escape inside a character class)."""
    if not _BACKREFERENCE.search(text):
        return text
    out: list[str] = []
    i, in_class = 0, False
    while i < len(text):
        char = text[i]
        if char == "\\":
            following = text[i + 1 : i + 2]
            if following.isdigit() and following != "0":
                if in_class or text[i + 2 : i + 3].isdigit():
                    return None
                out.append(f"(?:\\{int(following) + shift})")
            else:
                out.append(text[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            i += 1
            for special in ("^", "]"):
                if text[i : i + 1] == special:
                    out.append(special)
                    i += 1
            continue
        if char == "]" and in_class:
            in_class = False
        elif char == "(" and not in_class and text[i + 1 : i + 3] in ("?P", "?("):
            return None
        out.append(char)
        i += 1
    return "".join(out)


class _Unknown(Exception):
    """A regex construct the FIRST-set computation does not know: assume anything."""


def _category_members(expression: str) -> frozenset[int]:
    return frozenset(code for code in _ASCII if re.match(expression, chr(code)))


_CATEGORIES = {
    sre.CATEGORY_DIGIT: _category_members(r"\d"),
    sre.CATEGORY_NOT_DIGIT: _category_members(r"\D"),
    sre.CATEGORY_SPACE: _category_members(r"\s"),
    sre.CATEGORY_NOT_SPACE: _category_members(r"\S"),
    sre.CATEGORY_WORD: _category_members(r"\w"),
    sre.CATEGORY_NOT_WORD: _category_members(r"\W"),
    sre.CATEGORY_LINEBREAK: frozenset({10}),
    sre.CATEGORY_NOT_LINEBREAK: _ASCII - {10},
}


def _first_characters(text: str, flags: int) -> frozenset[int] | None:
    """The ASCII characters a match of ``text`` can start with; None when it can match
    the empty string, or uses a construct this does not know (the rule is always tried)."""
    try:
        parsed = sre_parse.parse(text, flags)
        first, nullable = _first_of_sequence(parsed.data, bool(parsed.state.flags & re.I))
    except (_Unknown, re.error, RecursionError):
        return None
    return None if nullable else frozenset(first)


def _first_of_sequence(items: list, ignore_case: bool) -> tuple[set[int], bool]:
    first: set[int] = set()
    for op, argument in items:
        chars, nullable = _first_of_item(op, argument, ignore_case)
        first |= chars
        if not nullable:
            return first, False
    return first, True


def _first_of_item(op: Any, argument: Any, ignore_case: bool) -> tuple[set[int], bool]:
    if op is sre.LITERAL:
        return _cased({argument}, ignore_case), False
    if op is sre.NOT_LITERAL:
        excluded = _cased({argument}, ignore_case) if argument < 128 else set()
        return _ASCII - excluded, False
    if op is sre.ANY:
        return set(_ASCII), False
    if op is sre.IN:
        return _first_of_class(argument, ignore_case), False
    if op is sre.AT or op is sre.ASSERT or op is sre.ASSERT_NOT:
        return set(), True  # zero width: the next item consumes the first character
    if op is sre.BRANCH:
        first: set[int] = set()
        nullable = False
        for alternative in argument[1]:
            chars, empty = _first_of_sequence(alternative, ignore_case)
            first |= chars
            nullable = nullable or empty
        return first, nullable
    if op is sre.SUBPATTERN:
        _, add, remove, items = argument
        case = (ignore_case or bool(add & re.I)) and not remove & re.I
        return _first_of_sequence(items, case)
    if op is sre.ATOMIC_GROUP:
        return _first_of_sequence(argument, ignore_case)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        minimum, _, items = argument
        chars, nullable = _first_of_sequence(items, ignore_case)
        return chars, nullable or minimum == 0
    raise _Unknown(op)


def _first_of_class(items: list, ignore_case: bool) -> set[int]:
    members: set[int] = set()
    negate = beyond_ascii = False
    for op, argument in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            members |= {argument} & _ASCII
            beyond_ascii = beyond_ascii or argument >= 128
        elif op is sre.RANGE:
            members |= set(range(argument[0], min(argument[1], 127) + 1))
            beyond_ascii = beyond_ascii or argument[1] >= 128
        elif op is sre.CATEGORY and argument in _CATEGORIES:
            members |= _CATEGORIES[argument]
        else:
            raise _Unknown(op)
    if not negate:
        return _cased(members | ({128} if beyond_ascii else set()), ignore_case)
    # [^...]: a character is excluded only when neither it nor its other case is listed
    return {code for code in _ASCII if not _cased({code}, ignore_case) & members}


def _cased(codes: set[int], ignore_case: bool) -> set[int]:
    """The ASCII characters that ``codes`` match, case-insensitively if asked. Some
    non-ASCII letters match ASCII ones then (the Kelvin sign matches ``k``): any non-ASCII
    code counts as every ASCII letter, which is more than needed and so safe."""
    ascii_codes = codes & _ASCII
    if not ignore_case:
        return set(ascii_codes)
    both = set(ascii_codes)
    for code in ascii_codes:
        both |= {ord(chr(code).lower()), ord(chr(code).upper())}
    if codes - _ASCII:
        both |= _CATEGORIES[sre.CATEGORY_WORD] - _CATEGORIES[sre.CATEGORY_DIGIT] - {ord("_")}
    return both


def _unprocessed(
    lexer: RegexLexer, states: dict[str, _State | None], text: str
) -> Iterator[tuple[int, Any, str]]:
    """RegexLexer.get_tokens_unprocessed(text) with the alternations of ``states``."""
    pos = 0
    tokendefs = lexer._tokens
    statestack = ["root"]
    statetokens = tokendefs["root"]
    state = states["root"]
    while 1:
        matched = False
        new_state = None
        alternation = None if state is None else state[text[pos : pos + 1]]
        if alternation is not None:
            m = None
            for match, table, alone in alternation:  # noqa: B007 - the matching chunk's
                m = match(text, pos)
                if m:
                    break
            if m:
                matched = True
                if alone is None:
                    group = m.lastindex
                    action, new_state, own, plain = table[group]
                    if plain:
                        yield pos, action, m.group(group)
                        pos = m.end(group)
                    else:
                        m = own(text, pos)  # the callback sees the rule's own match
                        if action is not None:
                            yield from action(lexer, m)
                        pos = m.end()
                else:
                    action, new_state, own, plain = alone
                    if action is not None:
                        if plain:
                            yield pos, action, m.group()
                        else:
                            yield from action(lexer, m)
                    pos = m.end()
        else:
            for rexmatch, action, new_state in statetokens:  # noqa: B007 - used below
                m = rexmatch(text, pos)
                if m:
                    matched = True
                    if action is not None:
                        if type(action) is _TokenType:
                            yield pos, action, m.group()
                        else:
                            yield from action(lexer, m)
                    pos = m.end()
                    break
        if matched:
            if new_state is not None:  # Pygments' state transition, unchanged
                if isinstance(new_state, tuple):
                    for name in new_state:
                        if name == "#pop":
                            if len(statestack) > 1:
                                statestack.pop()
                        elif name == "#push":
                            statestack.append(statestack[-1])
                        else:
                            statestack.append(name)
                elif isinstance(new_state, int):
                    if abs(new_state) >= len(statestack):
                        del statestack[1:]
                    else:
                        del statestack[new_state:]
                elif new_state == "#push":
                    statestack.append(statestack[-1])
                else:
                    raise AssertionError(f"wrong state def: {new_state!r}")
                statetokens = tokendefs[statestack[-1]]
                state = states[statestack[-1]]
            continue
        # no rule matched: Pygments' recovery, unchanged
        if pos >= len(text):
            break
        if text[pos] == "\n":
            statestack = ["root"]
            statetokens = tokendefs["root"]
            state = states["root"]
            yield pos, Whitespace, "\n"
            pos += 1
            continue
        yield pos, Error, text[pos]
        pos += 1
