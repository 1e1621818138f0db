"""``raypress new SITE``: a starter blog; ``raypress new post "Title"``: a dated post file.

The starter's files live in ``starter/`` beside this module (package data): a ``site.toml``,
a ``requirements.txt`` pinning this raypress, a ``.gitignore``, ``snippets/`` (with a note
on what it holds), a GitHub Actions workflow and one example post. The post has no record:
the site's first build runs it, on the machine that builds, and writes its record.
Nothing that exists is overwritten without ``force``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template

from raypress import __version__
from raypress.config import Config
from raypress.errors import SourceError
from raypress.paths import atomic_write, display_path, slugify

STARTER = Path(__file__).resolve().parent / "starter"
WORKFLOW = ".github/workflows/site.yml"


@dataclass(frozen=True, slots=True)
class Created:
    """What ``new`` wrote: the files, relative to the folder they were made in."""

    root: Path
    files: tuple[str, ...]


def starter_files(title: str, today: datetime) -> dict[str, str]:
    """The starter blog's files, by path inside the new site."""
    values = {"title": title.replace('"', '\\"'), "version": __version__}

    def read(name: str) -> str:
        return Template((STARTER / name).read_text(encoding="utf-8")).safe_substitute(values)

    return {
        "site.toml": read("site.toml"),
        "requirements.txt": read("requirements.txt"),
        ".gitignore": read("gitignore"),
        "README.md": read("README.md"),
        f"posts/{today:%Y-%m-%d}-welcome-to-raypress.md": read("post.md"),
        "snippets/README.md": read("snippets-README.md"),
        "templates/README.md": read("templates-README.md"),
        WORKFLOW: read("workflow.yml"),
    }


def new_site(folder: Path, today: datetime, force: bool = False) -> Created:
    """Write a starter blog into ``folder`` (made if missing). Raises SourceError naming the
    files that exist already, unless ``force``; then nothing is written."""
    title = folder.resolve().name.replace("-", " ").replace("_", " ").strip().capitalize()
    files = starter_files(title or "My raypress blog", today)
    if folder.exists() and not folder.is_dir():
        raise SourceError(str(folder), None, "exists and is not a folder")
    existing = [name for name in files if (folder / name).exists()]
    if existing and not force:
        shown = ", ".join(existing)
        raise SourceError(
            str(folder),
            None,
            f"already has {shown}; nothing was written",
            "choose another folder, or add --force to overwrite these files",
        )
    for name, text in files.items():
        atomic_write(folder / name, text.encode("utf-8"), durable=False)
    return Created(folder, tuple(files))


def new_post(config: Config, title: str, when: datetime, force: bool = False) -> Path:
    """Write ``posts/YYYY-MM-DD-slug.md`` with front matter for ``title``; its path."""
    title = " ".join(title.split())
    slug = slugify(title)
    if not slug:
        raise SourceError(
            "new post",
            None,
            f"cannot make a file name from the title {title!r}: it has no letters or digits",
            "give a title with words in it",
        )
    path = config.posts_path / f"{when:%Y-%m-%d}-{slug}.md"
    if path.exists() and not force:
        raise SourceError(
            display_path(path, config.root),
            None,
            "exists already; nothing was written",
            "choose another title, or add --force to overwrite it",
        )
    text = (
        "---\n"
        f"title: {json.dumps(title, ensure_ascii=False)}\n"
        f"date: {when:%Y-%m-%d %H:%M:%S} {_offset(when)}\n"
        "tags: []\n"
        'description: ""\n'
        "---\n\n"
        "The first paragraph is the excerpt on the home page.\n\n"
        "```python\n"
        'print("fenced Python runs when the site is built")\n'
        "```\n"
    )
    atomic_write(path, text.encode("utf-8"), durable=False)
    return path


def _offset(when: datetime) -> str:
    """``+01:00`` (YAML reads it as a time zone; ``+0100`` it would not)."""
    text = when.strftime("%z") or "+0000"
    return f"{text[:3]}:{text[3:5]}"
