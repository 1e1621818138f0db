"""Run a function on a module right after its first import, in a session.

Standard library only, and not ``importlib.abc``: a meta path finder needs only a
``find_spec`` method, and importing ``importlib.abc`` costs milliseconds in every start.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


def patch_on_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    """Call ``patch(module)`` now if module ``name`` is imported, else once its import ran."""
    module = sys.modules.get(name)
    if module is not None:
        patch(module)
    else:
        sys.meta_path.insert(0, _PatchOnImport(name, patch))


class _PatchOnImport:
    """A meta path finder that finds nothing itself: when ``name`` is imported, it asks
    the other finders for the spec and patches the module once it ran (then leaves)."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.patch = patch

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        patch = self.patch

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec
