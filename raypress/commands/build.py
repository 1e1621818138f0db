"""``build(config)``: read posts -> parse -> (execute) -> render -> write, in that order.

Every stage collects problems instead of stopping at the first, so one bad post does not
hide another; if there is any problem, nothing is written and the previous site stays.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from raypress.config import Config
from raypress.errors import Problem, SourceError
from raypress.execution.model import PostExecution, PostRun, ProgressEvent
from raypress.freeze.build_stamp import (
    BuildStamp,
    current_stamp,
    frozen_digest,
    input_digest,
    save_stamp,
    stamp_digest,
)
from raypress.freeze.early_engine import EarlyEngine, will_run
from raypress.freeze.inputs import InstalledVersions
from raypress.freeze.plan import Rerun, orphaned_records, plan_freeze, save_run, tidy_snippets
from raypress.freeze.run_plan import (
    PostExecutor,
    describe,
    execution_settings,
    plan_runs,
    run_posts,
    runnable,
)
from raypress.paths import display_path
from raypress.publish.embed_outputs import embed_results
from raypress.publish.jupytext_script import post_script, script_name
from raypress.publish.local_files import LocalRef, local_files, local_reference
from raypress.publish.markdown import ParsedBody, parse_body
from raypress.publish.notebook_output import notebook_name, post_notebook
from raypress.publish.page_inputs import file_inputs, made_from
from raypress.publish.page_scripts import script_files, script_tags
from raypress.publish.parse_cache import BuildCache, parse_bodies
from raypress.publish.posts import Post, read_post
from raypress.publish.reading import (
    available_layouts,
    markdown_settings,
    read_posts,
    select_posts,
)
from raypress.publish.render import (
    SITE_TEMPLATES,
    TIMINGS_URL,
    PageJob,
    Theme,
    inputs_base,
    render_jobs,
    render_pages,
    timings_id,
)
from raypress.publish.search_index import IndexFailed, search_index
from raypress.publish.site_writer import (
    KeptFile,
    OutputFile,
    PreviousSite,
    SiteFile,
    StaticFile,
    WriteReport,
    check_output_folder,
    collect_static,
    write_site,
)
from raypress.publish.views import (
    PostView,
    execution_view,
    launch_urls,
    link_neighbours,
    link_related,
    post_view,
)

MERMAID_ASSETS = "assets/mermaid/"  # the diagram script: published only if a post has one


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What a build did, for the console and for tests."""

    posts: int = 0
    pages: int = 0
    drafts_skipped: int = 0
    future_skipped: int = 0
    parsed: int = 0  # bodies parsed this time (the rest came from the cache)
    rendered: tuple[str, ...] = ()  # pages rendered this time (the rest were kept as they were)
    up_to_date: bool = False  # nothing changed since the last build: nothing was done
    executed: int = 0  # posts whose snippets ran
    reused: int = 0  # posts whose results came from their record in snippets/
    unrecorded: tuple[str, ...] = ()  # --no-exec: posts shown without outputs (no record)
    notes: tuple[str, ...] = ()  # for the console: records written, removed, ...
    warnings: tuple[str, ...] = ()  # unusable records (re-run), records that could not be written
    problems: tuple[Problem, ...] = ()  # in the input: nothing was written
    execution_problems: tuple[Problem, ...] = ()  # snippets that failed: the site was written
    # runs that failed for a reason outside the posts (exit status 2): records untouched
    infrastructure_problems: tuple[Problem, ...] = ()
    write: WriteReport | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def exit_status(self) -> int:
        """0: all good; 1: the posts' own problems; 2: only failures outside the posts
        (an unreachable cluster, a lost node): running it again may pass."""
        if self.problems or self.execution_problems:
            return 1
        return 2 if self.infrastructure_problems else 0


@dataclass(frozen=True, slots=True)
class ModelsOfPages:
    """What the post pages of a build were rendered from, by post file."""

    bodies: dict[str, ParsedBody]
    executions: dict[str, PostExecution]
    views: dict[str, PostView]
    unrecorded: dict[str, str]  # --no-exec: posts shown without outputs, and why
    static_paths: frozenset[str]  # the copied files (relative_urls leaves links to them)


@dataclass(frozen=True, slots=True)
class RenderedSite:
    """A build's site, rendered and not yet written: for ``serve``, which shows it from
    memory and keeps its models to preview the next edit of a post (``preview_post``)."""

    files: list[SiteFile]
    static: list[StaticFile]
    models: ModelsOfPages


