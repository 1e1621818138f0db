"""Read ``posts/``: front matter, dates, slugs, permalinks and drafts become a Post.

Jekyll's conventions hold: ``YYYY-MM-DD-slug.md`` gives the date and slug where the
front matter does not, ``layout: post`` is accepted, and a post with no front matter
builds with its title taken from its first heading (or its file name).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from raypress.config import Config
from raypress.errors import Problem, SourceError
from raypress.paths import PathEscapeError, display_path, inside, safe_output_file, slugify
from raypress.publish.front_matter import SplitPost, split_front_matter
from raypress.publish.snippets import MAX_TIMEOUT_S

POST_SUFFIXES = (".md", ".markdown", ".mkdown", ".mkdn", ".mkd", ".ipynb")  # Jekyll's, notebooks
_DATED_NAME = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})-(.+)$")  # 2017-2-5-x.md too, as Jekyll
_DATE_ONLY_NAME = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$")
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
RAY_MODES = ("shared", "isolated")
_STRING_KEYS = ("title", "description", "author", "slug", "permalink", "layout", "excerpt")


@dataclass(frozen=True, slots=True)
class Post:
    """One post as read from disk, before any Markdown is parsed."""

    source: str  # path relative to the project root, e.g. "posts/2025-10-27-x.md"
    digest: str  # sha256 of the file's bytes
    title: str
    date: datetime  # time-zone aware
    updated: datetime | None
    slug: str
    url: str  # site-absolute path without baseurl, e.g. "/2025/10/27/x/"
    output_file: str  # file under the output folder, e.g. "2025/10/27/x/index.html"
    layout: str
    tags: tuple[str, ...]
    categories: tuple[str, ...]
    description: str | None
    author: str | None
    draft: bool
    body: str
    body_line: int  # 1-based line of the file where ``body`` starts
    extra: dict[str, Any] = field(default_factory=dict)  # other front-matter keys
    url_line: int | None = None  # front-matter line of 'permalink' or 'slug', if given
    execute: bool = True  # front matter 'execute: false' shows the code without running it
    timeout: float | None = None  # default per-snippet timeout of this post, seconds
    ray_mode: str = "shared"  # 'isolated': a private Ray cluster for this post
    # front matter 'resources': what the post's session asks of a Ray cluster
    resources: tuple[tuple[str, float], ...] = ()
    resources_line: int | None = None
    excerpt: str | None = None  # front matter 'excerpt' (Markdown), else from the body
    warnings: tuple[str, ...] = ()  # "posts/x.md:3: unknown layout ..." (the post still builds)
    extra_lines: dict[str, int] = field(default_factory=dict)  # front-matter line of each extra

    def is_future(self, now: datetime) -> bool:
        """True when the post is dated after ``now``."""
        return self.date > now


def find_post_files(config: Config) -> tuple[list[Path], list[Problem]]:
    """List the Markdown files under posts/, refusing symlinks that leave the project.

    A folder holding an ``index.md`` is a page bundle: that file is its post, and the other
    Markdown files in it (and below it) are the post's files, not posts of their own.
    A missing posts folder, or one that cannot be read, is a problem: a build that found
    no posts because of a typo must not act as if every post had been removed.
    """
    files: list[Path] = []
    problems: list[Problem] = []
    if not config.posts_path.is_dir():
        what = "is not a folder" if config.posts_path.exists() else "does not exist"
        problems.append(
            Problem(
                config.posts_dir,
                None,
                f"the posts folder {config.posts_dir!r} {what}; nothing was built or removed",
                "check posts_dir in the configuration, or --root",
            )
        )
        return files, problems
    for path in _walk(config.posts_path, config.root, problems):
        if path.suffix.lower() in POST_SUFFIXES:
            files.append(path)
    posts_root = config.posts_path
    bundles = {p.parent for p in files if is_bundle_index(p, posts_root)}

    def in_a_bundle(folder: Path) -> bool:  # ``folder`` or a folder above it is a bundle
        return any(f in bundles for f in (folder, *folder.parents))

    def is_post(path: Path) -> bool:  # a bundle's own index.md, or a file in no bundle
        if is_bundle_index(path, posts_root):
            return not in_a_bundle(path.parent.parent)
        return not in_a_bundle(path.parent)

    kept = [p for p in files if is_post(p)] if bundles else files
    return sorted(kept), problems


def is_bundle_index(path: Path, posts_root: Path) -> bool:
    """True for the ``index.md`` of a page bundle (``posts/2025-11-01-slug/index.md``)."""
    is_index = path.stem == "index" and path.suffix.lower() in POST_SUFFIXES
    return is_index and path.parent != posts_root


def bundle_name(path: Path, posts_root: Path) -> str:
    """The name that gives a post its date and slug: its file name without the suffix, or
    for a page bundle's ``index.md`` the name of its folder."""
    return path.parent.name if is_bundle_index(path, posts_root) else path.stem


