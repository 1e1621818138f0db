"""Session side of rich output: objects as Jupyter MIME bundles, matplotlib figures as images.

:func:`mime_bundle` does what IPython's display formatter does, without IPython: an
object's ``_repr_mimebundle_``, then its ``_repr_html_``, ``_repr_markdown_``,
``_repr_svg_``, ``_repr_png_``, ``_repr_jpeg_``, ``_repr_latex_``, ``_repr_json_`` and
``_repr_javascript_``, and a pretty-printed ``repr`` as ``text/plain``. A matplotlib
figure becomes its image only (as IPython's inline backend shows it).

Figures are saved at twice their resolution (PNG, or lossless WebP) with their CSS size
(the 1x size) in the metadata, as IPython's ``retina`` format does, or as SVG.

Everything here is sent raw; the build process bounds and sanitises it (a snippet could
forge anything it sends, so the session is not where that check belongs).
"""

from __future__ import annotations

import base64
import io
import json
import pprint
import re
import sys
from typing import Any

_REPR_LIMIT = 1_000_000  # characters of text/plain; the build process applies the real cap
_VALUE_LIMIT = 20_000_000  # bytes of any one MIME value: more is dropped with a note
_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
)
_BINARY = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_SVG_SIZE = re.compile(rb'<svg[^>]*?\swidth="([\d.]+)pt"[^>]*?\sheight="([\d.]+)pt"', re.S)

Bundle = tuple[dict[str, Any], dict[str, Any]]  # (data, metadata), JSON-ready


def mime_bundle(value: Any, fig_format: str, fig_dpi: int | None, notes: list[str]) -> Bundle:
    """``value`` as a MIME bundle; problems of its own repr methods are added to ``notes``."""
    figure = _figure_class()
    if figure is not None and isinstance(value, figure):
        data, metadata = save_figure(value, fig_format, fig_dpi, notes)
        close_figure(value)
        data["text/plain"] = _plain(value)
        return data, metadata
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if isinstance(value, type):  # a class: its _repr_*_ are unbound methods
        return {"text/plain": _plain(value)}, {}
    method = getattr(value, "_repr_mimebundle_", None)
    if callable(method):
        try:
            produced = method(include=None, exclude=None)
        except Exception as exc:
            notes.append(f"_repr_mimebundle_() failed: {type(exc).__name__}: {exc}")
            produced = None
        if isinstance(produced, tuple) and len(produced) == 2:
            produced, extra = produced
            if isinstance(extra, dict):
                metadata.update(extra)
        if isinstance(produced, dict):
            for mime, item in produced.items():
                _put(data, str(mime), item, notes)
    for mime, name in _REPR_METHODS:
        if mime in data:
            continue
        method = getattr(value, name, None)
        if not callable(method):
            continue
        try:
            produced = method()
        except Exception as exc:
            notes.append(f"{name}() failed: {type(exc).__name__}: {exc}")
            continue
        if isinstance(produced, tuple) and len(produced) == 2:
            produced, extra = produced
            if isinstance(extra, dict):
                metadata[mime] = extra
        if produced is not None:
            _put(data, mime, produced, notes)
    if "text/plain" not in data:
        data["text/plain"] = _plain(value)
    if not any(mime.startswith("image/") for mime in data):
        _static_fallback(value, data, notes)
    return data, _json_ready(metadata)


def _static_fallback(value: Any, data: dict[str, Any], notes: list[str]) -> None:
    """A static image of an interactive chart, where its library offers one: an altair
    chart as SVG when vl-convert is installed (pages that may not run scripts show it)."""
    if not type(value).__module__.startswith("altair.") or "vl_convert" not in _importable():
        return
    buffer = io.StringIO()
    try:
        value.save(buffer, format="svg")
    except Exception as exc:
        notes.append(f"no static image of the altair chart: {type(exc).__name__}: {exc}")
        return
    _put(data, "image/svg+xml", buffer.getvalue(), notes)


def _importable() -> set[str]:
    import importlib.util

    return {name for name in ("vl_convert",) if importlib.util.find_spec(name) is not None}


def raw_bundle(data: Any, metadata: Any, notes: list[str]) -> Bundle:
    """A bundle given as such (``display(bundle, raw=True)``, ``publish_display_data``)."""
    bundle: dict[str, Any] = {}
    if isinstance(data, dict):
        for mime, item in data.items():
            _put(bundle, str(mime), item, notes)
    return bundle, _json_ready(metadata if isinstance(metadata, dict) else {})


