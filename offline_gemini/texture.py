"""Texture: deterministic fine noise so that real-size frames encode to real byte sizes.

A flat preview frame compresses to almost nothing; the live API's photos do not.
"""

from __future__ import annotations

import functools
import hashlib

from PIL import Image, ImageChops

# Strips span the whole width and repeat every 64 rows: far beyond deflate's 32 KB
# window, so a PNG cannot compress the repetition away.
_STRIP_ROWS = 64


@functools.lru_cache(maxsize=32)
def _strip(width: int, amplitude: int) -> Image.Image:
    """An RGB strip of uniform noise in 0..2*amplitude."""
    raw = hashlib.shake_256(b"offline-gemini/texture/%d" % width).digest(width * _STRIP_ROWS * 3)
    levels = [v * 2 * amplitude // 255 for v in range(256)]
    return Image.frombytes("RGB", (width, _STRIP_ROWS), raw).point(levels * 3)


def add_noise(frame: Image.Image, amplitude: int) -> Image.Image:
    """``frame`` (RGB) with every channel moved by up to ``amplitude`` levels."""
    if amplitude <= 0:
        return frame
    strip = _strip(frame.width, amplitude)
    layer = Image.new("RGB", frame.size)
    for top in range(0, frame.height, _STRIP_ROWS):
        layer.paste(strip, (0, top))
    return ImageChops.add(frame, layer, 1.0, -amplitude)