def read_post(
    path: Path, config: Config, layouts: frozenset[str], raw: bytes | None = None
) -> Post:
    """Read one post file (or its ``raw`` bytes, already read); raise SourceError naming
    file:line for anything wrong."""
    source = display_path(path, config.root)
    raw = path.read_bytes() if raw is None else raw
    if path.suffix.lower() == ".ipynb":  # outputs saved in it do not count: only its text
        from raypress.publish.notebook_source import notebook_post_text

        raw = notebook_post_text(raw, source).encode()
    if len(raw) > config.max_post_bytes:
        raise SourceError(
            source,
            None,
            f"post is {len(raw):,} bytes, over the limit of {config.max_post_bytes:,}",
            "split it, or raise max_post_bytes in the configuration",
        )
    text = _decode(raw, source)
    split = split_front_matter(text, source)
    return _make_post(path, source, hashlib.sha256(raw).hexdigest(), split, config, layouts)


def _decode(raw: bytes, source: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SourceError(
            source,
            line,
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8",
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _make_post(
    path: Path, source: str, digest: str, split: SplitPost, config: Config, layouts: frozenset[str]
) -> Post:
    data = dict(split.data)
    lines = split.key_lines

    def line_of(key: str) -> int:
        return lines.get(key, 1)

    for key in _STRING_KEYS:
        value = data.get(key)
        if value is not None and not isinstance(value, str | int | float):
            raise SourceError(source, line_of(key), f"'{key}' must be text, not {_kind(value)}")
    stem = bundle_name(path, config.posts_path)
    name_match = _DATED_NAME.match(stem)
    body, body_line = split.body, split.body_line
    title = _text(data.pop("title", None))
    if not title:
        title, body, body_line = _title_from_body(body, body_line, stem, name_match)

    zone = config.zone
    date_only = _DATE_ONLY_NAME.match(stem)
    if date_only and not _text(data.get("slug")):
        raise SourceError(
            source,
            1,
            "the file name has a date but no slug",
            f"name it {stem}-some-title{path.suffix}, or add 'slug:' to the front matter",
        )
    if "date" in data:
        when = _parse_date(data.pop("date"), zone, source, line_of("date"))
    elif name_match or date_only:
        when = _name_date(stem.split("-", 3)[:3], zone, source)
    else:
        raise SourceError(
            source,
            1,
            "missing date",
            "add 'date: YYYY-MM-DD' to the front matter or name the file YYYY-MM-DD-slug.md",
        )
    updated = data.pop("updated", None)
    if updated is not None:
        updated = _parse_date(updated, zone, source, line_of("updated"))

    # Jekyll's data["slug"]: the front matter's, else the file name's (trailing dots cut);
    # URLs use it slugified: :slug in Jekyll's default mode, :title in its pretty mode
    given_slug = _text(data.pop("slug", None))
    if given_slug and ("/" in given_slug or "\\" in given_slug or given_slug in (".", "..")):
        raise SourceError(
            source,
            line_of("slug"),
            f"slug {given_slug!r} is not one path segment",
            "a slug is one path segment; use 'permalink' for a full path",
        )
    raw_slug = (given_slug or (name_match.group(4) if name_match else stem)).rstrip(".")
    slug = slugify(raw_slug)
    if not slug:
        where = ("slug", line_of("slug")) if given_slug else ("the file name", 1)
        raise SourceError(
            source,
            where[1],
            f"cannot derive a slug from {where[0]} {raw_slug!r}: it has no letters or digits",
            "add 'slug: some-title' to the front matter",
        )

    warnings: list[str] = []
    layout = _text(data.pop("layout", None)) or "post"
    if layout not in layouts:
        available = ", ".join(sorted(layouts)) or "none"
        warnings.append(
            f"{source}:{line_of('layout')}: unknown layout {layout!r}; using 'post' "
            f"(available layouts: {available}; add templates/{layout}.html to use it)"
        )
        layout = "post"
    tags = _both_terms(data, "tags", "tag", source, line_of)
    categories = _both_terms(data, "categories", "category", source, line_of)
    draft = data.pop("draft", False)
    if not isinstance(draft, bool):
        raise SourceError(source, line_of("draft"), "'draft' must be true or false")
    published = data.pop("published", True)  # Jekyll's: 'published: false' is a draft here
    if not isinstance(published, bool):
        raise SourceError(source, line_of("published"), "'published' must be true or false")
    draft = draft or not published
    execute = data.pop("execute", True)
    if not isinstance(execute, bool):
        raise SourceError(source, line_of("execute"), "'execute' must be true or false")
    timeout = data.pop("timeout", None)
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_S  # NaN fails this too
    ):
        raise SourceError(
            source,
            line_of("timeout"),
            f"'timeout' must be positive seconds (at most {MAX_TIMEOUT_S:,}), not {timeout!r}",
        )
    ray_mode = data.pop("ray", "shared")
    if ray_mode not in RAY_MODES:
        raise SourceError(
            source,
            line_of("ray"),
            f"'ray' must be one of {', '.join(RAY_MODES)}, not {ray_mode!r}",
            "'isolated' starts a private cluster for this post",
        )
    resources = _resources(data.pop("resources", None), source, line_of("resources"))

    permalink = _text(data.pop("permalink", None))
    pattern = permalink or config.permalink_pattern
    if not pattern.startswith("/"):
        pattern = "/" + pattern  # Jekyll reads "notes/x" as "/notes/x"
    expanded = _expand_permalink(pattern, when, raw_slug, categories)
    key = "permalink" if permalink else "slug"
    try:
        path_part = url_path(expanded)  # "%2e%2e" is "..": checked decoded, as servers read it
    except UnicodeDecodeError:
        raise SourceError(
            source,
            line_of(key),
            f"{key} gives the URL {expanded!r}, whose percent-escapes are not UTF-8",
            "write the characters themselves, or escape their UTF-8 bytes",
        ) from None
    try:
        output_file = safe_output_file(path_part)
    except PathEscapeError as exc:
        decoded = f" (decoded: {path_part!r})" if path_part != expanded else ""
        raise SourceError(
            source,
            line_of(key),
            f"{key} gives the URL {expanded!r}{decoded}, which {exc}",
            "use a relative path inside the site such as /notes/my-post/",
        ) from None
    if not path_part.endswith("/") and not Path(path_part).suffix:
        path_part += "/"
    url = url_escape(path_part)
    excerpt = _text(data.pop("excerpt", None))
    return Post(
        source=source,
        digest=digest,
        title=title,
        date=when,
        updated=updated,
        slug=slug,
        url=url,
        url_line=lines.get("permalink" if permalink else "slug"),
        execute=execute,
        timeout=float(timeout) if timeout is not None else None,
        ray_mode=ray_mode,
        resources=resources,
        resources_line=lines.get("resources"),
        output_file=output_file,
        layout=layout,
        tags=tags,
        categories=categories,
        description=_text(data.pop("description", None)),
        author=_text(data.pop("author", None)),
        draft=draft,
        body=body,
        body_line=body_line,
        extra=data,
        excerpt=excerpt,
        warnings=tuple(warnings),
        extra_lines={key: lines[key] for key in data if key in lines},
    )


def _resources(value: Any, source: str, line: int | None) -> tuple[tuple[str, float], ...]:
    """Front matter ``resources: {num_gpus: 1, num_cpus: 2, memory: 4e9, my_resource: 1}``:
    what the post's session asks of the Ray cluster it is scheduled on."""
    if value is None:
        return ()
    hint = "e.g. `resources: {num_cpus: 2, num_gpus: 1}` (memory in bytes; other names are custom)"
    if not isinstance(value, dict):
        raise SourceError(source, line, f"'resources' must be a mapping, not {_kind(value)}", hint)
    found = []
    for name, amount in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.:/-]*", name):
            raise SourceError(source, line, f"'resources' has an invalid name {name!r}", hint)
        wrong = isinstance(amount, bool) or not isinstance(amount, int | float)
        if wrong or not 0 <= amount < 1e15 or amount != amount:
            raise SourceError(
                source, line, f"resources: {name} must be a non-negative number, not {amount!r}"
            )
        found.append((name, float(amount)))
    return tuple(sorted(found))