def _put(data: dict[str, Any], mime: str, value: Any, notes: list[str]) -> None:
    """Store one MIME value in its JSON form (base64 for binary images)."""
    if mime in _BINARY:
        if isinstance(value, bytes | bytearray | memoryview):
            value = base64.b64encode(bytes(value)).decode("ascii")
        elif isinstance(value, str):
            value = "".join(value.split())  # already base64 (IPython.display.Image)
        else:
            return
    elif mime == "application/json" or mime.endswith("+json"):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            notes.append(f"{mime} output is not JSON: {exc}")
            return
    elif isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif not isinstance(value, str):
        return
    size = len(value) if isinstance(value, str) else len(json.dumps(value))
    if size > _VALUE_LIMIT:
        notes.append(f"{mime} output left out: {size:,} bytes")
        return
    data[mime] = value


def _json_ready(metadata: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError):
        return {}
    return metadata


def _plain(value: Any) -> str:
    try:  # like a notebook's Out: long lists and dicts wrap, one item a line
        text = pprint.pformat(value, width=88, sort_dicts=False)
    except Exception as exc:  # the value's own bug: say so instead of failing the snippet
        text = f"<repr() failed: {type(exc).__name__}: {exc}>"
    return text[:_REPR_LIMIT]


# --- matplotlib -------------------------------------------------------------------------


def _figure_class() -> type | None:
    module = sys.modules.get("matplotlib.figure")
    return getattr(module, "Figure", None) if module is not None else None


def open_figures() -> list[Any]:
    """The open pyplot figures, oldest first (none if pyplot is unused)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    return [pyplot.figure(number) for number in pyplot.get_fignums()]


def close_figure(figure: Any) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)


def close_all_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def save_figure(figure: Any, fig_format: str, fig_dpi: int | None, notes: list[str]) -> Bundle:
    """A figure as an image: PNG or lossless WebP at 2x, or SVG; its CSS size (the 1x
    size, in pixels) and its title (as alt text) in the metadata."""
    dpi = float(fig_dpi or figure.dpi)
    buffer = io.BytesIO()
    options: dict[str, Any] = {"bbox_inches": "tight", "facecolor": "white"}
    try:
        if fig_format == "svg":
            figure.savefig(buffer, format="svg", dpi=dpi, metadata={"Date": None}, **options)
        elif fig_format == "webp":
            pil = {"lossless": True, "quality": 100, "method": 4}
            figure.savefig(buffer, format="webp", dpi=2 * dpi, pil_kwargs=pil, **options)
        else:
            figure.savefig(buffer, format="png", dpi=2 * dpi, **options)
    except Exception as exc:
        notes.append(f"a figure could not be saved: {type(exc).__name__}: {exc}")
        return {}, {}
    data = buffer.getvalue()
    metadata: dict[str, Any] = {"alt": figure_title(figure)}
    if fig_format == "svg":
        size = _SVG_SIZE.search(data[:2000])
        if size:  # points to CSS pixels at the figure's resolution
            width, height = (float(size.group(i)) * dpi / 72 for i in (1, 2))
            metadata["image/svg+xml"] = {"width": round(width), "height": round(height)}
        return {"image/svg+xml": data.decode("utf-8")}, metadata
    mime = "image/webp" if fig_format == "webp" else "image/png"
    pixels = image_size(data)
    if pixels:
        metadata[mime] = {"width": round(pixels[0] / 2), "height": round(pixels[1] / 2)}
    return {mime: base64.b64encode(data).decode("ascii")}, metadata


def figure_title(figure: Any) -> str:
    """A figure's title (suptitle, then the first axes title), "" without one."""
    suptitle = getattr(figure, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return str(suptitle.get_text())
    for axes in figure.get_axes():
        if axes.get_title():
            return str(axes.get_title())
    return ""


def image_size(data: bytes) -> tuple[int, int] | None:
    """Pixel width and height of a PNG, GIF or WebP from its header (None: unknown)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(
                data[27:30], "little"
            ) + 1
        if chunk == b"VP8 ":
            return (
                int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF,
            )
    return None
