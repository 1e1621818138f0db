"""Sanitise SVG that a snippet produced (fig-format: svg, _repr_svg_, display(SVG(...))).

SVG is XML that can carry scripts: ``<script>``, ``on*`` handlers, ``javascript:`` links,
``<foreignObject>`` with HTML inside. An SVG figure is written as a file of the site, and
opening that file on its own (not through ``<img>``) would run its scripts on the site's
origin. So it is parsed as XML (expat refuses external entities and bounds entity
expansion) and rebuilt from an allow-list: known drawing elements, attributes that are
not event handlers, links only to fragments of the same document (``#id``) or to
embedded raster images (``data:image/png|jpeg|gif|webp``), and ``<style>`` text without
``@import`` or external ``url()``. Anything that does not parse becomes an empty SVG
saying so, never the input unchanged.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
_ELEMENTS = frozenset(
    [
        "svg",
        "g",
        "a",
        "defs",
        "symbol",
        "use",
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "tspan",
        "textPath",
        "title",
        "desc",
        "clipPath",
        "mask",
        "pattern",
        "linearGradient",
        "radialGradient",
        "stop",
        "image",
        "marker",
        "filter",
        "feBlend",
        "feColorMatrix",
        "feComponentTransfer",
        "feComposite",
        "feConvolveMatrix",
        "feDiffuseLighting",
        "feDisplacementMap",
        "feDistantLight",
        "feFlood",
        "feFuncA",
        "feFuncB",
        "feFuncG",
        "feFuncR",
        "feGaussianBlur",
        "feImage",
        "feMerge",
        "feMergeNode",
        "feMorphology",
        "feOffset",
        "fePointLight",
        "feSpecularLighting",
        "feSpotLight",
        "feTile",
        "feTurbulence",
        "style",
        "switch",
    ]
)
_SAFE_LINK = re.compile(r"^\s*(#[\w.:-]*|data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*)$")
_BAD_CSS = re.compile(r"@import|expression\s*\(|url\s*\(\s*(?![\s'\"]*#)[^)]*\)", re.I)
_LIMIT = 20_000_000

ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)


def sanitise_svg(data: bytes) -> bytes:
    """``data`` rebuilt from what is safe in SVG (see the module's note), as UTF-8 bytes."""
    if len(data) > _LIMIT:
        return _placeholder("SVG over 20 MB left out")
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError):
        return _placeholder("SVG that does not parse left out")
    if _local(root.tag) != "svg" or _namespace(root.tag) not in (SVG_NS, ""):
        return _placeholder("not an SVG document")
    if _namespace(root.tag) == "":  # inline-HTML style SVG without xmlns: give it one
        for element in root.iter():
            if isinstance(element.tag, str) and not _namespace(element.tag):
                element.tag = f"{{{SVG_NS}}}{element.tag}"
    _clean(root)
    return ET.tostring(root, encoding="unicode").encode("utf-8")


def _clean(element: ET.Element) -> None:
    for name in list(element.attrib):
        value = element.attrib[name]
        local = _local(name).lower()
        bad_link = local == "href" and not _SAFE_LINK.match(value)
        if local.startswith("on") or bad_link or _BAD_CSS.search(value):
            del element.attrib[name]
    if _local(element.tag) == "style":
        element.text = _BAD_CSS.sub("none", element.text or "")
        element[:] = []
        return
    for child in list(element):
        if not isinstance(child.tag, str) or _namespace(child.tag) != SVG_NS:
            element.remove(child)  # comments, processing instructions, foreign namespaces
        elif _local(child.tag) not in _ELEMENTS:
            element.remove(child)
        else:
            _clean(child)


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _placeholder(reason: str) -> bytes:
    return (
        f'<svg xmlns="{SVG_NS}" width="320" height="40"><text x="8" y="24">{reason}</text></svg>'
    ).encode()