def _walk(
    folder: Path, root: Path, problems: list[Problem], skipped: frozenset[Path] = frozenset()
) -> Iterator[Path]:
    """Yield files below ``folder``; symlinks must stay inside ``root`` (else refused); the
    ``skipped`` folders are not entered. The order of ``os.walk`` (top-down, each folder's
    files sorted, then its sub-folders in sorted order), from ``os.scandir`` entries: a
    plain file costs no system call."""
    if not folder.is_dir():
        return
    real_root = root.resolve()
    if not inside(folder.resolve(), real_root):
        problems.append(_outside_link(folder, root))
        return
    yield from _walk_folder(folder, root, real_root, set(), problems, skipped)


def _walk_folder(
    here: Path,
    root: Path,
    real_root: Path,
    seen: set[Path],
    problems: list[Problem],
    skipped: frozenset[Path],
) -> Iterator[Path]:
    real_here = here.resolve()
    if real_here in seen or not inside(real_here, real_root):
        return
    seen.add(real_here)
    try:
        with os.scandir(here) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as error:
        where = display_path(Path(error.filename or here), root)
        problems.append(Problem(where, None, f"cannot read this folder: {error.strerror}"))
        return
    folders: list[Path] = []
    files: list[os.DirEntry[str]] = []
    for entry in entries:
        try:
            is_dir = entry.is_dir()  # follows links, as os.walk(followlinks=True)
        except OSError:
            is_dir = False
        if not is_dir:
            files.append(entry)
        elif not entry.name.startswith((".", "_")):
            path = here / entry.name
            if path in skipped:
                continue
            if inside(path.resolve(), real_root):
                folders.append(path)
            elif entry.is_symlink():
                problems.append(_outside_link(path, root))
    for entry in files:
        if entry.name.startswith("."):
            continue
        path = here / entry.name
        if entry.is_symlink() and not inside(path.resolve(), real_root):
            problems.append(_outside_link(path, root))
            continue
        if not entry.is_file():  # a pipe, socket or device, or a link to nothing
            problems.append(
                Problem(
                    display_path(path, root),
                    None,
                    "not a regular file (a pipe, socket, device or broken link); refused",
                    "remove it or replace it with a real file",
                )
            )
            continue
        yield path
    for path in folders:
        yield from _walk_folder(path, root, real_root, seen, problems, skipped)