def preview_post(
    path: Path, last: ModelsOfPages, config: Config, theme: Theme, now: datetime
) -> OutputFile | None:
    """The page of the post file at ``path`` after an edit, rendered from it and the last
    build's models of the other posts (its neighbours, related posts and, when its
    snippets did not change, its outputs), ahead of the build that follows it. None when
    that cannot be right without a build: a post that is new, moved to another URL or
    layout, unreadable or broken, or whose snippets changed (they must run)."""
    source = display_path(path, config.root)
    before = last.views.get(source)
    old_body = last.bodies.get(source)
    if before is None or old_body is None:
        return None
    try:
        post = read_post(path, config, available_layouts(config))
    except (SourceError, OSError):
        return None
    if post.url != before.url or post.draft != before.draft or post.is_future(now):
        return None
    try:
        body = parse_body(post, markdown_settings(config))
    except (RecursionError, MemoryError, ValueError, IndexError):
        return None
    if body.problems or _snippets_of(body) != _snippets_of(old_body):
        return None
    execution = last.executions.get(source)
    executions = {source: execution} if execution is not None else {}
    views, _ = post_views([post], {source: body}, executions, config, now, last.unrecorded)
    view = views[0]
    view.previous, view.next, view.related = before.previous, before.next, before.related
    job = PageJob(f"{post.layout}.html", post.url, source, {"post": view})
    pages, problems = render_jobs(theme, [job], "", None, 1, last.static_paths)
    page = pages[0] if pages and not problems else None
    return page if isinstance(page, OutputFile) else None


def _snippets_of(body: ParsedBody) -> tuple[list[tuple], list[tuple]]:
    """What runs of a body: its snippets and inline expressions, without their lines."""
    snippets = [(s.language, s.source, s.options) for s in body.snippets]
    return snippets, [(i.source, i.after_snippet) for i in body.inline]


def build(
    config: Config,
    now: datetime | None = None,
    log: Callable[[str], None] | None = None,
    rerun: Rerun = False,
    executor: PostExecutor | None = None,
    theme: Theme | None = None,
    rendered: Callable[[RenderedSite], None] | None = None,
    events: Callable[[ProgressEvent], None] | None = None,
) -> BuildReport:
    """Build the site described by ``config`` into its output folder.

    ``log`` receives progress lines (a post finished running, notes of the build log).
    Problems in the input stop the build before anything runs or is written; snippets
    that fail are reported too, but the site is written (their errors are on the pages).
    Posts whose record in snippets/ is current are not run (``rerun``: True for all, or
    a set of ``posts/x.md``, runs them anyway); every finished run writes its record.
    For a long-lived caller (``serve``): ``executor`` runs the posts instead of a new
    engine, ``theme`` keeps compiled templates between builds, and ``rendered`` receives
    the site's files (and what they were made from) once they are all rendered without
    problems, before they are written.
    ``events`` hears what runs as it runs (a live status on the console).
    """
    early: list[EarlyEngine] = []  # an engine started while the posts are parsed
    try:
        return _build(config, now, log, rerun, executor, theme, rendered, events, early)
    finally:
        for engine in early:
            engine.close()


