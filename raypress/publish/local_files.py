"""Files beside a post: relative images and links published next to its page.

A post refers to ``![plot](plot.png)`` or ``[the data](data.csv)`` relative to its own
file, as an editor's preview shows it; that works for a page bundle
(``posts/2025-11-01-slug/index.md`` with its files beside it) and for a plain post file
alike. Each such file is copied to the same place relative to the post's URL, so the
relative link keeps working on the site. An image that does not exist, or that lies
outside the post's folder, is a problem naming the post's line; a link to a file that
does not exist is left alone (it may point at a page).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from raypress.config import Config
from raypress.errors import Problem
from raypress.paths import inside
from raypress.publish.posts import POST_SUFFIXES, Post
from raypress.publish.site_writer import StaticFile


@dataclass(frozen=True, slots=True)
class LocalRef:
    """A relative reference of a post's body to a file: its path (relative to the post's
    folder, ``/``-separated), the post line it is on, and whether it must exist."""

    path: str
    line: int
    required: bool  # an image: a missing file is an error


def local_reference(url: str) -> str | None:
    """The relative file path ``url`` refers to, or None for anything else (a full URL, a
    site-absolute path, an anchor, a folder such as ``../other-post/``, a post file)."""
    if not url or url.startswith(("/", "#", "?", "\\")):
        return None
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path or parts.path.endswith("/"):
        return None
    path = unquote(parts.path)
    name = posixpath.basename(path)
    if "." not in name.strip(".") or name.lower().endswith(POST_SUFFIXES):
        return None
    return path


def local_files(
    posts: list[Post], references: dict[str, tuple[LocalRef, ...]], config: Config
) -> tuple[list[StaticFile], list[Problem]]:
    """The files to publish beside each post's page (by post source path: its references),
    and a problem for each image that is missing or outside the post's folder."""
    files: dict[str, StaticFile] = {}
    problems: list[Problem] = []
    root = config.root.resolve()
    for post in posts:
        refs = references.get(post.source, ())
        if not refs:
            continue
        folder = (config.root / post.source).parent
        real_folder = folder.resolve()
        page_folder = posixpath.dirname(post.output_file)
        for ref in refs:
            relative = posixpath.normpath(ref.path)
            source = folder / relative
            escapes = relative.startswith("../") or relative == ".."
            real = source.resolve()
            if escapes or not inside(real, real_folder) or not inside(real, root):
                if ref.required:
                    problems.append(
                        Problem(
                            post.source,
                            ref.line,
                            f"image {ref.path!r} is outside the post's folder",
                            "put it beside the post (a page bundle: posts/DATE-slug/index.md "
                            "and its files), or in static/ and link it as /name.png",
                        )
                    )
                continue
            if not source.is_file():
                if ref.required:
                    problems.append(_missing(post, ref, source, config.root))
                continue
            target = posixpath.join(page_folder, relative) if page_folder else relative
            taken = files.setdefault(target, StaticFile(source, target))
            if taken.source != source:
                problems.append(
                    Problem(
                        post.source,
                        ref.line,
                        f"{ref.path!r} would be published as /{target}, which another post's "
                        f"file ({taken.source.relative_to(config.root).as_posix()}) already is",
                        "rename one of the two files",
                    )
                )
    return list(files.values()), problems


def _missing(post: Post, ref: LocalRef, source: Path, root: Path) -> Problem:
    try:
        shown = source.relative_to(root).as_posix()
    except ValueError:
        shown = str(source)
    return Problem(
        post.source,
        ref.line,
        f"image {ref.path!r} not found (looked for {shown})",
        "image paths are relative to the post's file",
    )
