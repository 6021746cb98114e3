"""Rendering preview frames: a palette PNG of exactly the asked pixel size showing the
banner, model, ratio and size, the prompt and thumbnails of the input images."""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import hashlib
import io
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

from offline_gemini.request import Thumb
from offline_gemini.texture import add_noise

# Output frames are palette PNGs. Palette layout (indices):
_GRADIENT_LEVELS = 128  # 0..127 background gradient
_RAMP_LEVELS = 16  # antialiasing ramps, background colour -> text colour
_RAMP_TITLE = _GRADIENT_LEVELS  # band -> accent (banner)
_RAMP_BAND = _RAMP_TITLE + _RAMP_LEVELS  # band -> white (info line, footer)
_RAMP_PANEL = _RAMP_BAND + _RAMP_LEVELS  # panel -> white (prompt, thumbnails panel)
_THUMB_BASE = _RAMP_PANEL + _RAMP_LEVELS  # quantised thumbnail colours
_THUMB_COLORS = 256 - _THUMB_BASE

RGB = tuple[int, int, int]
_BAND_RGB: RGB = (17, 19, 27)
_ACCENT_RGB: RGB = (255, 206, 84)
_WHITE_RGB: RGB = (246, 246, 246)


@dataclass(frozen=True)
class RenderJob:
    """Everything one preview frame shows."""

    width: int
    height: int
    title: str
    info: str
    heading: str
    body: str
    footer: str
    color_seed: bytes
    thumbs: tuple[Thumb, ...] = ()
    thought: bool = False
    mime: str = "image/png"  # or image/jpeg
    noise: int = 0  # amplitude of the texture that gives real-size frames real bytes


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _gradient_colors(seed: bytes, thought: bool) -> tuple[RGB, RGB, RGB]:
    """Start, end and panel colours derived from the seed."""
    hue = seed[0] / 255
    hue2 = hue + 0.08 + seed[1] / 255 * 0.25
    saturation = 0.12 if thought else 0.5 + seed[2] / 255 * 0.15
    start = _hsv(hue, saturation, 0.9)
    end = _hsv(hue2, saturation + 0.1, 0.42)
    panel = _mix(_mix(start, end, 0.5), (8, 8, 14), 0.78)
    return start, end, panel


def _palette(seed: bytes, thought: bool, thumb_palette: Sequence[int]) -> list[int]:
    start, end, panel = _gradient_colors(seed, thought)
    palette: list[int] = []
    for i in range(_GRADIENT_LEVELS):
        palette.extend(_mix(start, end, i / (_GRADIENT_LEVELS - 1)))
    for low, high in ((_BAND_RGB, _ACCENT_RGB), (_BAND_RGB, _WHITE_RGB), (panel, _WHITE_RGB)):
        for i in range(_RAMP_LEVELS):
            palette.extend(_mix(low, high, i / (_RAMP_LEVELS - 1)))
    palette.extend(thumb_palette[: _THUMB_COLORS * 3])
    return palette + [0] * (768 - len(palette))