def _build(
    config: Config,
    now: datetime | None,
    log: Callable[[str], None] | None,
    rerun: Rerun,
    executor: PostExecutor | None,
    theme: Theme | None,
    rendered: Callable[[RenderedSite], None] | None,
    events: Callable[[ProgressEvent], None] | None,
    early: list[EarlyEngine],
) -> BuildReport:
    started = time.perf_counter()
    stages: dict[str, float] = {}
    now = now or datetime.now(config.zone)
    problems: list[Problem] = []

    def timed(stage: str, mark: float) -> float:
        current = time.perf_counter()
        stages[stage] = current - mark
        return current

    try:
        check_output_folder(config)
    except SourceError as exc:
        return BuildReport(problems=(exc.problem,), seconds=time.perf_counter() - started)
    digest = input_digest(config)
    stamp = None if rerun else current_stamp(config, now, digest)
    if stamp is not None:
        return BuildReport(
            posts=stamp.posts,
            pages=stamp.pages,
            up_to_date=True,
            seconds=time.perf_counter() - started,
        )
    theme = theme or Theme(config)
    layouts = available_layouts(config)

    mark = started
    cache = BuildCache(config.cache_path)
    all_posts, read_problems = read_posts(config, layouts, cache)
    problems += read_problems
    if not all_posts and not read_problems:
        problems += orphaned_records(config)
    posts = select_posts(all_posts, config, now)
    problems += duplicate_urls(posts)
    settings = execution_settings(config, log, events)
    if executor is None and not problems and will_run(posts, config, settings, rerun):
        EarlyEngine(settings, posts, config.root, early)  # it joins `early` as it starts
        executor = early[0]
    mark = timed("read", mark)

    templates: list[Problem] = []  # compiled while worker processes parse, if there are any

    def compile_templates() -> None:
        templates.extend(theme.check_templates(_templates_used(posts) + theme.all_templates()))

    bodies, parse_problems, parsed = parse_bodies(
        posts, markdown_settings(config), cache, config.jobs, config.render_timeout,
        meanwhile=compile_templates,
    )  # fmt: skip
    problems += parse_problems
    problems += [p for body in bodies.values() for p in body.problems]
    problems += templates
    beside_posts, local_problems = local_files(posts, _local_refs(posts, bodies), config)
    problems += local_problems
    mark = timed("parse", mark)

    candidates = [] if problems else [p for p in posts if runnable(p, bodies.get(p.source))]
    versions = InstalledVersions()
    frozen = plan_freeze(candidates, bodies, config, rerun, versions)
    problems += frozen.problems
    warnings = [w for post in posts for w in post.warnings] + list(frozen.notes)
    to_run = [p for p in candidates if p.source in frozen.reasons]
    runs = [] if problems else plan_runs(to_run, bodies, config)
    saved: list[str] = []
    # Records are written durably (fsync) by one thread of their own while the other
    # posts run: in order, and all of them before anything reads snippets/ again.
    saves: list[Future[str | None]] = []

    def finished(result: PostExecution) -> None:
        saves.append(
            record_writer.submit(save_run, result, to_run, bodies, frozen, config, versions, saved)
        )
        if log:
            reason = frozen.reasons.get(result.post)
            log(describe(result) + (f" ({reason})" if reason else ""))

    with ThreadPoolExecutor(1, thread_name_prefix="records") as record_writer:
        execution = run_posts(
            runs, config, progress=finished, log=log, executor=executor, events=events
        )
    warnings += [w for w in (s.result() for s in saves) if w]
    for message in execution.messages:
        if log:
            log(message)
    executions = {**frozen.reused, **_shown(execution.executions, frozen.previous)}
    mark = timed("execute", mark)

    previous = PreviousSite(config)  # pages whose inputs did not change are kept from it
    base = inputs_base(theme)  # what every page and post file depends on besides its own
    views, extra_files = post_views(
        posts, bodies, executions, config, now, frozen.unrecorded, base, previous
    )
    static, static_problems = collect_static(config, any(v.has_diagrams for v in views))
    problems += static_problems
    static = _needed_static(static, views) + beside_posts
    static_paths = frozenset(s.path for s in static)
    layouts = {p.url: p.layout for p in posts}
    pages, render_problems = render_pages(theme, views, layouts, previous, static_paths, base)
    files = pages + extra_files
    problems += render_problems
    files = [f for f in files if f.path != "robots.txt" or f.path not in static_paths]
    problems += colliding_outputs(files, static)
    mark = timed("render", mark)

    report = BuildReport(
        posts=len(posts),
        pages=len(files),
        drafts_skipped=sum(1 for p in all_posts if p.draft and not config.drafts),
        future_skipped=sum(1 for p in all_posts if p.is_future(now) and not config.future),
        parsed=parsed,
        rendered=tuple(f.path for f in pages if isinstance(f, OutputFile) and f.inputs),
        executed=len(runs),
        reused=len(frozen.reused),
        unrecorded=tuple(sorted(frozen.unrecorded)),
        problems=tuple(sorted(set(problems), key=_problem_order)),
        execution_problems=tuple(sorted(set(execution.problems), key=_problem_order)),
        infrastructure_problems=execution.infrastructure,
    )
    if problems or execution.unavailable:
        cache.save()  # what parsed is worth keeping, whether or not this build can be written
        return _finish(report, started, stages)
    if rendered is not None:
        views_by_post = {v.source_path: v for v in views}
        made = ModelsOfPages(bodies, executions, views_by_post, frozen.unrecorded, static_paths)
        rendered(RenderedSite(files, static, made))
    with ThreadPoolExecutor(1, thread_name_prefix="search") as indexer:
        # Pagefind runs while the rest of the site is written (after the pages are handed to
        # serve: a preview does not wait for it); the site is swapped in with its index.
        post_pages = {p.output_file for p in posts}
        index = (
            indexer.submit(search_index, files, post_pages, config, previous)
            if config.search
            else None
        )
        cache.save()
        try:
            written = write_site(config, files, static, previous, _index_files(index))
        except IndexFailed as failed:
            problems = {"problems": tuple(failed.problems)}
            return _finish(BuildReport(**{**_fields(report), **problems}), started, stages)
    sources = [p.source for p in all_posts]  # every post file read cleanly: drafts too
    notes = tidy_snippets(config, posts, bodies, frozen, saved, sources)
    if not execution.problems and not execution.infrastructure:  # they must fail it again
        due = [p.date for p in all_posts if p.is_future(now) and not config.future]
        digest = stamp_digest(digest, frozen_digest(config, frozen.watched))
        pages = len(files) + (len(index.result()[0]) if index else 0)
        stamp = BuildStamp(digest, min(due, default=None), len(posts), pages, frozen.watched)
        save_stamp(config, stamp)
    timed("write", mark)
    extra = {"write": written, "notes": tuple(notes), "warnings": tuple(warnings)}
    return _finish(BuildReport(**{**_fields(report), **extra}), started, stages)


