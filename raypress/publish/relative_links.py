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

from raypress.publish.posts import url_escape, url_path

_LINK_ATTRIBUTE = re.compile(
    r"""(\s(?:href|src|action|poster|formaction)\s*=\s*)(?:"([^"]*)"|'([^']*)')""",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
NOT_FOUND_PAGE = "404.html"


def page_links_relative(
    data: bytes, page: str, static_paths: frozenset[str], baseurl: str
) -> bytes:
    """The page ``data`` (at ``page`` in the output folder) with its links relative, when
    it is an HTML page other than ``404.html``. ``static_paths`` are the site's copied
    files (static files, theme assets), which links may point at as they are."""
    if not page.endswith(".html") or page == NOT_FOUND_PAGE:
        return data
    return _rewrite_page(data, page, static_paths, baseurl)


def _rewrite_page(data: bytes, page: str, known: frozenset[str], baseurl: str) -> bytes:
    html = data.decode("utf-8")
    folder = posixpath.dirname(page)

    def replace(match: re.Match[str]) -> str:
        value = match.group(2) if match.group(2) is not None else match.group(3)
        quote = '"' if match.group(2) is not None else "'"
        return f"{match.group(1)}{quote}{relative_link(value, folder, known, baseurl)}{quote}"

    return _LINK_ATTRIBUTE.sub(replace, html).encode("utf-8")


def relative_link(value: str, folder: str, known: frozenset[str], baseurl: str) -> str:
    """The link ``value`` (as written in the page, HTML-escaped) seen from a page in
    ``folder`` (relative to the output folder); unchanged when it is not internal.
    ``known`` are the site's copied files: a link to one is kept as it is; any other link
    without a file extension is a page, served as its folder's ``index.html`` (the rule of
    :func:`raypress.paths.safe_output_file`), so a page's links do not depend on which
    other pages exist and a page kept from the last build stays right."""
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
    elif target not in known and not posixpath.splitext(target)[1]:
        target += "/index.html"
    return html.escape(url_escape(posixpath.relpath(target, folder or ".")) + rest)
