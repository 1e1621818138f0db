"""Session side of rich output: a final expression's repr and HTML, matplotlib figures.

The HTML is sent raw; the build process sanitises it (a snippet could forge anything it
sends, so the session is not where that check belongs).
"""

from __future__ import annotations

import io
import pprint
import sys
from typing import Any

from raypress.execution.protocol import b64

_REPR_LIMIT = 1_000_000  # characters; the build process applies the real cap


def value_texts(value: Any) -> tuple[str | None, str | None, list[str]]:
    """The pretty-printed ``repr`` and the ``_repr_html_`` of a final expression's value
    (None shows nothing)."""
    if value is None:
        return None, None, []
    notes: list[str] = []
    try:  # like a notebook's Out: long lists and dicts wrap, one item a line
        text = pprint.pformat(value, width=88, sort_dicts=False)
    except Exception as exc:  # the value's own bug: say so instead of failing the snippet
        text = f"<repr() failed: {type(exc).__name__}: {exc}>"
    html = None
    method = getattr(value, "_repr_html_", None)
    if callable(method) and not isinstance(value, type):
        try:
            result = method()
        except Exception as exc:
            notes.append(f"_repr_html_() failed: {type(exc).__name__}: {exc}")
        else:
            html = result if isinstance(result, str) else None
    return text[:_REPR_LIMIT], html[:_REPR_LIMIT] if html else None, notes


def collect_figures(snippet_index: int) -> tuple[list[dict[str, str]], list[str]]:
    """Save every open matplotlib figure as PNG and close it (nothing if pyplot is unused)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return [], []
    images: list[dict[str, str]] = []
    notes: list[str] = []
    for number in pyplot.get_fignums():
        figure = pyplot.figure(number)
        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format="png")
        except Exception as exc:
            notes.append(f"figure {number} could not be saved: {type(exc).__name__}: {exc}")
            continue
        finally:
            pyplot.close(figure)
        images.append(
            {"mime": "image/png", "data": b64(buffer.getvalue()), "alt": _alt(figure, number)}
        )
    return images, notes


def _alt(figure: Any, number: int) -> str:
    """A figure's title (suptitle, then the first axes title) as its alt text."""
    suptitle = getattr(figure, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return str(suptitle.get_text())
    for axes in figure.get_axes():
        if axes.get_title():
            return str(axes.get_title())
    return f"Figure {number}"
