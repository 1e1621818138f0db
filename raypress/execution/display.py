"""Session side of Jupyter's display protocol: ``display()``, figures, the final value.

Each rich output of a snippet is sent as a ``Displayed`` event right after the session
ends the current output phase (the marker on fds 1 and 2), so the build process puts the
text printed before it above it and the text printed after it below, as a notebook does.
``display`` is a builtin in sessions, as in IPython. Where IPython is installed, its
``display()`` and ``publish_display_data()`` (``IPython.display``, plotly's ``fig.show()``,
bokeh's notebook output) are routed here by a meta path hook that patches
``IPython.core.display_functions`` when something imports it: a post that never imports
IPython never pays for it. ``plt.show()`` shows the open figures where it is called
(see ``mpl_backend``); figures still open at the end of a snippet follow its value.

Only the first run of a snippet (``repeat``) shows anything; ``display()`` outside a
snippet (inline expressions) shows nothing.
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from raypress.execution.import_hooks import patch_on_import
from raypress.execution.protocol import Displayed, SessionEvent, SnippetCode
from raypress.execution.rich_output import (
    close_all_figures,
    close_figure,
    mime_bundle,
    open_figures,
    raw_bundle,
    save_figure,
)

IPYTHON_DISPLAY_MODULE = "IPython.core.display_functions"


class Displayer:
    """Sends the rich outputs of the running snippet."""

    def __init__(self, emit: Callable[[SessionEvent], None], end_phase: Callable[[], int]):
        self.emit = emit
        self.end_phase = end_phase
        self.pid = os.getpid()
        self.snippet: SnippetCode | None = None
        self.notes: list[str] = []

    def install(self) -> None:
        """Make ``display`` a builtin and route IPython's display functions here."""
        builtins.display = self.display  # type: ignore[attr-defined]
        patch_on_import(IPYTHON_DISPLAY_MODULE, self.patch_ipython)

    def patch_ipython(self, module: Any) -> None:
        module.display = self.display
        module.publish_display_data = self.publish
        module.clear_output = _ignore
        module.update_display = _ignore
        for name in ("IPython.display", "IPython.core.display"):  # when already imported
            other = sys.modules.get(name)
            if other is not None:
                for attr in ("display", "publish_display_data", "clear_output", "update_display"):
                    if hasattr(other, attr):
                        setattr(other, attr, getattr(module, attr))

    def begin(self, snippet: SnippetCode | None) -> None:
        """Show what is displayed from now on as outputs of ``snippet`` (None: nothing)."""
        self.snippet = snippet
        self.notes = []

    def display(
        self,
        *objs: Any,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        raw: bool = False,
        **kwargs: Any,
    ) -> None:
        """Show each object as a rich output (IPython's ``display``)."""
        snippet = self.snippet
        if snippet is None or os.getpid() != self.pid:
            return
        for obj in objs:
            if raw:
                data, meta = raw_bundle(obj, metadata or {}, self.notes)
            else:
                own = getattr(obj, "_ipython_display_", None)
                if callable(own) and not isinstance(obj, type):
                    own()  # the object displays itself (with display())
                    continue
                data, meta = mime_bundle(obj, snippet.fig_format, snippet.fig_dpi, self.notes)
                if metadata:
                    meta = {**meta, **metadata}
            self._send(data, meta, _only(data, include, exclude), result=False)

    def publish(self, data: Any, metadata: Any = None, **kwargs: Any) -> None:
        """IPython's ``publish_display_data``: a bundle as it is."""
        self.display(data, metadata=metadata if isinstance(metadata, dict) else None, raw=True)

    def result(self, value: Any) -> None:
        """Show the value of the snippet's final expression (nothing for None)."""
        snippet = self.snippet
        if snippet is None or value is None:
            return
        data, meta = mime_bundle(value, snippet.fig_format, snippet.fig_dpi, self.notes)
        self._send(data, meta, data, result=True)

    def show_figures(self) -> None:
        """Show the open matplotlib figures and close them (``plt.show()``, snippet end)."""
        snippet = self.snippet
        if snippet is None or os.getpid() != self.pid:
            close_all_figures()
            return
        for figure in open_figures():
            data, meta = save_figure(figure, snippet.fig_format, snippet.fig_dpi, self.notes)
            close_figure(figure)
            if data:
                self._send(data, meta, data, result=False)

    def _send(
        self, data: dict[str, Any], meta: dict[str, Any], chosen: dict[str, Any], result: bool
    ) -> None:
        snippet = self.snippet
        if snippet is None or not chosen:
            return
        seq = self.end_phase()  # what was printed so far comes before this output
        self.emit(Displayed(snippet.index, seq, chosen, meta, result))


def _only(
    data: dict[str, Any], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> dict[str, Any]:
    return {
        mime: value
        for mime, value in data.items()
        if (include is None or mime in include) and (exclude is None or mime not in exclude)
    }


def _ignore(*args: Any, **kwargs: Any) -> None:
    """``clear_output`` and ``update_display``: a static page keeps what was shown."""