def walk_files(
    folder: Path, root: Path, problems: list[Problem], skipped: frozenset[Path] = frozenset()
) -> Iterator[Path]:
    """Files below ``folder`` (static copies), with the same symlink rule as posts; the
    ``skipped`` folders are not entered."""
    return _walk(folder, root, problems, skipped)


def _outside_link(path: Path, root: Path) -> Problem:
    if not path.is_symlink():  # a configured folder such as static_dir = "../shared"
        return Problem(
            display_path(path, root),
            None,
            f"folder {path.resolve()} is outside the project; refused, nothing read from it",
            "keep posts and static files inside the project (a theme folder may be anywhere)",
        )
    target = path.readlink()
    return Problem(
        display_path(path, root),
        None,
        f"symlink to {target} points outside the project; refused, nothing copied",
        "replace the link with a real file or a link inside the project",
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def _title_from_body(
    body: str, body_line: int, stem: str, name_match: re.Match[str] | None
) -> tuple[str, str, int]:
    """Title from a leading ``# Heading`` (removed from the body) or from the file name."""
    lines = body.split("\n")
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        heading = _HEADING.match(line)
        if heading:
            rest = "\n".join(lines[number + 1 :])
            return heading.group(1), rest, body_line + number + 1
        break
    name = name_match.group(4) if name_match else stem
    words = re.sub(r"[-_]+", " ", name).strip()
    return (words[:1].upper() + words[1:]) or stem, body, body_line


def _name_date(parts: list[str], zone: ZoneInfo, source: str) -> datetime:
    """The date of a ``YYYY-M-D-slug.md`` file name (Jekyll accepts unpadded numbers)."""
    try:
        return datetime(int(parts[0]), int(parts[1]), int(parts[2]), tzinfo=zone)
    except ValueError as exc:
        raise SourceError(
            source,
            1,
            f"the file name's date {'-'.join(parts)} is not a date ({exc})",
            "name the file YYYY-MM-DD-slug.md, or add 'date:' to the front matter",
        ) from None


def _parse_date(value: Any, zone: ZoneInfo, source: str, line: int) -> datetime:
    """A front-matter date (YAML date/datetime or text) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=zone)
    if isinstance(value, str):
        text = value.strip()
        parsed: datetime | None = None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            for fmt in _DATE_FORMATS:
                try:
                    parsed = datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    raise SourceError(
        source,
        line,
        f"invalid date {value!r}",
        "use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS +01:00",
    )


def _terms(value: Any, source: str, line: int, key: str) -> tuple[str, ...]:
    """Tags or categories: a YAML list, or a string split on spaces and commas."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = [t for t in re.split(r"[,\s]+", value) if t]
    elif isinstance(value, list):
        items = value
    else:
        raise SourceError(source, line, f"'{key}' must be a list or a string, not {_kind(value)}")
    terms: list[str] = []
    for item in items:
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise SourceError(source, line, f"each of '{key}' must be text, not {_kind(item)}")
        text = str(item).strip()
        if text and text not in terms:
            terms.append(text)
    return tuple(terms)


def _both_terms(
    data: dict[str, Any], plural: str, singular: str, source: str, line_of: Any
) -> tuple[str, ...]:
    """``tags`` and Jekyll's singular ``tag`` (one term, spaces and all), merged."""
    terms = _terms(data.pop(plural, None), source, line_of(plural), plural)
    one = data.pop(singular, None)
    if one is None:
        return terms
    more = _terms(one if isinstance(one, list) else [one], source, line_of(singular), singular)
    return tuple(dict.fromkeys(terms + more))


def url_path(url: str) -> str:
    """A permalink as the path a server would read: percent-escapes decoded (UTF-8)."""
    return unquote(url, errors="strict") if "%" in url else url


def url_escape(path: str) -> str:
    """A decoded URL path as an IRI for ``href``: characters that would end or break a
    path (space, ``#``, ``?``, ``%``, quotes, controls) percent-encoded; letters of any
    script kept as they are, as browsers show them."""
    return "".join(
        ch if ch.isprintable() and (ord(ch) > 127 or ch in _URL_SAFE) else quote(ch, safe="")
        for ch in path
    )


_URL_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"
)