def post_run_for_file(path: Path, config: Config) -> PostRun | None:
    """The PostRun a build would make for one post file (None: nothing to run); for tests
    and benchmarks that exercise execution exactly as the build feeds it."""
    post = read_post(path, config, available_layouts(config))
    body = parse_body(post, markdown_settings(config))
    runs = plan_runs([post], {post.source: body}, config)
    return runs[0] if runs else None


def duplicate_urls(posts: list[Post]) -> list[Problem]:
    """One problem per post that takes a URL another post already has: blamed on the post
    whose front matter chose the URL (permalink or slug), else on the later file."""
    groups: dict[str, list[Post]] = {}
    for post in sorted(posts, key=lambda p: p.source):
        groups.setdefault(post.output_file, []).append(post)
    problems: list[Problem] = []
    for group in groups.values():
        if len(group) < 2:
            continue
        chosen = [p for p in group if p.url_line is not None]
        blamed = chosen if 0 < len(chosen) < len(group) else group[1:]
        for post in blamed:
            others = ", ".join(p.source for p in group if p is not post)
            key = "permalink" if post.url_line is not None else "file name"
            problems.append(
                Problem(
                    post.source,
                    post.url_line,
                    f"URL {post.url} is also the URL of {others}",
                    f"change this post's {key} (or its slug or permalink)",
                )
            )
    return problems


def post_views(
    posts: list[Post],
    bodies: dict[str, ParsedBody],
    executions: dict[str, PostExecution],
    config: Config,
    now: datetime,
    unrecorded: dict[str, str] | None = None,
    base: str = "",
    previous: PreviousSite | None = None,
) -> tuple[list[PostView], list[SiteFile]]:
    """Template views of the posts that parsed, newest first, linked to their neighbours,
    and the files published beside each page: its snippets' figures and its script.
    ``unrecorded`` posts (--no-exec, no record) are marked as not executed. With ``base``
    (:func:`inputs_base`), each view and file carries the digest of what it is made from,
    and a post's script, notebook and figures that ``previous`` holds, made from the same,
    are kept there rather than made again."""
    views: list[PostView] = []
    files: list[SiteFile] = []
    scripts: set[str] = set()  # libraries some page loads (their files are published once)

    def keep(path: str, inputs: bytes, origin: str) -> tuple[str, KeptFile | None]:
        """The inputs digest of a post's file, and the file in ``previous`` if it has it."""
        if not base:
            return "", None
        digest = file_inputs(base, path, inputs)
        return digest, previous.kept(path, digest, origin) if previous else None

    for post in posts:
        body = bodies.get(post.source)
        if body is None:
            continue
        execution = executions.get(post.source)
        unexecuted = (unrecorded or {}).get(post.source)
        inputs = made_from(post, execution, unexecuted, post.is_future(now)) if base else b""
        embedded = embed_results(body, execution, config.trust_html_output, config.output_lines)
        content = embedded.html
        if embedded.scripts:
            content += "\n" + script_tags(embedded.scripts, lambda path: config.baseurl + path)
            scripts.update(embedded.scripts)
        folder = posixpath.dirname(post.output_file)
        script_path = posixpath.join(folder, script_name(post))
        notebook_path = posixpath.join(folder, notebook_name(post))
        if body.snippets:
            digest, kept = keep(script_path, inputs, post.source)
            if kept is None:
                script = post_script(post, body, config).encode()
                kept = OutputFile(script_path, script, post.source, digest)
            files.append(kept)
            digest, kept = keep(notebook_path, inputs, post.source)
            if kept is None:
                page_url = config.url + config.baseurl + post.url
                notebook = post_notebook(post, body, execution, page_url).encode()
                kept = OutputFile(notebook_path, notebook, post.source, digest)
            files.append(kept)
        run = None
        if execution is not None:
            run = execution_view(
                post,
                body,
                execution,
                "/" + script_path,
                f"{TIMINGS_URL}#{timings_id(post.url)}",
                "/" + notebook_path,
                launch_urls(config, post),
            )
        view = post_view(post, body, content, config, now, run)
        view.unexecuted = unexecuted
        view.inputs = inputs
        views.append(view)
        for figure in embedded.figures:
            path = posixpath.join(folder, figure.name)
            digest, kept = keep(path, inputs, post.source)
            files.append(kept or OutputFile(path, figure.data, post.source, digest))
    link_neighbours(views)
    link_related(views, config.related_posts)
    return views, files + script_files(scripts)


