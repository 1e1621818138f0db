"""feed.xml is a valid Atom feed (RFC 4287) and sitemap.xml a valid sitemap whose every
location is absolute and served by a file of the built site."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest_publishing import SITE_URL, Project, post_text

ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
W3C_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$")


def is_absolute_iri(value: str) -> bool:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        return bool(parts.netloc)
    return parts.scheme in ("urn", "tag") and bool(parts.path)


def check_rfc3339(value: str | None) -> datetime:
    assert value is not None and RFC3339.match(value), f"not an RFC 3339 date-time: {value!r}"
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def one(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.findall(ATOM + tag)
    assert len(found) == 1, f"<{parent.tag}> must have exactly one <{tag}>, has {len(found)}"
    return found[0]


def write_feed_posts(project: Project) -> None:
    project.add_example_posts()
    project.post(
        "2025-12-01-categorised.md",
        post_text(
            "A post with *categories*, an `updated` date & an author.\n",
            title='"Categories, updates & <authors>"',
            date="2025-12-01 08:15:00 +02:00",
            updated="2025-12-03T10:00:00Z",
            categories="[Notes, Ray]",
            tags="[ray]",
            author="Ada",
        ),
    )
    project.post("2025-12-02-draft.md", post_text("Not yet.\n", title="Draft", draft="true"))


@pytest.fixture
def feed_project(project: Project) -> Project:
    write_feed_posts(project)
    project.build_ok()
    return project


def test_feed_is_atom_with_the_required_feed_elements(feed_project: Project) -> None:
    root = ET.fromstring((feed_project.site / "feed.xml").read_bytes())
    assert root.tag == ATOM + "feed"
    assert is_absolute_iri(one(root, "id").text or "")
    assert (one(root, "title").text or "").strip() == "raypress test site"
    check_rfc3339(one(root, "updated").text)
    self_links = [link for link in root.findall(ATOM + "link") if link.get("rel") == "self"]
    assert len(self_links) == 1
    assert self_links[0].get("href") == f"{SITE_URL}/feed.xml"
    entries = root.findall(ATOM + "entry")
    feed_authors = root.findall(ATOM + "author")
    assert feed_authors or all(e.findall(ATOM + "author") for e in entries)
    for author in feed_authors:
        assert (one(author, "name").text or "").strip()


def test_feed_entries_have_id_title_updated_and_link(feed_project: Project) -> None:
    root = ET.fromstring((feed_project.site / "feed.xml").read_bytes())
    entries = root.findall(ATOM + "entry")
    assert len(entries) == 5  # four example posts and one more; the draft is left out
    ids = []
    for entry in entries:
        entry_id = one(entry, "id").text or ""
        assert is_absolute_iri(entry_id), entry_id
        ids.append(entry_id)
        assert (one(entry, "title").text or "").strip()
        updated = check_rfc3339(one(entry, "updated").text)
        published = entry.find(ATOM + "published")
        if published is not None:
            assert check_rfc3339(published.text) <= updated
        alternates = [
            link
            for link in entry.findall(ATOM + "link")
            if link.get("rel", "alternate") == "alternate"
        ]
        assert len(alternates) == 1
        href = alternates[0].get("href") or ""
        assert href.startswith(SITE_URL + "/"), href
        page = urlsplit(href).path
        assert (feed_project.site / page.lstrip("/") / "index.html").is_file(), href
        content = entry.find(ATOM + "content")
        if content is not None and content.get("type") == "html":
            assert "<p>" in (content.text or "")  # escaped HTML, parsed back by the XML parser
    assert len(set(ids)) == len(ids), "entry ids must be unique"


def test_feed_keeps_time_zones_and_updated_dates(feed_project: Project) -> None:
    root = ET.fromstring((feed_project.site / "feed.xml").read_bytes())
    newest = root.findall(ATOM + "entry")[0]
    assert (one(newest, "title").text or "") == "Categories, updates & <authors>"
    assert one(newest, "published").text == "2025-12-01T08:15:00+02:00"
    assert check_rfc3339(one(newest, "updated").text) == check_rfc3339("2025-12-03T10:00:00Z")
    assert check_rfc3339(one(root, "updated").text) == check_rfc3339("2025-12-03T10:00:00Z")
    terms = {c.get("term") for c in newest.findall(ATOM + "category")}
    assert {"Notes", "Ray", "ray"} <= terms
    assert (one(one(newest, "author"), "name").text or "") == "Ada"


def test_feed_ids_stay_absolute_without_a_site_url(project: Project) -> None:
    project.configure(title="No URL")
    write_feed_posts(project)
    project.build_ok()
    root = ET.fromstring((project.site / "feed.xml").read_bytes())
    ids = [one(root, "id").text or ""]
    ids += [one(entry, "id").text or "" for entry in root.findall(ATOM + "entry")]
    for value in ids:
        assert is_absolute_iri(value), value
    assert len(set(ids)) == len(ids)


def test_feed_of_an_empty_site_is_valid(project: Project) -> None:
    project.build_ok()
    root = ET.fromstring((project.site / "feed.xml").read_bytes())
    check_rfc3339(one(root, "updated").text)
    assert root.findall(ATOM + "entry") == []


def sitemap_locations(project: Project) -> list[tuple[str, str | None]]:
    root = ET.fromstring((project.site / "sitemap.xml").read_bytes())
    assert root.tag == SITEMAP + "urlset"
    found = []
    for url in root.findall(SITEMAP + "url"):
        loc = url.find(SITEMAP + "loc")
        assert loc is not None and loc.text
        lastmod = url.find(SITEMAP + "lastmod")
        found.append((loc.text.strip(), None if lastmod is None else lastmod.text))
    return found


def served_file(site: Path, path: str) -> Path:
    relative = path.lstrip("/")
    return site / (relative + "index.html" if relative.endswith("/") or not relative else relative)


@pytest.mark.parametrize("baseurl", ["", "/blog"])
def test_sitemap_locations_are_absolute_and_exist(feed_project: Project, baseurl: str) -> None:
    if baseurl:
        feed_project.build_ok("--baseurl", baseurl)
    locations = sitemap_locations(feed_project)
    assert locations
    prefix = SITE_URL + baseurl + "/"
    for loc, lastmod in locations:
        parts = urlsplit(loc)
        assert parts.scheme == "https" and parts.netloc, f"not absolute: {loc}"
        assert loc.startswith(prefix), loc
        path = "/" + loc[len(prefix) :]
        assert served_file(feed_project.site, path).is_file(), f"{loc} is not in _site/"
        if lastmod is not None:
            assert W3C_DATE.match(lastmod), lastmod
    posts = {
        p.relative_to(feed_project.site).parent.as_posix() + "/"
        for p in feed_project.site.glob("20[0-9][0-9]/*/*/*/index.html")
    }
    listed = {loc[len(prefix) :] for loc, _ in locations}
    assert posts and posts <= listed, "every post page is in the sitemap"
    assert not any("draft" in loc for loc, _ in locations)
    assert len(set(listed)) == len(listed)