def _expand_permalink(pattern: str, when: datetime, slug: str, categories: tuple[str, ...]) -> str:
    """Fill Jekyll's permalink placeholders (:year, :month, :day, :title, :slug, ...).
    ``slug`` is Jekyll's ``data["slug"]``: ``:title`` is it in Jekyll's pretty mode, case
    kept, ``:slug`` in its default mode; ``:categories`` are lower-cased, as Jekyll's."""
    values = {
        "year": f"{when.year:04d}",
        "short_year": f"{when.year % 100:02d}",
        "month": f"{when.month:02d}",
        "day": f"{when.day:02d}",
        "i_month": str(when.month),
        "i_day": str(when.day),
        "short_month": when.strftime("%b"),
        "long_month": when.strftime("%B"),
        "y_day": f"{when.timetuple().tm_yday:03d}",
        "hour": f"{when.hour:02d}",
        "minute": f"{when.minute:02d}",
        "second": f"{when.second:02d}",
        "slug": slugify(slug),
        "title": slugify(slug, "pretty", cased=True),
        "categories": "/".join(dict.fromkeys(c.lower() for c in categories)),
        "slugified_categories": "/".join(dict.fromkeys(slugify(c) for c in categories)),
        "output_ext": ".html",
    }

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    url = re.sub(r":([a-z_]+)", fill, pattern)
    if "categories" in pattern and not pattern.startswith("//"):
        url = re.sub(r"/{2,}", "/", url)  # no categories leaves an empty segment behind
    return url
