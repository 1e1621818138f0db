"""The read stage: every post file found, read (or taken from the build cache when its
bytes did not change), and the posts a build publishes chosen among them. What the
templates offer as layouts is decided here too, without loading Jinja (``check`` reads
posts and never renders)."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

from raypress.config import Config
from raypress.errors import Problem, SourceError
from raypress.paths import display_path
from raypress.publish.markdown import MarkdownSettings
from raypress.publish.parse_cache import BuildCache, post_key
from raypress.publish.posts import Post, find_post_files, read_post
from raypress.theme import THEME_PATH

SYSTEM_TEMPLATES = frozenset(
    {"base", "index", "taxonomy", "terms", "archive", "404", "feed", "sitemap", "timings"}
    | {"search", "robots"}
)


def theme_folders(config: Config) -> list[Path]:
    """Where templates are looked up, first match wins: the site's ``templates/``, which
    overrides any file of the built-in theme by name, then the theme itself."""
    return [config.templates_path, THEME_PATH]


def available_layouts(config: Config) -> frozenset[str]:
    """Template names a post may use as ``layout`` (``<layout>.html`` in the site's
    templates or the built-in theme)."""
    return frozenset(
        p.stem
        for folder in theme_folders(config)
        if folder.is_dir()
        for p in folder.glob("*.html")
        if p.stem not in SYSTEM_TEMPLATES
    )


def markdown_settings(config: Config) -> MarkdownSettings:
    """The Markdown options taken from the configuration."""
    return MarkdownSettings(
        html=config.markdown_html,
        excerpt_separator=config.excerpt_separator,
        toc_min_headings=config.toc_min_headings,
        baseurl=config.baseurl,
        typography=config.typography,
    )


def read_posts(
    config: Config, layouts: frozenset[str], cache: BuildCache
) -> tuple[list[Post], list[Problem]]:
    """Every post under posts/ that reads cleanly, and a problem for each that does not.
    A file whose bytes did not change since the last build is not parsed again."""
    paths, problems = find_post_files(config)
    posts: list[Post] = []
    root = f"{config.root}{os.sep}"
    for path in paths:
        try:
            raw = path.read_bytes()
            name = str(path)  # relative to the root as display_path makes it, without Paths
            source = name[len(root) :] if name.startswith(root) else display_path(path, config.root)
            key = post_key(source, hashlib.sha256(raw).hexdigest(), config, layouts)
            post = cache.get(key)
            if post is None:
                post = read_post(path, config, layouts, raw)
                cache.put(key, post)
            posts.append(post)
        except SourceError as exc:
            problems.append(exc.problem)
        except OSError as exc:
            problems.append(Problem(str(path), None, f"cannot read: {exc.strerror}"))
    return posts, problems


def select_posts(posts: list[Post], config: Config, now: datetime) -> list[Post]:
    """Published posts, newest first; drafts and future posts only when asked for."""
    chosen = [
        p
        for p in posts
        if (config.drafts or not p.draft) and (config.future or not p.is_future(now))
    ]
    return sorted(chosen, key=lambda p: (p.date, p.source), reverse=True)
