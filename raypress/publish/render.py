"""Jinja2 rendering: post pages, paginated index, tag and category pages, archive,
Atom feed, sitemap and 404, as files in memory (written later by
:mod:`raypress.publish.site_writer`)."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from raypress import __version__
from raypress.config import Config
from raypress.errors import Problem, SourceError
from raypress.paths import display_path, safe_output_file, slugify
from raypress.publish.highlight import stylesheet
from raypress.publish.posts import url_path
from raypress.publish.site_writer import OutputFile
from raypress.publish.views import PostView, SiteView, Term, feed_id, site_view
from raypress.theme import THEME_PATH

SYSTEM_TEMPLATES = frozenset(
    {"base", "index", "taxonomy", "terms", "archive", "404", "feed", "sitemap", "timings"}
)
TIMINGS_URL = "/timings/"
LISTING_TEMPLATES = ("index.html", "taxonomy.html", "terms.html", "archive.html")
SITE_TEMPLATES = (*LISTING_TEMPLATES, "timings.html", "feed.xml", "sitemap.xml", "404.html")


def timings_id(url: str) -> str:
    """The anchor of a post's row on the timings page."""
    return "post-" + (slugify(url) or "home")


@dataclass(frozen=True, slots=True)
class Paginator:
    page: int
    pages: int
    total: int
    previous_url: str | None
    next_url: str | None


@dataclass(frozen=True, slots=True)
class TermCount:
    term: Term
    count: int


@dataclass(frozen=True, slots=True)
class YearGroup:
    year: int
    posts: list[PostView]


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    path: str
    lastmod: datetime | None


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


