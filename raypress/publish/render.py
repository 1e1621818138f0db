"""Jinja2 rendering: post pages, paginated index, tag and category pages, archive,
Atom feed, sitemap and 404, as files in memory (written later by
:mod:`raypress.publish.site_writer`)."""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from raypress import __version__
from raypress.config import Config
from raypress.errors import Problem, SourceError
from raypress.paths import display_path, safe_output_file, slugify
from raypress.publish.highlight import pygments_version, stylesheet
from raypress.publish.page_inputs import PageInputs, base_digest
from raypress.publish.posts import url_path
from raypress.publish.reading import theme_folders
from raypress.publish.relative_links import page_links_relative
from raypress.publish.site_writer import OutputFile, PreviousSite, SiteFile
from raypress.publish.template_cache import template_cache
from raypress.publish.views import PostView, SiteView, Term, feed_id, site_view
from raypress.theme import THEME_PATH

TIMINGS_URL = "/timings/"
SEARCH_URL = "/search/"
LISTING_TEMPLATES = ("index.html", "taxonomy.html", "terms.html", "archive.html")
SITE_TEMPLATES = (
    *LISTING_TEMPLATES,
    *("timings.html", "feed.xml", "sitemap.xml", "404.html", "search.html", "robots.txt"),
)


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


class Theme:
    """The Jinja2 environment over templates/, with raypress's filters."""

    def __init__(self, config: Config):
        self.config = config
        self.site: SiteView = site_view(config)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(f) for f in theme_folders(config)]),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters.update(
            relative_url=_site_filter(self.relative_url),
            absolute_url=_site_filter(self.absolute_url),
            date_human=lambda d: f"{d.day} {d:%B %Y}",
            rfc3339=lambda d: d.isoformat(timespec="seconds"),
            w3c_date=lambda d: d.strftime("%Y-%m-%d"),
        )
        self.env.globals.update(site=self.site, generator=f"raypress {__version__}")
        # compiled templates, reused across builds (and projects): set once the filters are
        self.env.bytecode_cache = template_cache(self.env, THEME_PATH, config.cache_path)
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
        if "://" in path:  # already a full URL (a social image on another host)
            return path
        return self.config.url + self.relative_url(path)

    def all_templates(self) -> list[str]:
        """Every HTML and XML template of the theme, partials included."""
        return self.env.list_templates(extensions=["html", "xml", "txt"])

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


def _site_filter(function: Callable[[str], str]) -> Callable[..., str]:
    """A filter whose result depends on the site's configuration, marked so that Jinja
    never folds it into compiled code (it folds filters of constants, such as
    ``"/assets/x.svg" | absolute_url``, when it compiles): compiled templates are then the
    same for every site, and the per-user cache may serve them to any."""

    @jinja2.pass_context
    def site_filter(context: Any, path: str) -> str:
        return function(path)

    return site_filter


def render_pages(
    theme: Theme,
    views: list[PostView],
    layouts: dict[str, str],
    previous: PreviousSite | None = None,
    static_paths: frozenset[str] = frozenset(),
    base: str | None = None,
) -> tuple[list[SiteFile], list[Problem]]:
    """All HTML/XML pages of the site. ``views`` newest first; ``layouts`` maps a post's
    URL to its layout name. A page whose inputs are those of its file in ``previous`` is
    not rendered: that file is kept (see :mod:`raypress.publish.page_inputs`). With
    ``relative_urls``, each page's links are made relative as it is rendered (links to
    ``static_paths``, the copied files, kept as they are). Returns the files and the
    problems met (all of them). ``base``: :func:`inputs_base`, if already known."""
    config = theme.config
    jobs: list[PageJob] = []
    listings: list[str] = []  # URLs of index, tag, category and archive pages

    def page(template: str, url: str, origin: str, **context: Any) -> None:
        jobs.append(PageJob(template, url, origin, context))
        if template in LISTING_TEMPLATES:
            listings.append(url)

    def feed(path: str, title: str, home: str, posts: list[PostView]) -> None:
        """An Atom feed of the newest ``posts``: the site's, or a tag's or category's."""
        recent = posts[: config.feed_entries]
        updated = max((v.lastmod for v in recent), default=datetime(1970, 1, 1).astimezone())
        origin = "feed" if home == "/" else f"feed of {home}"
        page(
            "feed.xml",
            path,
            origin,
            posts=recent,
            updated=updated,
            feed_id=feed_id(config, "/" if home == "/" else path),
            feed_title=title,
            feed_path=path,
            home_path=home,
        )

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
            feed(item.feed_path, f"{theme.site.title}: {item.name}", item.url, members)
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

    feed(theme.site.feed_path, theme.site.title, "/", views)
    if config.url:  # a sitemap must list absolute URLs: without the site's URL there is none
        sitemap = [SitemapEntry(v.url, v.lastmod) for v in views]
        sitemap += [SitemapEntry(url, None) for url in listings]
        page("sitemap.xml", "/sitemap.xml", "sitemap", entries=sitemap)
    page("404.html", "/404.html", "404 page")
    if config.search:
        page("search.html", SEARCH_URL, "search page")
    sitemap_path = "/sitemap.xml" if config.url else None
    page("robots.txt", "/robots.txt", "robots.txt", sitemap_path=sitemap_path)
    base = base or inputs_base(theme)
    files, problems = render_jobs(theme, jobs, base, previous, config.jobs, static_paths)
    css_inputs = PageInputs(base).digest(
        "pygments", "/assets/pygments.css", {"version": pygments_version()}
    )
    kept = previous.kept("assets/pygments.css", css_inputs, "pygments") if previous else None
    css = kept or OutputFile("assets/pygments.css", theme.pygments_css, "pygments", css_inputs)
    files.append(css)
    return files, problems