def _shown(
    executions: dict[str, PostExecution], previous: dict[str, PostExecution]
) -> dict[str, PostExecution]:
    """What each post that ran shows: its new results, or, when its run failed for a reason
    outside the post, its record's (that run was not saved; the record still stands)."""
    return {
        post: previous.get(post, result) if result.status == "infrastructure" else result
        for post, result in executions.items()
    }


def _local_refs(
    posts: list[Post], bodies: dict[str, ParsedBody]
) -> dict[str, tuple[LocalRef, ...]]:
    """Per post, the files beside it that its page refers to: relative images and links of
    its body, and a relative ``image:`` of its front matter (its social card)."""
    refs: dict[str, tuple[LocalRef, ...]] = {}
    for post in posts:
        body = bodies.get(post.source)
        found = list(body.local_files) if body else []
        image = post.extra.get("image")
        image = image.get("path") if isinstance(image, dict) else image
        path = local_reference(image) if isinstance(image, str) else None
        if path is not None:
            found.append(LocalRef(path, post.extra_lines.get("image", 1), required=True))
        refs[post.source] = tuple(found)
    return refs


def _needed_static(static: list[StaticFile], views: list[PostView]) -> list[StaticFile]:
    """The theme's diagram script is published only when a page draws a diagram."""
    if any(v.has_diagrams for v in views):
        return static
    return [s for s in static if not s.path.startswith(MERMAID_ASSETS)]


def colliding_outputs(files: list[SiteFile], static: list[StaticFile]) -> list[Problem]:
    """A problem for every output path produced twice (a post over a tag page, ...)."""
    owners: dict[str, str] = {}
    problems: list[Problem] = []
    origins = [(f.path, f.origin) for f in files] + [(s.path, str(s.source)) for s in static]
    for path, origin in origins:
        first = owners.setdefault(path, origin)
        both_posts = first.startswith("posts/") and origin.startswith("posts/")
        if first != origin and not both_posts:  # two posts: told by duplicate_urls
            problems.append(
                Problem(
                    origin if origin.startswith("posts") else first,
                    None,
                    f"output file {path} is produced by both {first} and {origin}",
                    "change the slug or permalink, or rename the static file",
                )
            )
    return problems


def _templates_used(posts: list[Post]) -> list[str]:
    return sorted({f"{p.layout}.html" for p in posts}) + list(SITE_TEMPLATES)


def _index_files(
    index: Future[tuple[list[SiteFile], list[Problem]]] | None,
) -> Callable[[], list[SiteFile]] | None:
    """What the site writer calls for the search index's files once the rest is written:
    they are waited for then; problems stop the write (the previous site stays)."""
    if index is None:
        return None

    def files() -> list[SiteFile]:
        made, problems = index.result()
        if problems:
            raise IndexFailed(problems)
        return made

    return files


def _fields(report: BuildReport) -> dict:
    return {name: getattr(report, name) for name in report.__slots__}


def _finish(report: BuildReport, started: float, stages: dict[str, float]) -> BuildReport:
    return BuildReport(
        **{
            **_fields(report),
            "seconds": time.perf_counter() - started,
            "stage_seconds": dict(stages),
        }
    )


def _problem_order(problem: Problem) -> tuple[str, int]:
    return (problem.path, problem.line or 0)
