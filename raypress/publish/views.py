"""What templates see: plain objects built from Posts and their rendered bodies.

Front-matter values reach templates as data (autoescaped), never as template source.
Only ``content`` and ``excerpt``, HTML that raypress rendered itself, are Markup.
"""

from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup

from raypress.config import Config
from raypress.execution.model import FAILED, NOT_RUN, PostExecution, format_duration
from raypress.paths import slugify
from raypress.publish.markdown import ParsedBody, TocEntry
from raypress.publish.posts import Post


@dataclass(frozen=True, slots=True)
class SiteView:
    title: str
    description: str
    author: str
    url: str
    baseurl: str
    language: str
    feed_path: str = "/feed.xml"


@dataclass(frozen=True, slots=True)
class Term:
    """A tag or a category, with the URL of its page."""

    name: str
    slug: str
    kind: str  # "tag" or "category"

    @property
    def url(self) -> str:
        folder = "tags" if self.kind == "tag" else "categories"
        return f"/{folder}/{self.slug}/"


@dataclass(frozen=True, slots=True)
class SnippetTiming:
    number: int  # 1-based, as in the page's #snippet-N anchors
    label: str | None
    status: str
    wall_s: float
    duration: str  # formatted wall time


@dataclass(frozen=True, slots=True)
class ExecutionView:
    """When, where and how a post's snippets ran (the post footer, the timings page)."""

    measured_at: datetime
    python: str
    ray: str | None
    cpu: str
    cpu_count: int
    node: str | None  # the cluster node it ran on, when sessions ran as cluster work
    status: str
    snippets: list[SnippetTiming]
    total: str  # formatted sum of the snippets' wall times
    slowest: SnippetTiming | None
    failures: int
    script_url: str
    report_url: str


@dataclass(slots=True, eq=False)
class PostView:
    """A post as its templates see it (``post.title``, ``post.content``, ...)."""

    title: str
    url: str
    date: datetime
    updated: datetime | None
    author: str
    description: str | None
    tags: list[Term]
    categories: list[Term]
    content: Markup
    excerpt: Markup
    excerpt_text: str
    reading_time: int
    word_count: int
    snippet_count: int
    toc: tuple[TocEntry, ...]
    draft: bool
    future: bool
    source_path: str
    feed_id: str
    extra: dict[str, Any]
    execution: Any = None
    unexecuted: str | None = None  # --no-exec and no record: why there are no outputs
    previous: PostView | None = field(default=None, repr=False)
    next: PostView | None = field(default=None, repr=False)

    @property
    def lastmod(self) -> datetime:
        return self.updated or self.date


def site_view(config: Config) -> SiteView:
    """The ``site`` object of every template."""
    return SiteView(
        title=config.title,
        description=config.description,
        author=config.author,
        url=config.url,
        baseurl=config.baseurl,
        language=config.language,
    )


def feed_id(config: Config, path: str) -> str:
    """A stable absolute IRI for an Atom id: the page's URL, or a urn:uuid without one."""
    if config.url:
        return config.url + config.baseurl + path
    return uuid.uuid5(uuid.NAMESPACE_URL, f"raypress:{config.title}:{path}").urn


def term(name: str, kind: str) -> Term:
    """The Term for a tag or category name (its page lives at /tags/<slug>/)."""
    return Term(name=name, slug=slugify(name) or "untitled", kind=kind)


def execution_view(
    post: Post, body: ParsedBody, execution: PostExecution, script_url: str, report_url: str
) -> ExecutionView:
    """The template view of a post's execution."""
    environment = execution.environment
    labels = {s.index: s.options.label for s in body.snippets}
    timings = [
        SnippetTiming(
            number=r.index + 1,
            label=labels.get(r.index),
            status=r.status,
            wall_s=r.wall_s,
            duration=format_duration(r.wall_s),
        )
        for r in execution.snippets
        if r.status not in NOT_RUN
    ]
    return ExecutionView(
        measured_at=datetime.fromisoformat(execution.started_at),
        python=environment.python,
        ray=environment.ray_version,
        cpu=environment.cpu,
        cpu_count=environment.cpu_count,
        node=environment.node,
        status=execution.status,
        snippets=timings,
        total=format_duration(sum(t.wall_s for t in timings)),
        slowest=max(timings, key=lambda t: t.wall_s, default=None),
        failures=sum(1 for r in execution.snippets if r.status in FAILED),
        script_url=script_url,
        report_url=report_url,
    )


def post_view(
    post: Post,
    body: ParsedBody,
    content: str,
    config: Config,
    now: datetime,
    execution: ExecutionView | None = None,
) -> PostView:
    """The template view of one post; ``content`` is its final body HTML."""
    return PostView(
        title=post.title,
        url=post.url,
        date=post.date,
        updated=post.updated,
        author=post.author or config.author,
        description=post.description,
        tags=[term(t, "tag") for t in post.tags],
        categories=[term(c, "category") for c in post.categories],
        content=Markup(content),
        excerpt=Markup(body.excerpt_html),
        excerpt_text=post.description or body.excerpt_text,
        reading_time=max(1, math.ceil(body.word_count / config.words_per_minute)),
        word_count=body.word_count,
        snippet_count=len(body.snippets),
        toc=body.toc,
        draft=post.draft,
        future=post.is_future(now),
        source_path=post.source,
        feed_id=feed_id(config, post.url),
        extra=post.extra,
        execution=execution,
    )


def link_neighbours(views: list[PostView]) -> None:
    """Set ``previous`` (older) and ``next`` (newer) on views sorted newest first."""
    for newer, older in itertools.pairwise(views):
        newer.previous = older
        older.next = newer
