"""Compiled templates kept between builds: the built-in theme's per user (see
:mod:`raypress.publish.user_cache`), so that even a cold build does not compile them.

Compiling the theme's templates was most of a one-post build after the imports (about
170 ms). The theme's compiled code is kept in ``<user cache>/jinja-<key>/``, the site's own
templates' in the project's ``.raypress-cache/jinja-<key>/`` (so the per-user folder holds
one theme per ``key``), the theme's there too where the per-user folder cannot be used.
``key`` digests raypress's, Jinja's and Python's versions and the Environment's settings
that the generated code depends on: delimiters, whitespace rules, autoescape, the filters
and tests and what each is passed. A file is found by the template's name and path and
holds a checksum of its source: a template edited since is compiled again (Jinja's
``Bucket``). Jinja folds filters of constants into the code it generates, so a filter
whose result depends on the site must stop that (see ``render._site_filter``).

A file is unpickled and executed: it is read only under the rules of ``user_cache``
(this user's, writable by nobody else, no links), and a file that is not whole (pickle and
marshal raise many kinds of errors) or holds no code is ignored: the template is compiled.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from types import CodeType

import jinja2
from jinja2.bccache import Bucket

from raypress import __version__
from raypress.publish.user_cache import private_folder, read_private, user_folder, write_private

CODE_SETTINGS = (  # Environment attributes that the compiled code depends on
    "block_start_string",
    "block_end_string",
    "variable_start_string",
    "variable_end_string",
    "comment_start_string",
    "comment_end_string",
    "line_statement_prefix",
    "line_comment_prefix",
    "trim_blocks",
    "lstrip_blocks",
    "newline_sequence",
    "keep_trailing_newline",
    "autoescape",
    "optimized",
    "finalize",
    "is_async",
)


def code_key(env: jinja2.Environment) -> str:
    """What compiled code of ``env`` depends on beyond the template's source."""
    parts = [__version__, jinja2.__version__, sys.implementation.cache_tag or "", sys.version]
    parts += [f"{name}={_setting(getattr(env, name, None))}" for name in CODE_SETTINGS]
    for functions in (env.filters, env.tests):  # a call passes the context or not
        parts += [f"{name}:{_passes(f)}" for name, f in sorted(functions.items())]
    parts += [",".join(sorted(env.extensions))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _passes(function: object) -> str:
    """What Jinja passes to a filter or test first (context, environment…), which the
    compiled call depends on (``jinja2.pass_context`` and its kin set this attribute)."""
    return str(getattr(function, "jinja_pass_arg", None))


def _setting(value: object) -> str:
    """A setting as text that is the same in every process (a function by its name)."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
    return repr(value)


class TemplateCache(jinja2.BytecodeCache):
    """Jinja's compiled templates in private folders: the built-in theme's in ``theme``
    (per user), the site's own in ``site`` (the project's); None: not cached."""

    def __init__(self, theme_path: Path, theme: Path | None, site: Path | None):
        self.theme_path = str(theme_path) + os.sep
        self.folders = {"theme": theme, "site": site}

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        kind = "theme" if filename and filename.startswith(self.theme_path) else "site"
        return f"{kind}-{super().get_cache_key(name, filename)}"

    def _file(self, bucket: Bucket) -> Path | None:
        folder = self.folders[bucket.key.partition("-")[0]]
        return folder / f"{bucket.key}.cache" if folder else None

    def load_bytecode(self, bucket: Bucket) -> None:
        path = self._file(bucket)
        data = read_private(path) if path else None
        if data is None:
            return  # not cached yet (or not to be trusted): compiled
        try:
            bucket.bytecode_from_string(data)
        except Exception:  # not whole: pickle and marshal raise many kinds of errors
            bucket.reset()
        if not isinstance(bucket.code, CodeType):
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        path = self._file(bucket)
        if path is not None:
            write_private(path, bucket.bytecode_to_string())


def template_cache(
    env: jinja2.Environment, theme_path: Path, project_cache: Path
) -> TemplateCache | None:
    """The cache of ``env``'s compiled templates: the theme's (under ``theme_path``) in the
    per-user folder, the site's own in the project's ``.raypress-cache``, the theme's there
    too where the per-user folder cannot be used; None where neither can."""
    key = code_key(env)
    user = user_folder(f"jinja-{key}")
    project = private_folder(project_cache / f"jinja-{key}")
    if user is None and project is None:
        return None
    return TemplateCache(theme_path, user or project, project)
