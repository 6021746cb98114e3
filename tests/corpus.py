"""Test images and bad inputs, made in code so the repository carries no binaries."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 48, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    image = Image.new("RGB", (width, height), (30, 120, 200))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def encoded(fmt: str, width: int = 40, height: int = 30, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buf, fmt, **kw)
    return buf.getvalue()


def animated_gif(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (32, 32), (i * 80 % 256, 40, 90)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny file that declares a huge image: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows)
            + _chunk(b"IEND", b""))


def truncated_png() -> bytes:
    data = png(400, 300)
    return data[: len(data) // 2]


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
TEXT = b"This is not an image, just notes someone named .png\n"
HTML_LOGIN = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"


def noise_png(width: int = 300, height: int = 300) -> bytes:
    """A PNG that does not compress: its size is about 3 bytes a pixel."""
    buf = io.BytesIO()
    Image.effect_noise((width, height), 90).convert("RGB").save(buf, "PNG")
    return buf.getvalue()