def _gradient(width: int, height: int, seed: bytes) -> Image.Image:
    """Index image (mode L) of a diagonal gradient over palette levels 0..127."""
    vertical = Image.linear_gradient("L")
    horizontal = vertical.transpose(Image.Transpose.ROTATE_90)
    mixed = Image.blend(horizontal, vertical, 0.3 + seed[3] / 255 * 0.4)
    if seed[4] & 1:
        mixed = mixed.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mixed = mixed.point([v * (_GRADIENT_LEVELS - 1) // 255 for v in range(256)])
    small = mixed.resize((max(2, width // 8), max(2, height // 8)), Image.Resampling.BILINEAR)
    return small.resize((width, height), Image.Resampling.NEAREST)


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, round(size)))


def _fit_font(text: str, max_width: int, size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The largest font up to ``size`` that renders ``text`` within ``max_width``."""
    font = _font(size)
    width = font.getlength(text)
    if width > max_width > 0:
        font = _font(size * max_width / width * 0.97)
    return font


def _ramp_lut(base: int) -> list[int]:
    return [base + (v * (_RAMP_LEVELS - 1) + 127) // 255 for v in range(256)]


TextLine = tuple[int, int, str, "ImageFont.FreeTypeFont | ImageFont.ImageFont"]


def _paste_text(
    canvas: Image.Image, box: tuple[int, int, int, int], lines: Sequence[TextLine], ramp: int
) -> None:
    """Draw antialiased lines into ``box`` (solid ramp background) via a palette ramp."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(mask)
    for x, y, text, font in lines:
        draw.text((x, y), text, font=font, fill=255)
    canvas.paste(mask.point(_ramp_lut(ramp)), (x0, y0))


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap by rendered width; words longer than a line are split."""
    lines: list[str] = []
    for paragraph in (text or "").splitlines() or [""]:
        current = ""
        for word in paragraph.split() or [""]:
            candidate = f"{current} {word}".strip()
            if font.getlength(candidate) <= width or not current:
                current = candidate
            else:
                lines.append(current)
                current = word
            while font.getlength(current) > width and len(current) > 1:
                cut = max(1, int(len(current) * width / font.getlength(current)))
                lines.append(current[:cut])
                current = current[cut:]
        lines.append(current)
    return lines


def _fit_lines(lines: list[str], max_lines: int) -> list[str]:
    if len(lines) <= max_lines:
        return lines
    kept = lines[: max(1, max_lines)]
    kept[-1] = kept[-1].rstrip()[:-1] + "…" if len(kept[-1]) > 1 else "…"
    return kept


def render_png(job: RenderJob) -> bytes:
    """Render one preview frame as a PNG of exactly ``job.width`` x ``job.height``.

    The PNG is in palette mode; ``job.mime`` and ``job.noise`` are ignored.
    """
    out = io.BytesIO()
    _draw(job).save(out, "PNG", compress_level=1)
    return out.getvalue()


def render_image(job: RenderJob) -> bytes:
    """Render one frame as ``job.mime`` (PNG or baseline JPEG), textured by ``job.noise``."""
    if job.mime == "image/png" and not job.noise:
        return render_png(job)
    frame = add_noise(_draw(job).convert("RGB"), job.noise)
    out = io.BytesIO()
    if job.mime == "image/jpeg":
        frame.save(out, "JPEG", quality=95, subsampling=0)
    else:
        frame.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _draw(job: RenderJob) -> Image.Image:
    """The frame as a palette image."""
    width, height = job.width, job.height
    unit = min(width, height) / 100
    pad = max(4, round(4 * unit))
    canvas = _gradient(width, height, job.color_seed)
    band_bottom = _draw_band(canvas, job, unit, pad)
    footer_top = _draw_footer(canvas, job, unit, pad)
    top, bottom = band_bottom + pad, footer_top - pad
    thumb_palette: list[int] = []
    if job.thumbs:
        panel_h = _thumbs_height(job, unit, width - 2 * pad, bottom - top)
        box = (pad, bottom - panel_h, width - pad, bottom)
        thumb_palette = _draw_thumbs(canvas, job.thumbs, unit, box)
        bottom = box[1] - pad
    _draw_prompt(canvas, job, unit, (pad, top, width - pad, bottom))
    canvas.putpalette(_palette(job.color_seed, job.thought, thumb_palette))
    return canvas


def _draw_band(canvas: Image.Image, job: RenderJob, unit: float, pad: int) -> int:
    width = canvas.width
    band_h = round(16 * unit)
    ImageDraw.Draw(canvas).rectangle((0, 0, width, band_h), fill=_RAMP_TITLE)
    title_font = _fit_font(job.title, width - 2 * pad, 7 * unit)
    info_font = _fit_font(job.info, width - 2 * pad, 3 * unit)
    title_top, info_top = round(2 * unit), round(10.5 * unit)
    _paste_text(canvas, (pad, title_top, width - pad, info_top), [(0, 0, job.title, title_font)],
                _RAMP_TITLE)
    _paste_text(canvas, (pad, info_top, width - pad, band_h), [(0, 0, job.info, info_font)],
                _RAMP_BAND)
    return band_h


def _draw_footer(canvas: Image.Image, job: RenderJob, unit: float, pad: int) -> int:
    width, height = canvas.size
    top = height - round(6 * unit)
    ImageDraw.Draw(canvas).rectangle((0, top, width, height), fill=_RAMP_BAND)
    font = _fit_font(job.footer, width - 2 * pad, 2.4 * unit)
    _paste_text(canvas, (pad, top + round(1.6 * unit), width - pad, height),
                [(0, 0, job.footer, font)], _RAMP_BAND)
    return top


def _inset(unit: float) -> int:
    """Padding inside panels; at least 0.3 x the corner radius keeps text off the corners."""
    return max(3, round(2.5 * unit))


def _prompt_height(job: RenderJob, unit: float, panel_w: int) -> int:
    """Height the prompt panel needs at its preferred font size."""
    lines = _wrap(job.body, _font(3.6 * unit), panel_w - 2 * _inset(unit))
    return 2 * _inset(unit) + round(4.2 * unit) + len(lines) * round(3.6 * unit * 1.3)


def _thumb_grid(count: int, unit: float, inner_w: int, inner_h: int) -> tuple[int, int]:
    """(columns, cell size) for ``count`` thumbnails inside a panel's inner box."""
    label_h, gap = round(3.2 * unit), round(1.5 * unit)
    return _grid(count, inner_w, inner_h - round(4.2 * unit), label_h, gap, round(30 * unit))


def _thumbs_height(job: RenderJob, unit: float, panel_w: int, available: int) -> int:
    """Thumbnail panel height: what the grid needs, leaving the prompt its room."""
    inset, count = _inset(unit), len(job.thumbs)
    prompt_room = _prompt_height(job, unit, panel_w) + round(4 * unit)
    room = max(available - prompt_room, round(available * 0.3))
    cols, cell = _thumb_grid(count, unit, panel_w - 2 * inset, room - 2 * inset)
    rows = math.ceil(count / cols)
    label_h, gap = round(3.2 * unit), round(1.5 * unit)
    needed = 2 * inset + round(4.2 * unit) + rows * (cell + label_h) + (rows - 1) * gap
    return min(room, needed)


def _panel(canvas: Image.Image, box: tuple[int, int, int, int], unit: float) -> tuple[int, int, int, int]:
    """Draw a rounded panel; return its inner (text-safe) box."""
    radius = max(2, round(2 * unit))
    ImageDraw.Draw(canvas).rounded_rectangle(box, radius, fill=_RAMP_PANEL)
    inset = _inset(unit)
    return box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset


def _draw_prompt(canvas: Image.Image, job: RenderJob, unit: float, box: tuple[int, int, int, int]) -> None:
    if box[3] - box[1] < 8 * unit:
        return
    x0, y0, x1, y1 = _panel(canvas, box, unit)
    heading_font = _font(2.6 * unit)
    heading_h = round(4.2 * unit)
    lines: list[TextLine] = [(0, 0, job.heading, heading_font)]
    for size in (3.6, 3.0, 2.5, 2.1):
        font = _font(size * unit)
        line_h = round(size * unit * 1.3)
        wrapped = _wrap(job.body, font, x1 - x0)
        max_lines = max(1, (y1 - y0 - heading_h) // line_h)
        if len(wrapped) <= max_lines:
            break
    wrapped = _fit_lines(wrapped, max_lines)
    lines += [(0, heading_h + i * line_h, text, font) for i, text in enumerate(wrapped)]
    _paste_text(canvas, (x0, y0, x1, y1), lines, _RAMP_PANEL)


def _grid(count: int, area_w: int, area_h: int, label_h: int, gap: int, cap: int) -> tuple[int, int]:
    """(columns, cell size) that makes square cells as large as possible."""
    best = (1, 1)
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        cell = min(
            (area_w - (cols - 1) * gap) // cols,
            (area_h - rows * label_h - (rows - 1) * gap) // rows,
            cap,
        )
        if cell > best[1]:
            best = (cols, cell)
    return best


def _draw_thumbs(
    canvas: Image.Image, thumbs: Sequence[Thumb], unit: float, box: tuple[int, int, int, int]
) -> list[int]:
    """Draw the input-image panel; return the thumbnails' palette (RGB triples)."""
    x0, y0, x1, y1 = _panel(canvas, box, unit)
    heading_h, label_h, gap = round(4.2 * unit), round(3.2 * unit), round(1.5 * unit)
    cols, cell = _thumb_grid(len(thumbs), unit, x1 - x0, y1 - y0)
    count = len(thumbs)
    lines: list[TextLine] = [
        (0, 0, f"{count} input image{'s' if count != 1 else ''} in the last user turn",
         _font(2.6 * unit))
    ]
    label_font = _font(min(2.2 * unit, cell / 7))
    positions: list[tuple[int, int]] = []
    for index, thumb in enumerate(thumbs):
        cx = (index % cols) * (cell + gap)
        cy = heading_h + (index // cols) * (cell + label_h + gap)
        positions.append((x0 + cx, y0 + cy))
        lines.append((cx, cy + cell + round(0.4 * unit), thumb.label, label_font))
    _paste_text(canvas, (x0, y0, x1, y1), lines, _RAMP_PANEL)
    tiles, palette = _quantized_tiles([t.image for t in thumbs], max(1, cell))
    for tile, (px, py) in zip(tiles, positions, strict=True):
        canvas.paste(tile, (px + (cell - tile.width) // 2, py + cell - tile.height))
    return palette


def _quantized_tiles(images: Sequence[Image.Image], cell: int) -> tuple[list[Image.Image], list[int]]:
    """Fit images into ``cell`` squares and map them onto the shared thumbnail palette."""
    tiles = [ImageOps.contain(image, (cell, cell), Image.Resampling.BILINEAR) for image in images]
    strip = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    offsets: list[int] = []
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        offsets.append(x)
        x += tile.width
    quantized = strip.quantize(colors=_THUMB_COLORS, method=Image.Quantize.FASTOCTREE)
    palette = (quantized.getpalette() or [])[: _THUMB_COLORS * 3]
    shift = [min(255, v + _THUMB_BASE) for v in range(256)]
    indices = Image.frombytes("L", quantized.size, quantized.tobytes()).point(shift)
    crops = [indices.crop((ox, 0, ox + t.width, t.height)) for ox, t in zip(offsets, tiles, strict=True)]
    return crops, palette




render_cached = functools.lru_cache(maxsize=16)(render_image)


def render_frame(job: RenderJob) -> bytes:
    """Render a frame; identical jobs without thumbnails (which hold unhashable images)
    reuse the last frames, so a burst of equal requests costs one render."""
    return render_cached(job) if not job.thumbs else render_image(job)


_STOCK_SEED = bytes(32)


def stock_job(job: RenderJob) -> RenderJob:
    """``job`` without what differs from request to request (the prompt, the footer, the
    colours, thumbnails): one frame per size, format and kind serves every request."""
    return dataclasses.replace(
        job, heading="Stock frame", footer="offline stock frame · the request is in the "
        "file's comment", body="Stock frames are drawn once per size and reused, so the "
        "stand-in spends its CPU on answering, not drawing (--stock-frames).",
        color_seed=_STOCK_SEED, thumbs=())


def render_stock(job: RenderJob) -> bytes:
    """A cached stock frame of the job's size, format and byte size (the texture is kept),
    made unique to the request by a comment naming it: a PNG ``tEXt`` or a JPEG ``COM``
    chunk. Cheap: no drawing or encoding once each size has been drawn."""
    frame = render_cached(stock_job(job))
    digest = hashlib.sha256(repr((job.title, job.info, job.heading, job.body, job.footer,
                                  job.color_seed, len(job.thumbs))).encode()).hexdigest()
    comment = f"offline-gemini stock frame for {job.heading} · {digest}".encode()
    return _with_comment(frame, comment)


def _with_comment(image: bytes, text: bytes) -> bytes:
    if image.startswith(b"\x89PNG\r\n\x1a\n"):
        data = b"Comment\x00" + text.decode().encode("latin-1", "replace")
        chunk = (struct.pack(">I", len(data)) + b"tEXt" + data
                 + struct.pack(">I", zlib.crc32(b"tEXt" + data)))
        end_of_ihdr = 8 + 4 + 4 + 13 + 4
        return image[:end_of_ihdr] + chunk + image[end_of_ihdr:]
    if image.startswith(b"\xff\xd8"):
        return image[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + image[2:]
    raise ValueError("not a PNG or JPEG frame")
