"""Durations as the page shows them (also used by ``elapsed()`` inside sessions)."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """Format a duration compactly with 2–3 significant digits: "850 ns", "1.23 ms", "45 s"."""
    if seconds < 0 or seconds != seconds:
        return "–"
    for scale, unit in ((1e-6, "ns"), (1e-3, "µs"), (1.0, "ms")):
        if seconds < scale * 0.9995:  # 0.9996 ms shows as "1.00 ms", not "1000 µs"
            return _three_digits(seconds / scale * 1000, unit)
    if seconds < 99.95:
        return _three_digits(seconds, "s")
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _three_digits(value: float, unit: str) -> str:
    if value >= 99.95:
        return f"{value:.0f} {unit}"
    if value >= 9.995:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"
