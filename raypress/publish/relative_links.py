"""``relative_urls = true``: every internal link of the site's pages made relative to the
page, so the output folder works opened from disk (``file://``) or served under any path.

Design note: the pages are rewritten after rendering, as Hugo's ``relativeURLs`` does,
rather than by the templates' ``relative_url`` filter: links come from templates, from
post bodies (``[x](/2025/...)``, raw HTML) and from snippet output alike, and only the
finished page knows them all. A link is internal when it is a path under the site's
``baseurl`` (``/blog/x/`` or ``/x/``); scheme, protocol-relative, fragment-only and
already-relative links are left as they are. A link to a folder gets its ``index.html``
named (a browser opening files shows a folder as a listing), and a link to ``/x`` that the
site serves as ``x/index.html`` is followed there. Files that are not HTML (the feed, the
sitemap: they need absolute URLs) are not touched, nor is ``404.html``: a server sends it
for a missing page at any depth, where only site-absolute links still lead somewhere.
"""

from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Iterable

from raypress.publish.posts import url_escape, url_path
from raypress.publish.site_writer import OutputFile

_LINK_ATTRIBUTE = re.compile(
    r"""(\s(?:href|src|action|poster|formaction)\s*=\s*)(?:"([^"]*)"|'([^']*)')""",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
NOT_FOUND_PAGE = "404.html"


def make_links_relative(
    files: list[OutputFile], other_paths: Iterable[str], baseurl: str
) -> list[OutputFile]:
    """``files`` with the links of their HTML pages relative; ``other_paths`` are the
    site's other files (static files, theme assets), which links may point at."""
    known = {f.path for f in files} | set(other_paths)
    return [
        OutputFile(f.path, _rewrite_page(f.data, f.path, known, baseurl), f.origin)
        if f.path.endswith(".html") and f.path != NOT_FOUND_PAGE
        else f
        for f in files
    ]


def _rewrite_page(data: bytes, page: str, known: set[str], baseurl: str) -> bytes:
    html = data.decode("utf-8")
    folder = posixpath.dirname(page)

    def replace(match: re.Match[str]) -> str:
        value = match.group(2) if match.group(2) is not None else match.group(3)
        quote = '"' if match.group(2) is not None else "'"
        return f"{match.group(1)}{quote}{relative_link(value, folder, known, baseurl)}{quote}"

    return _LINK_ATTRIBUTE.sub(replace, html).encode("utf-8")


def relative_link(value: str, folder: str, known: set[str], baseurl: str) -> str:
    """The link ``value`` (as written in the page, HTML-escaped) seen from a page in
    ``folder`` (relative to the output folder); unchanged when it is not internal."""
    link = html.unescape(value)
    if not link.startswith("/") or link.startswith("//") or _SCHEME.match(link):
        return value
    if baseurl:
        if link != baseurl and not link.startswith(baseurl + "/"):
            return value  # another application on the same host
        link = link[len(baseurl) :] or "/"
    cut = min((i for i in (link.find("?"), link.find("#")) if i >= 0), default=len(link))
    path, rest = link[:cut], link[cut:]
    try:
        target = url_path(path).lstrip("/")
    except UnicodeDecodeError:
        return value
    if target == "" or target.endswith("/"):
        target += "index.html"
    elif target not in known and f"{target}/index.html" in known:
        target += "/index.html"
    return html.escape(url_escape(posixpath.relpath(target, folder or ".")) + rest)
