"""Which top-level modules a piece of code imports (read from its syntax, not run)."""

from __future__ import annotations

import ast
import functools
import re

_IMPORT_LINE = re.compile(r"^\s*(?:from\s+([A-Za-z_]\w*)|import\s+([A-Za-z_][\w\s.,]*))", re.M)


@functools.lru_cache(maxsize=4096)
def top_level_imports(source: str) -> frozenset[str]:
    """Top-level module names imported anywhere in ``source``; regex fallback on bad syntax.

    Cached: the executor asks about the same snippets several times per build.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        names = set()
        for match in _IMPORT_LINE.finditer(source):
            if match.group(1):
                names.add(match.group(1))
            else:
                names.update(part.split()[0].split(".")[0] for part in match.group(2).split(","))
        return frozenset(name for name in names if name)
    return frozenset(names_in_tree(tree))


def names_in_tree(tree: ast.AST) -> set[str]:
    """Top-level module names of the import statements in a parsed tree."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@functools.lru_cache(maxsize=4096)
def needs_ray(source: str) -> bool:
    """True when ``source`` imports ``ray`` or uses a name ``ray`` (a later snippet of a
    post that imported it); False for code that does not even parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return "ray" in names_in_tree(tree) or any(
        isinstance(node, ast.Name) and node.id == "ray" for node in ast.walk(tree)
    )
