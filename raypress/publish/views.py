"""What templates see: plain objects built from Posts and their rendered bodies.

Front-matter values reach templates as data (autoescaped), never as template source.
Only ``content`` and ``excerpt``, HTML that raypress rendered itself, are Markup.
"""

from __future__ import annotations

import functools
import heapq
import html
import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

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
    image: str = "/assets/icon-512.png"  # the social-card image of pages without their own
    twitter_site: str = ""
    search: bool = True


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

    @property
    def feed_path(self) -> str:
        """The Atom feed of the posts with this tag or category."""
        return self.url + "feed.xml"


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
    ray_requested: str | None  # what its ray.init asked for: "num_cpus=4"
    ray_given: str | None  # what it ran on: "a fresh cluster of 4 CPUs, 0 GPUs"
    snippets: list[SnippetTiming]
    total: str  # formatted sum of the snippets' wall times
    slowest: SnippetTiming | None
    failures: int
    script_url: str
    report_url: str
    notebook_url: str = ""  # the post as .ipynb with its outputs
    colab_url: str = ""  # "Open in Colab" (notebook posts, with repository_url)
    binder_url: str = ""  # "Launch Binder" (with repository_url)
    isolation: str = ""  # "" when the sandbox was complete; else "reduced — …"


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
    # sharing and reading (social cards, JSON-LD; scripts only where the page needs them)
    image: SocialImage | None = None  # its own image: front matter `image:` or first figure
    has_code: bool = False
    has_diagrams: bool = False
    has_math: bool = False
    related: list[PostView] = field(default_factory=list, repr=False)  # sharing tags
    # what the view was made from, for page digests (page_inputs.made_from); b"": unknown
    inputs: bytes = field(default=b"", repr=False)

    @property
    def lastmod(self) -> datetime:
        return self.updated or self.date


@dataclass(frozen=True, slots=True)
class SocialImage:
    """The image of a post's social card: a site path (``/2025/11/01/x/plot.png``, without
    the baseurl) or a full URL, and its alt text."""

    url: str
    alt: str = ""


def site_view(config: Config) -> SiteView:
    """The ``site`` object of every template."""
    return SiteView(
        title=config.title,
        description=config.description,
        author=config.author,
        url=config.url,
        baseurl=config.baseurl,
        language=config.language,
        image=config.image or "/assets/icon-512.png",
        twitter_site=config.twitter_site,
        search=config.search,
    )


def feed_id(config: Config, path: str) -> str:
    """A stable absolute IRI for an Atom id: the page's URL, or a urn:uuid without one."""
    if config.url:
        return config.url + config.baseurl + path
    import uuid  # here: only a site without a URL needs it (it imports platform)

    return uuid.uuid5(uuid.NAMESPACE_URL, f"raypress:{config.title}:{path}").urn


@functools.lru_cache(maxsize=4096)  # a site has few names, each on many posts; Terms are frozen
def term(name: str, kind: str) -> Term:
    """The Term for a tag or category name (its page lives at /tags/<slug>/)."""
    return Term(name=name, slug=slugify(name) or "untitled", kind=kind)


def launch_urls(config: Config, post: Post) -> tuple[str, str]:
    """The Colab and Binder links of a post ("" without ``repository_url``), as Jupyter
    Book makes them: Binder opens the post's source (Jupytext reads Markdown), Colab
    only notebooks."""
    if not config.repository_url:
        return "", ""
    repository = config.repository_url.removeprefix("https://github.com/")
    branch = config.repository_branch
    binder = f"https://mybinder.org/v2/gh/{repository}/{branch}?labpath={post.source}"
    colab = ""
    if post.source.endswith(".ipynb"):
        colab = f"https://colab.research.google.com/github/{repository}/blob/{branch}/{post.source}"
    return colab, binder


def execution_view(
    post: Post,
    body: ParsedBody,
    execution: PostExecution,
    script_url: str,
    report_url: str,
    notebook_url: str = "",
    launch: tuple[str, str] = ("", ""),
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
        ray_requested=environment.ray_requested,
        ray_given=environment.ray_given,
        snippets=timings,
        total=format_duration(sum(t.wall_s for t in timings)),
        slowest=max(timings, key=lambda t: t.wall_s, default=None),
        failures=sum(1 for r in execution.snippets if r.status in FAILED),
        script_url=script_url,
        report_url=report_url,
        notebook_url=notebook_url,
        colab_url=launch[0],
        binder_url=launch[1],
        isolation=environment.isolation,
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
        image=social_image(post, content, config.baseurl),
        has_code=body.has_code,
        has_diagrams=body.has_diagrams,
        has_math=body.has_math,
    )


_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r'\b(src|alt)="([^"]*)"', re.IGNORECASE)
_CARD_FORMATS = (".png", ".jpg", ".jpeg", ".gif", ".webp")  # what social sites display


def social_image(post: Post, content: str, baseurl: str = "") -> SocialImage | None:
    """The post's own image for social cards: front matter ``image:`` (a path relative to
    the post, a site path or a URL; or ``{path: ..., alt: ...}``), else the first raster
    image of its content (a figure of a snippet, an image of the prose). None: the site's."""
    front = post.extra.get("image")
    if isinstance(front, dict):
        path, alt = front.get("path") or front.get("url"), front.get("alt") or ""
    else:
        path, alt = front, ""
    if isinstance(path, str) and path.strip():
        return SocialImage(_site_path(path.strip(), post.url, baseurl), str(alt))
    for tag in _IMG.findall(content):
        attributes = {k.lower(): html.unescape(v) for k, v in _ATTRIBUTE.findall(tag)}
        src = attributes.get("src", "")
        if src.split("?", 1)[0].lower().endswith(_CARD_FORMATS):
            return SocialImage(_site_path(src, post.url, baseurl), attributes.get("alt", ""))
    return None


def _site_path(src: str, page_url: str, baseurl: str) -> str:
    if "://" in src:
        return src
    if src.startswith("/"):  # rendered with the baseurl in front: take it off again
        return src[len(baseurl) :] if baseurl and src.startswith(baseurl + "/") else src
    return urljoin(page_url, src)


def link_related(views: list[PostView], count: int) -> None:
    """Set ``related`` on each view: up to ``count`` other posts sharing most of its tags
    (then the newest first, then the first in ``views``). Counted per tag, in C (a
    Counter over the posts of each of its tags), not by comparing every pair of posts:
    a thousand tagged posts took most of a second that way."""
    if count <= 0:
        return
    # every post's place in the order of ties: newest first, then as in ``views``
    order = sorted(range(len(views)), key=lambda i: (-views[i].date.timestamp(), i))
    rank = [0] * len(views)
    for place, index in enumerate(order):
        rank[index] = place
    tags = [{t.slug for t in view.tags} for view in views]
    members: dict[str, list[int]] = {}  # tag -> ranks of its posts
    for index, slugs in enumerate(tags):
        for slug in slugs:
            members.setdefault(slug, []).append(rank[index])
    weight = len(views) + 1  # one more shared tag outranks any place
    for index, view in enumerate(views):
        if not tags[index]:
            continue
        shared = Counter(itertools.chain.from_iterable(members[s] for s in tags[index]))
        del shared[rank[index]]
        best = heapq.nsmallest(count, [place - n * weight for place, n in shared.items()])
        view.related = [views[order[key % weight]] for key in best]


def link_neighbours(views: list[PostView]) -> None:
    """Set ``previous`` (older) and ``next`` (newer) on views sorted newest first."""
    for newer, older in itertools.pairwise(views):
        newer.previous = older
        older.next = newer
