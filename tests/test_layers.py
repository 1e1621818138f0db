"""The package layout is the pipeline: every import points down the floors below.

``cli`` → ``commands`` → ``preview`` → ``freeze`` → ``publish`` → ``execution`` → the
bottom (``config``, ``paths``, ``errors``). A module that needs one from a higher floor
is in the wrong folder; lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "raypress"
FLOORS = {
    "cli": 6,
    "__main__": 6,
    "commands": 5,
    "preview": 4,
    "freeze": 3,
    "publish": 2,
    "execution": 1,
    "theme": 0,
    "config": 0,
    "paths": 0,
    "errors": 0,
    "terminal": 0,
    "__init__": 0,
}


def _room(module: str) -> str:
    """``raypress.publish.render`` -> ``publish``; ``raypress.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "raypress":  # from raypress import __version__: the package itself
                found.append((node.lineno, "raypress"))
            elif node.module.startswith("raypress."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("raypress.")]
    return found


def test_every_module_has_a_floor() -> None:
    rooms = {p.stem if p.parent == PACKAGE else p.parent.name for p in PACKAGE.rglob("*.py")}
    assert sorted(rooms - FLOORS.keys()) == []


def test_imports_point_down() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        room = _room(module)
        for line, target in _imports(path):
            target_room = _room(target)
            if target_room != room and FLOORS[target_room] > FLOORS[room]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target}")
    assert upward == []


def test_the_layout_has_no_flat_modules_beyond_the_bottom_floor() -> None:
    flat = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__", "__main__", "cli", "config", "errors", "paths", "terminal"]
