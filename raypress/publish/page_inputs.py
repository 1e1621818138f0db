"""What a rendered page was made from, as one digest: a page whose digest did not change
since the last build is not rendered again (its file in the output folder is kept).

Design note. A page's bytes are a function of its template (and every template it may
include), the values the template receives, the configuration and raypress's own code.
Rather than a hand-written list of what each kind of page shows, the digest is taken of
the data itself, so a page added to the theme, or a field added to a view, is tracked
without further work:

- ``base``: every file of the theme (the site's ``templates/`` and the built-in theme,
  names and bytes), the configuration, raypress's version and code, the versions of
  Jinja2 and MarkupSafe, the template globals (``site``, ...; a function by its name)
  and the size and mtime of every file under ``static/`` (a template helper may read
  them). A template, configuration or static edit changes every page's digest. Anything
  else a template reads (a file a helper function opens, the clock) is not seen: pass it
  in the context or add it here.
- the page: its template name, its URL and every value of its context, encoded
  recursively (lists, tuples, dicts, dataclasses, plain values).
- A post view counts as its own fields (its title, content, dates, tags, execution,
  ``extra``, ...: everything but its links to other posts). A view given to the template
  by name (``post`` on a post's page) counts the own fields of every view it links to as
  well (``previous``, ``next``, and any field holding a post view or a list of them, such
  as related posts); views inside lists (the posts of an index or tag page) count their
  own fields only. Links are followed that one step: a template that reads
  ``post.previous.previous.title``, or ``p.next.title`` for the posts of a listing, is
  not tracked for it.

- A view that carries ``inputs`` (what :func:`made_from` gave for it: the post file's
  path and digest, its results, and the little of the build that reaches it) counts as
  that instead of its fields: the view is a function of those, the configuration and
  raypress's code (both in ``base``), so it is not serialised at all. A post's other
  files (its notebook, script and figures) are kept by the same digest (``file_inputs``).

So a prose edit changes the edited post's own digest, and with it the digest of every
page whose context holds that post (its page, the index page, tag and archive pages, the
feed and the timings page that list it) and of its neighbours' pages (they hold it as
``previous`` or ``next``), and of no other page (the sitemap shows URLs and dates only:
its entries do not change). A template that receives something this cannot encode
(an open file, a generator) gets no digest: that page is rendered every time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from raypress import __version__
from raypress.publish.views import PostView

THEME_ASSETS = ("theme", "assets")  # in raypress's code: scripts and styles, no Python
_LEAVES = (str, bytes, int, float, bool, type(None))


class Unencodable(Exception):
    """A context value that has no stable encoding: the page is rendered every time."""


def base_digest(template_folders: Iterable[Path], config: Any, globals_: Mapping) -> str:
    """What every page depends on besides its own context (see the module's note)."""
    digest = hashlib.sha256()
    code = Path(__file__).resolve().parents[1]
    digest.update(repr((__version__, _library_versions(), config)).encode())
    # the theme's assets are copied, never read by a template (and are megabytes)
    walks = [*((f, "", {("assets",)}) for f in template_folders), (code, ".py", {THEME_ASSETS})]
    for folder, suffix, skipped in walks:
        if not folder.is_dir() or "__pycache__" in folder.parts:
            continue
        for parts in _files_under(folder, suffix, skipped):
            path = os.path.join(folder, *parts)  # noqa: PTH118 (os.path: 2x faster here)
            if not os.path.isfile(path):  # noqa: PTH113
                continue
            digest.update(f"\0{'/'.join(parts)}\0".encode())  # str() of a PosixPath
            with open(path, "rb") as f:  # noqa: PTH123
                digest.update(f.read())
    static = getattr(config, "static_path", None)
    if static is not None and static.is_dir():  # a template helper may read these
        for path in sorted(static.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"\0{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    encoder = PageInputs("")
    for name, value in sorted(globals_.items()):
        try:
            digest.update(_pickled((name, encoder.encode(value, views=True))))
        except Unencodable:
            digest.update(os.urandom(16))  # never equal in another build: always render
    return digest.hexdigest()


def _files_under(folder: Path, suffix: str, skipped: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The files under ``folder`` whose names end with ``suffix``, as parts relative to
    it, in the order of sorted ``Path``s; ``__pycache__`` and the ``skipped`` folders
    (parts relative to ``folder``) not entered, nor links to folders."""
    found: list[tuple[str, ...]] = []
    for top, folders, names in os.walk(folder):
        relative = os.path.relpath(top, folder)
        parts = () if relative == "." else tuple(relative.split("/"))
        folders[:] = [d for d in folders if d != "__pycache__" and (*parts, d) not in skipped]
        found += [(*parts, name) for name in names if name.endswith(suffix)]
    return sorted(found)


def _library_versions() -> tuple[str, ...]:
    """Jinja2's version, and MarkupSafe's module file (size, mtime): it has no cheap
    version attribute, and importlib.metadata costs more than the rest of this module."""
    import jinja2
    import markupsafe

    stat = os.stat(markupsafe.__file__)  # noqa: PTH116
    return jinja2.__version__, f"{markupsafe.__file__}:{stat.st_size}:{stat.st_mtime_ns}"


def made_from(post: Any, execution: Any, unexecuted: str | None, future: bool) -> bytes:
    """What a post's view and files are made from besides ``base``: the post file (path
    and digest: the Post and its parsed body follow from them and the configuration),
    its results, why it shows none, and whether it is dated in the future."""
    try:
        encoded = _pickled(execution)
    except Exception:
        encoded = os.urandom(16)  # never equal in another build: always made again
    parts = (post.source, post.digest, encoded, unexecuted, future)
    return hashlib.sha256(_pickled(parts)).digest()


def file_inputs(base: str, path: str, inputs: bytes) -> str:
    """The inputs digest of a file at ``path`` made from a post's ``inputs`` (see
    :func:`made_from`): its notebook, script or a figure."""
    return hashlib.sha256(f"{base}\0{path}\0".encode() + inputs).hexdigest()


class PageInputs:
    """Digests of pages' inputs for one build; post views' own digests computed once."""

    def __init__(self, base: str):
        self.base = base
        self.own: dict[int, bytes] = {}  # id(view) -> digest of its own fields
        self.linked: dict[int, list[PostView]] = {}  # id(view) -> the views it links to

    def digest(self, template: str, url: str, context: Mapping[str, Any]) -> str:
        """The digest of a page rendered from ``template`` at ``url`` with ``context``;
        "" when a value cannot be encoded (render the page every time)."""
        try:
            encoded = [(name, self._named(value)) for name, value in context.items()]
        except Unencodable:
            return ""
        return hashlib.sha256(_pickled((self.base, template, url, encoded))).hexdigest()

    def _named(self, value: Any) -> Any:
        if isinstance(value, PostView):
            return ("view", self._own(value), self._links(value))
        return self.encode(value, views=True)

    def encode(self, value: Any, views: bool = False, depth: int = 0) -> Any:
        """A picklable stand-in for ``value`` that depends on its value, not on which
        objects it is made of; post views as in the module's note (``views``: allowed)."""
        if depth > 50:
            raise Unencodable("nested too deeply")
        if isinstance(value, _LEAVES):
            return (type(value).__name__, value)  # Markup and str render differently
        if isinstance(value, PostView):
            if not views:
                raise Unencodable("a post view where only plain data was expected")
            return ("view", self._own(value))
        inner = depth + 1
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, [self.encode(v, views, inner) for v in value])
        if isinstance(value, dict):
            pairs = [
                (self.encode(k, views, inner), self.encode(v, views, inner))
                for k, v in value.items()
            ]
            return ("dict", pairs)
        if isinstance(value, (set, frozenset)):
            items = sorted((self.encode(v, views, inner) for v in value), key=repr)
            return (type(value).__name__, items)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = [
                (f.name, self.encode(getattr(value, f.name), views, inner))
                for f in dataclasses.fields(value)
            ]
            return (type(value).__qualname__, fields)
        if callable(value) and hasattr(value, "__qualname__"):  # its code is in the base
            return ("code", getattr(value, "__module__", ""), value.__qualname__)
        try:  # dates, times, time zones, decimals: their pickle is their value
            return ("value", type(value).__qualname__, _pickled(value))
        except Exception as exc:
            raise Unencodable(type(value).__name__) from exc

    def _links(self, view: PostView) -> tuple[bytes, ...]:
        """The own digests of the views ``view`` links to."""
        self._own(view)
        return tuple(self._own(v) for v in self.linked[id(view)])

    def _own(self, view: PostView) -> bytes:
        """The digest of a view's own fields (its links stand as the word "link"); the
        views it links to are remembered in ``linked``."""
        found = self.own.get(id(view))
        if found is not None:
            return found
        values: list[Any] = []
        linked: list[PostView] = []
        shape: list[tuple[str, int]] = []  # which fields link to how many views
        # with ``inputs``, only the fields that may hold views matter (by their type)
        names = _link_fields(type(view)) if view.inputs else _field_names(type(view))
        for name in names:
            if name == "inputs":
                continue
            value = getattr(view, name)
            if isinstance(value, PostView):
                linked.append(value)
                shape.append((name, 1))
                value = "link"
            elif _holds_views(value):
                linked.extend(value)
                shape.append((name, len(value)))
                value = "link"
            values.append(value)
        self.linked[id(view)] = linked
        if view.inputs:  # see made_from: the view follows from these and ``base``
            payload = b"made from\0" + view.inputs + _pickled(shape)
        else:
            try:  # plain data (strings, dates, lists of terms...) pickles as it is: fast
                payload = _pickled(values)
            except Exception:
                payload = _pickled([self.encode(v) for v in values])  # or Unencodable
        found = self.own[id(view)] = hashlib.sha256(payload).digest()
        return found


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _link_fields(cls: type) -> tuple[str, ...]:
    """The fields of a view class whose declared type may hold a post view."""
    return tuple(
        f.name for f in dataclasses.fields(cls) if re.search(r"\bPostView\b|\bAny\b", str(f.type))
    )


def _holds_views(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(v, PostView) for v in value)
    )


def _pickled(value: Any) -> bytes:
    """Pickle without the memo, so that equal values give equal bytes whatever objects
    they share (the values encoded here hold no cycles)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True
    pickler.dump(value)
    return buffer.getvalue()
