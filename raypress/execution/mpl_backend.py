"""The sessions' matplotlib backend: Agg, whose ``show()`` does nothing, quietly.

Figures left open are saved after each snippet; ``plt.show()`` in a post is normal and
must not print Agg's "non-interactive, cannot be shown" warning into the page.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args: Any, **kwargs: Any) -> None:
    """Figures are collected at the end of each snippet instead."""
