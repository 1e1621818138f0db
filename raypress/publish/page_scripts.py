"""Scripts that pages with interactive output load, once each (trusted sites only).

plotly.js is not vendored in the theme: it is copied from the plotly package installed
where the site is built (the sessions use that same plotly, so the figures' JSON and the
script that draws them match), to ``/assets/vendor/plotly-<version>.min.js``. The theme's
``assets/plotly-figures.js`` draws each figure from the JSON beside its ``<div>``. Both
are ``defer`` scripts: the page is parsed and shown first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path

from raypress.publish.site_writer import OutputFile

PLOTLY_LOADER = "/assets/plotly-figures.js"


def _plotly_file() -> tuple[str, Path] | None:
    """The site path and the installed file of plotly.js (None: plotly is not installed)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        return None
    from importlib.metadata import version as installed  # 20 ms: only for a plotly page

    version = installed("plotly")
    return f"/assets/vendor/plotly-{version}.min.js", path


def script_tags(names: Iterable[str], relative_url: Callable[[str], str]) -> str:
    """The ``<script>`` tags a page with these libraries' outputs ends with."""
    tags: list[str] = []
    for name in names:
        if name == "plotly":
            found = _plotly_file()
            if found is not None:
                tags.append(
                    f'<script src="{relative_url(found[0])}" charset="utf-8" defer></script>'
                )
            tags.append(f'<script src="{relative_url(PLOTLY_LOADER)}" defer></script>')
    return "\n".join(tags)


def script_files(names: Iterable[str]) -> list[OutputFile]:
    """The library files the site must publish for pages that use ``names``."""
    files: list[OutputFile] = []
    if "plotly" in set(names):
        found = _plotly_file()
        if found is not None:
            files.append(OutputFile(found[0].lstrip("/"), found[1].read_bytes(), "plotly"))
    return files


def missing_libraries(names: Iterable[str]) -> list[str]:
    """Libraries a page needs that are not installed where the site is built."""
    return ["plotly"] if "plotly" in set(names) and _plotly_file() is None else []
