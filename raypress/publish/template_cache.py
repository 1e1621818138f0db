"""Compiled templates kept between builds: the built-in theme's per user, like Python's
``__pycache__``, so that even a cold build (no ``.raypress-cache``) does not compile them.

Compiling the theme's templates was most of a one-post build after the imports (about
170 ms). The theme's compiled code is kept in ``$XDG_CACHE_HOME/raypress/jinja-<key>/``
(``~/.cache/…`` when unset), the site's own templates' in the project's
``.raypress-cache/jinja-<key>/`` (so the per-user folder holds one theme per ``key``).
``key`` digests raypress's, Jinja's and Python's versions and the Environment's settings
that the generated code depends on: delimiters, whitespace rules, autoescape, the filters
and tests and what each is passed. A file is found by the template's name and path and
holds a checksum of its source: a template edited since is compiled again (Jinja's
``Bucket``). Jinja folds filters of constants into the code it generates, so a filter
whose result depends on the site must stop that (see ``render._site_filter``).

Threat model: the templates are trusted, but a cache file is unpickled and executed, so
nobody else may be able to write one. A folder is made 0700 and used only if it is a
real folder owned by this user and writable by nobody else; each file is opened without
following links and read only if it is a regular file owned by this user and writable by
nobody else. Anything else, or any error reading or writing (a corrupt file, a read-only
home, a full disk), means the template is simply compiled: the cache never fails a build.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
import tempfile
from pathlib import Path
from types import CodeType

import jinja2
from jinja2.bccache import Bucket

from raypress import __version__

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


def user_cache_root() -> Path | None:
    """``$XDG_CACHE_HOME/raypress`` (an absolute path only, as the XDG spec says), else
    ``~/.cache/raypress``; None where there is no home."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "raypress"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        return None
    return home / ".cache" / "raypress" if home.is_absolute() else None


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


def private_folder(path: Path) -> Path | None:
    """``path``, made if missing (mode 0700), when it is a folder of this user that no one
    else can write to; else None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return path


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
        try:
            fd = os.open(path or "", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return  # not cached yet (or not readable): compiled
        try:
            with os.fdopen(fd, "rb") as f:
                info = os.fstat(f.fileno())
                if (
                    stat.S_ISREG(info.st_mode)
                    and info.st_uid == os.geteuid()
                    and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                ):
                    bucket.load_bytecode(f)
        except Exception:  # a corrupt file: pickle and marshal raise many kinds of errors
            bucket.reset()
        if not isinstance(bucket.code, CodeType):
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        target = self._file(bucket)
        if target is None:
            return
        try:
            fd, name = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
        except OSError:
            return
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                bucket.write_bytecode(f)
            temporary.replace(target)  # whole or not at all, for builds running at once
        except Exception:
            with contextlib.suppress(OSError):
                temporary.unlink()


def template_cache(
    env: jinja2.Environment, theme_path: Path, project_cache: Path
) -> TemplateCache | None:
    """The cache of ``env``'s compiled templates: the theme's (under ``theme_path``) in the
    per-user folder, the site's own in the project's ``.raypress-cache``, the theme's there
    too where the per-user folder cannot be used; None where neither can."""
    key = code_key(env)
    root = user_cache_root()
    user = private_folder(root / f"jinja-{key}") if root else None
    project = private_folder(project_cache / f"jinja-{key}")
    if user is None and project is None:
        return None
    return TemplateCache(theme_path, user or project, project)
