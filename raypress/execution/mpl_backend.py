"""The sessions' matplotlib backend: Agg, whose ``show()`` shows the open figures there.

As in a notebook, ``plt.show()`` puts the figures drawn so far in the snippet's output at
that point (between what was printed before and after it); figures left open are shown
after the snippet's value. It never prints Agg's "non-interactive, cannot be shown".
"""

from __future__ import annotations

import builtins
from typing import Any

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args: Any, **kwargs: Any) -> None:
    """Show the open figures now, through the session's ``display`` builtin."""
    displayer = getattr(getattr(builtins, "display", None), "__self__", None)
    show_figures = getattr(displayer, "show_figures", None)
    if callable(show_figures):
        show_figures()
