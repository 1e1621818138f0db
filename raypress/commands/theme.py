"""``raypress theme list`` and ``raypress theme eject [NAME ...]``: the built-in theme's files,
and copies of them in the site's ``templates/`` to edit (which then override the theme's)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from raypress.config import Config
from raypress.errors import SourceError
from raypress.paths import display_path
from raypress.theme import THEME_PATH


@dataclass(frozen=True, slots=True)
class ThemeFile:
    """One file of the built-in theme, and whether the site overrides it."""

    name: str  # relative to the theme, e.g. "partials/footer.html"
    overridden: bool


def theme_files(config: Config) -> list[ThemeFile]:
    """Every file of the built-in theme (templates and assets), sorted by name."""
    names = sorted(
        p.relative_to(THEME_PATH).as_posix()
        for p in THEME_PATH.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )
    return [ThemeFile(n, (config.templates_path / n).exists()) for n in names]


def select(config: Config, wanted: list[str]) -> list[str]:
    """The theme files named by ``wanted`` (all when empty): a file (``post.html``), a
    template without its extension (``post``) or a folder (``partials``, ``assets``).
    Raises SourceError listing the theme's files for a name it does not have."""
    names = [f.name for f in theme_files(config)]
    if not wanted:
        return names
    chosen: list[str] = []
    for item in wanted:
        item = item.strip("/")
        found = [
            n
            for n in names
            if n in (item, f"{item}.html") or (n.startswith(f"{item}/") and item != "")
        ]
        if not found:
            raise SourceError(
                item,
                None,
                "the built-in theme has no such file",
                f"its files: {', '.join(names)}",
            )
        chosen += [n for n in found if n not in chosen]
    return chosen


def eject(config: Config, names: list[str], force: bool = False) -> list[Path]:
    """Copy the theme files ``names`` into the site's templates folder; the copies' paths.
    Nothing is copied when one of them exists already, unless ``force``."""
    target = config.templates_path
    existing = [n for n in names if (target / n).exists()]
    if existing and not force:
        where = display_path(target, config.root)
        raise SourceError(
            where,
            None,
            f"already has {', '.join(existing)}; nothing was copied",
            "these override the theme already: edit them, or add --force to replace them "
            "with the theme's",
        )
    copied = []
    for name in names:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(THEME_PATH / name, destination)
        copied.append(destination)
    return copied
