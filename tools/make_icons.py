"""Rasterise the theme's SVG favicon into the PNG icons next to it.

    python tools/make_icons.py            # rewrite raypress/theme/assets/*.png
    python tools/make_icons.py --check    # exit 1 if a committed PNG differs from a fresh one

CairoSVG (``pip install -c constraints.txt cairosvg``, on Debian's libcairo2) renders
``favicon.svg`` at each size. ``favicon-32.png`` keeps the rounded corners on a transparent
background, as browsers show tab icons; ``apple-touch-icon.png`` (180 px, iOS rounds its
corners itself and shows transparency as black) and ``icon-512.png`` (the default image of
social cards) are drawn full-bleed on the icon's own blue. Pillow writes the PNGs without
metadata, so the same SVG gives the same bytes.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "raypress" / "theme" / "assets"
SOURCE = ASSETS / "favicon.svg"
BACKGROUND = "#0550ae"  # the rect of favicon.svg
ICONS = {  # file name: (size in px, background or None for transparent corners)
    "favicon-32.png": (32, None),
    "apple-touch-icon.png": (180, BACKGROUND),
    "icon-512.png": (512, BACKGROUND),
}


def render(size: int, background: str | None) -> bytes:
    """The icon at ``size`` x ``size`` pixels, as PNG bytes without metadata."""
    import cairosvg
    from PIL import Image

    drawn = cairosvg.svg2png(
        bytestring=SOURCE.read_bytes(),
        output_width=size,
        output_height=size,
        background_color=background,
    )
    image = Image.open(io.BytesIO(drawn))
    image = image.convert("RGBA" if background is None else "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, (size, background) in ICONS.items():
        data = render(size, background)
        path = ASSETS / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
            print(f"{path.relative_to(ASSETS.parents[2])}: {size}x{size}, {len(data)} bytes")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python tools/make_icons.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
