"""SVG from untrusted code, made safe to publish: :func:`sanitize_svg`.

A figure file is served from the site's own origin, so an SVG holding ``<script>``, an
``onload`` attribute, a ``javascript:`` link, ``<foreignObject>`` HTML or animation that
rewrites a link would run in the site's pages' context when opened. The sanitiser parses
the SVG as XML (a plain DOCTYPE is dropped; one with entities is refused), keeps only
an allow-list of static drawing elements and presentation attributes in the SVG and
XLink namespaces, allows links and
``url(...)`` only to fragments of the same file (and embedded raster images as
``data:image/png|jpeg|gif|webp;base64``), drops style sheets that could fetch or
execute anything, and writes the result back out. Anything it cannot parse is refused
(None), never passed through. Used for ``image/svg+xml`` outputs of snippets and for
``fig-format: svg`` figures.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
XML = "http://www.w3.org/XML/1998/namespace"
MAX_SVG_BYTES = 20_000_000

ELEMENTS = frozenset(
    {
        "svg", "g", "a", "defs", "symbol", "use", "title", "desc", "switch",
        "path", "rect", "circle", "ellipse", "line", "polyline", "polygon",
        "text", "tspan", "textPath",
        "clipPath", "mask", "pattern", "marker",
        "linearGradient", "radialGradient", "stop",
        "image", "style",
    }
)  # fmt: skip
ATTRIBUTES = frozenset(
    {
        "id", "class", "style", "transform", "version", "viewBox", "preserveAspectRatio",
        "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "fx", "fy",
        "width", "height", "d", "points", "pathLength", "dx", "dy", "rotate",
        "textLength", "lengthAdjust", "startOffset", "method", "spacing",
        "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-linecap",
        "stroke-linejoin", "stroke-miterlimit", "stroke-dasharray", "stroke-dashoffset",
        "stroke-opacity", "opacity", "color", "visibility", "display", "overflow",
        "clip-path", "clip-rule", "clipPathUnits", "mask", "maskUnits", "maskContentUnits",
        "marker-start", "marker-mid", "marker-end", "markerWidth", "markerHeight",
        "markerUnits", "refX", "refY", "orient",
        "offset", "stop-color", "stop-opacity", "gradientUnits", "gradientTransform",
        "spreadMethod", "patternUnits", "patternContentUnits", "patternTransform",
        "font-family", "font-size", "font-weight", "font-style", "font-variant",
        "font-stretch", "text-anchor", "dominant-baseline", "alignment-baseline",
        "baseline-shift", "letter-spacing", "word-spacing", "text-decoration",
        "writing-mode", "direction", "unicode-bidi",
        "shape-rendering", "text-rendering", "image-rendering", "color-interpolation",
        "vector-effect", "paint-order", "mix-blend-mode", "isolation",
        "href", "space", "type", "media",
    }
)  # fmt: skip
_LINKING = frozenset({"href"})
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*")
_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.I | re.S)
_CSS_DANGER = re.compile(r"@import|@font-face|expression\s*\(|javascript:|behavior\s*:|\\|<", re.I)


PLAIN_DOCTYPE = re.compile(
    rb'<!DOCTYPE\s+svg(\s+PUBLIC\s+"[^"\[\]<>]*"\s+"[^"\[\]<>]*")?\s*>', re.I
)


def sanitize_svg(data: bytes) -> bytes | None:
    """``data`` with everything but static drawing removed; None if it is not an SVG
    document this function can parse (or is too large)."""
    if len(data) > MAX_SVG_BYTES:
        return None
    # Matplotlib writes an external-DTD DOCTYPE; it is dropped. One with an internal
    # subset (where entities live) is refused.
    data = PLAIN_DOCTYPE.sub(b"", data, count=1)
    if re.search(rb"<!(DOCTYPE|ENTITY)", data, re.I):
        return None
    try:
        root = ET.fromstring(data)  # comments and processing instructions are dropped
    except (ET.ParseError, ValueError):
        return None
    if root.tag != f"{{{SVG}}}svg":
        return None
    try:
        _clean(root)
        body = "".join(_serialise(root, top=True))
    except (RecursionError, ValueError, TypeError):  # refused, never passed through
        return None
    return body.encode("utf-8")


def _serialise(element: ET.Element, top: bool = False) -> list[str]:
    """The cleaned tree as XML: SVG elements unprefixed, XLink and XML attributes prefixed."""
    name = _local(element.tag, SVG)
    parts = [f"<{name}"]
    if top:
        parts.append(f' xmlns="{SVG}" xmlns:xlink="{XLINK}"')
    for key, value in element.attrib.items():
        if key.startswith(f"{{{XLINK}}}"):
            key = "xlink:" + key.split("}", 1)[1]
        elif key.startswith(f"{{{XML}}}"):
            key = "xml:" + key.split("}", 1)[1]
        parts.append(f" {key}={quoteattr(value)}")
    children = list(element)
    if not children and not element.text:
        parts.append("/>")
    else:
        parts.append(">" + escape(element.text or ""))
        for child in children:
            parts += _serialise(child)
            parts.append(escape(child.tail or ""))
        parts.append(f"</{name}>")
    return parts


def _clean(element: ET.Element) -> None:
    for child in list(element):
        name = _local(child.tag, SVG)
        if name not in ELEMENTS or (name == "style" and not _safe_css(child.text or "")):
            element.remove(child)
            continue
        _clean(child)
    for key in list(element.attrib):
        if not _keep(element, key):
            del element.attrib[key]
    element.tail = element.tail if element.tail is None or element.tail.strip() else None


def _keep(element: ET.Element, key: str) -> bool:
    namespace, _, local = key[1:].partition("}") if key.startswith("{") else ("", "", key)
    if namespace not in ("", XLINK, XML) or local not in ATTRIBUTES:
        return False
    if namespace == XML and local != "space":
        return False
    value = element.attrib[key]
    if local in _LINKING:
        image = _local(element.tag, SVG) == "image"
        return value.startswith("#") or (image and bool(_DATA_IMAGE.fullmatch(value)))
    if local == "style":
        return _safe_css(value)
    return _safe_value(value)


def _safe_value(value: str) -> bool:
    """No links out: ``url(...)`` only to fragments of the same document."""
    lowered = value.lower()
    if "javascript:" in lowered or "<" in value or "\\" in value:  # CSS escapes hide words
        return False
    return all(target.strip().startswith("#") for _, target in _URL.findall(value)) and (
        "url(" not in lowered or bool(_URL.search(value))
    )


def _safe_css(text: str) -> bool:
    return not _CSS_DANGER.search(text) and _safe_value(text)


def _local(tag: str, namespace: str) -> str | None:
    prefix = f"{{{namespace}}}"
    return tag[len(prefix) :] if isinstance(tag, str) and tag.startswith(prefix) else None