class Theme:
    """The Jinja2 environment over templates/, with raypress's filters."""

    def __init__(self, config: Config):
        self.config = config
        self.site: SiteView = site_view(config)
        bytecode = config.cache_path / "jinja"  # compiled templates, reused across builds
        bytecode.mkdir(parents=True, exist_ok=True)
        self.env = jinja2.Environment(
            bytecode_cache=jinja2.FileSystemBytecodeCache(str(bytecode)),
            loader=jinja2.FileSystemLoader([str(f) for f in theme_folders(config)]),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters.update(
            relative_url=self.relative_url,
            absolute_url=self.absolute_url,
            date_human=lambda d: f"{d.day} {d:%B %Y}",
            rfc3339=lambda d: d.isoformat(timespec="seconds"),
            w3c_date=lambda d: d.strftime("%Y-%m-%d"),
        )
        self.env.globals.update(site=self.site, generator=f"raypress {__version__}")
        self.overrides = self._override_files()

    def _override_files(self) -> frozenset[str]:
        folder = self.config.templates_path
        return frozenset(str(p) for p in folder.rglob("*")) if folder.is_dir() else frozenset()

    def stale(self) -> bool:
        """True when the site's templates/ gained or lost a file since this Theme was made:
        Jinja's cache would keep serving the theme's template a new override replaces."""
        return self._override_files() != self.overrides

    @functools.cached_property
    def pygments_css(self) -> bytes:
        """assets/pygments.css (made once per Theme: ``serve`` keeps its Theme)."""
        return stylesheet(self.config.pygments_style, self.config.pygments_dark_style).encode()

    def relative_url(self, path: str) -> str:
        """Prefix a site-absolute path with the baseurl (full URLs pass unchanged)."""
        if "://" in path or path.startswith(("mailto:", "#")):
            return path
        return self.config.baseurl + ("" if path.startswith("/") else "/") + path

    def absolute_url(self, path: str) -> str:
        """The full URL of a site-absolute path (site.url + baseurl + path)."""
        return self.config.url + self.relative_url(path)

    def all_templates(self) -> list[str]:
        """Every HTML and XML template of the theme, partials included."""
        return self.env.list_templates(extensions=["html", "xml"])

    def check_templates(self, names: Iterable[str]) -> list[Problem]:
        """Compile the given templates now, so syntax errors are reported with file:line."""
        problems: list[Problem] = []
        for name in dict.fromkeys(names):
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(self._syntax_problem(exc))
            except jinja2.TemplateNotFound:
                problems.append(
                    Problem(
                        f"{self.config.templates_dir}/{name}",
                        None,
                        "template not found",
                        "add it to the site's templates, or `raypress theme eject` the theme's",
                    )
                )
        return problems

    def render(self, name: str, page_path: str, **context: Any) -> bytes:
        """Render template ``name`` for the page at ``page_path``; raise SourceError."""
        try:
            template = self.env.get_template(name)
            return template.render(page_path=page_path, **context).encode("utf-8")
        except jinja2.TemplateSyntaxError as exc:
            problem = self._syntax_problem(exc)
            raise SourceError(problem.path, problem.line, problem.message, problem.hint) from None
        except Exception as exc:
            path, line = self._template_frame(exc, name)
            raise SourceError(
                path,
                line,
                f"template error while rendering {page_path}: {type(exc).__name__}: {exc}",
                "check the variable names against the README's template reference",
            ) from None

    def _syntax_problem(self, exc: jinja2.TemplateSyntaxError) -> Problem:
        path = exc.filename or f"{self.config.templates_dir}/{exc.name}"
        return Problem(
            display_path(Path(path), self.config.root),
            exc.lineno,
            f"template syntax error: {exc.message}",
            None,
        )

    def _template_frame(self, exc: Exception, name: str) -> tuple[str, int | None]:
        folders = tuple(str(f) for f in theme_folders(self.config))
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.startswith(folders):
                return display_path(Path(frame.filename), self.config.root), frame.lineno
        return f"{self.config.templates_dir}/{name}", None


def render_pages(
    theme: Theme, views: list[PostView], layouts: dict[str, str]
) -> tuple[list[OutputFile], list[Problem]]:
    """All HTML/XML pages of the site. ``views`` newest first; ``layouts`` maps a post's
    URL to its layout name. Returns the files and the problems met (all of them)."""
    config = theme.config
    files: list[OutputFile] = []
    problems: list[Problem] = []
    listings: list[str] = []  # URLs of index, tag, category and archive pages

    def page(template: str, url: str, origin: str, **context: Any) -> None:
        try:
            data = theme.render(template, url, **context)
        except SourceError as exc:
            if exc.problem not in problems:
                problems.append(exc.problem)
            return
        files.append(OutputFile(safe_output_file(url_path(url)), data, origin))
        if template in LISTING_TEMPLATES:
            listings.append(url)

    for view in views:
        page(f"{layouts[view.url]}.html", view.url, view.source_path, post=view)

    per_page = config.posts_per_page
    pages = max(1, -(-len(views) // per_page))
    for number in range(1, pages + 1):
        chunk = views[(number - 1) * per_page : number * per_page]
        page(
            "index.html",
            _index_url(number),
            "index",
            posts=chunk,
            paginator=Paginator(
                page=number,
                pages=pages,
                total=len(views),
                previous_url=_index_url(number - 1) if number > 1 else None,
                next_url=_index_url(number + 1) if number < pages else None,
            ),
        )

    for kind, folder in (("tag", "tags"), ("category", "categories")):
        groups = _group_terms(views, kind)
        if not groups:
            continue
        for item, members in groups.values():
            page("taxonomy.html", item.url, f"{kind} {item.name!r}", term=item, posts=members)
        counts = sorted(
            (TermCount(item, len(members)) for item, members in groups.values()),
            key=lambda c: c.term.name.lower(),
        )
        page("terms.html", f"/{folder}/", f"{kind} list", kind=kind, terms=counts)

    years: dict[int, list[PostView]] = {}
    for view in views:
        years.setdefault(view.date.year, []).append(view)
    page(
        "archive.html",
        "/archive/",
        "archive",
        years=[YearGroup(year, posts) for year, posts in sorted(years.items(), reverse=True)],
    )

    page(
        "timings.html",
        TIMINGS_URL,
        "timings",
        posts=[v for v in views if v.execution is not None],
        not_run=[v for v in views if v.execution is None and v.snippet_count],
        row_id=timings_id,
    )

    recent = views[: config.feed_entries]
    updated = max((v.lastmod for v in recent), default=datetime(1970, 1, 1).astimezone())
    page(
        "feed.xml",
        theme.site.feed_path,
        "feed",
        posts=recent,
        updated=updated,
        feed_id=feed_id(config, "/"),
    )
    if config.url:  # a sitemap must list absolute URLs: without the site's URL there is none
        sitemap = [SitemapEntry(v.url, v.lastmod) for v in views]
        sitemap += [SitemapEntry(url, None) for url in listings]
        page("sitemap.xml", "/sitemap.xml", "sitemap", entries=sitemap)
    page("404.html", "/404.html", "404 page")
    css = theme.pygments_css
    files.append(OutputFile("assets/pygments.css", css, "pygments"))
    return files, problems


def _index_url(number: int) -> str:
    return "/" if number <= 1 else f"/page/{number}/"


def _group_terms(views: list[PostView], kind: str) -> dict[str, tuple[Term, list[PostView]]]:
    groups: dict[str, tuple[Term, list[PostView]]] = {}
    for view in views:
        for item in view.tags if kind == "tag" else view.categories:
            groups.setdefault(item.slug, (item, []))[1].append(view)
    return groups