def inputs_base(theme: Theme) -> str:
    """What every page (and every file made from a post) depends on besides its own data:
    :func:`raypress.publish.page_inputs.base_digest` for this theme."""
    return base_digest(theme_folders(theme.config), theme.config, theme.env.globals)


@dataclass(frozen=True, slots=True)
class PageJob:
    """A page to render: template, URL, what made it (for messages) and its context."""

    template: str
    url: str
    origin: str
    context: dict[str, Any]


PARALLEL_FROM = 200  # pages to render; fewer are rendered in this process alone


def render_jobs(
    theme: Theme,
    jobs: list[PageJob],
    base: str,
    previous: PreviousSite | None,
    workers: int,
    static_paths: frozenset[str] = frozenset(),
) -> tuple[list[SiteFile], list[Problem]]:
    """Render ``jobs`` (in order), keeping the pages ``previous`` holds with the same
    inputs. When nothing can be kept (a cold build) and there are many pages, they are
    rendered by this process and forked copies of it, sharing the views in memory."""
    inputs = PageInputs(base)
    processes = min(workers or os.cpu_count() or 1, max(1, len(jobs) // PARALLEL_FROM))
    if processes > 1 and not (previous and previous.manifest):
        results = _render_forked(theme, jobs, base, processes, static_paths)
    else:
        results = []
        for job in jobs:
            digest = inputs.digest(job.template, job.url, job.context)
            path = safe_output_file(url_path(job.url))
            kept = previous.kept(path, digest, job.origin) if previous else None
            rendered = kept or _render(theme, job, digest, static_paths)
            results.append(rendered)
    files: list[SiteFile] = []
    problems: list[Problem] = []
    for result in results:
        if isinstance(result, Problem):
            if result not in problems:
                problems.append(result)
        else:
            files.append(result)
    return files, problems


def _render(
    theme: Theme, job: PageJob, digest: str, static_paths: frozenset[str]
) -> OutputFile | Problem:
    try:
        data = theme.render(job.template, job.url, **job.context)
    except SourceError as exc:
        return exc.problem
    path = safe_output_file(url_path(job.url))
    if theme.config.relative_urls:
        data = page_links_relative(data, path, static_paths, theme.config.baseurl)
    return OutputFile(path, data, job.origin, digest)


def _render_share(
    theme: Theme, jobs: list[PageJob], base: str, share: range, static_paths: frozenset[str]
) -> list[OutputFile | Problem]:
    inputs = PageInputs(base)
    return [
        _render(theme, job, inputs.digest(job.template, job.url, job.context), static_paths)
        for job in (jobs[i] for i in share)
    ]


def _render_forked(
    theme: Theme, jobs: list[PageJob], base: str, processes: int, static_paths: frozenset[str]
) -> list[OutputFile | Problem]:
    """Every job rendered: shares ``k::processes`` by forked children, share 0 here. A
    child that fails to answer has its share rendered here (raising what it raised)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    children = []
    for k in range(1, processes):
        receiver, sender = context.Pipe(duplex=False)
        share = range(k, len(jobs), processes)
        child = context.Process(
            target=_render_child,
            args=(theme, jobs, base, share, static_paths, sender),
            daemon=True,
        )
        child.start()
        sender.close()
        children.append((child, receiver, share))
    results: list[OutputFile | Problem | None] = [None] * len(jobs)
    mine = range(0, len(jobs), processes)
    mine_rendered = _render_share(theme, jobs, base, mine, static_paths)
    for index, result in zip(mine, mine_rendered, strict=True):
        results[index] = result
    for child, receiver, share in children:
        try:
            answer = receiver.recv()
        except EOFError:
            answer = None
        finally:
            receiver.close()
            child.join()
        if answer is None:
            answer = _render_share(theme, jobs, base, share, static_paths)
        for index, result in zip(share, answer, strict=True):
            results[index] = result
    return [r for r in results if r is not None]


def _render_child(
    theme: Theme,
    jobs: list[PageJob],
    base: str,
    share: range,
    static_paths: frozenset[str],
    sender: Any,
) -> None:
    try:
        answer = _render_share(theme, jobs, base, share, static_paths)
    except BaseException:
        answer = None  # the parent renders this share again and meets the error itself
    sender.send(answer)
    sender.close()


def _index_url(number: int) -> str:
    return "/" if number <= 1 else f"/page/{number}/"


def _group_terms(views: list[PostView], kind: str) -> dict[str, tuple[Term, list[PostView]]]:
    groups: dict[str, tuple[Term, list[PostView]]] = {}
    for view in views:
        for item in view.tags if kind == "tag" else view.categories:
            groups.setdefault(item.slug, (item, []))[1].append(view)
    return groups
