"""Input images: decoding them into thumbnails and checking that history images decode."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageOps

from offline_gemini.request import Content, Thumb
from offline_gemini.wire import IMAGE_PROCESSING_ERROR, invalid

_THUMB_SOURCE_MAX = 640

_heif_state: dict[str, bool] = {}


def _heif_available() -> bool:
    """Register pillow-heif's opener once; False when it is not installed."""
    if "ok" not in _heif_state:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _heif_state["ok"] = False
        else:
            register_heif_opener()
            _heif_state["ok"] = True
    return _heif_state["ok"]


def can_decode(mime: str) -> bool:
    """False for HEIC/HEIF when pillow-heif is missing."""
    return mime not in ("image/heic", "image/heif") or _heif_available()


def _placeholder(label: str) -> Thumb:
    return Thumb(Image.new("RGB", (64, 64), (92, 96, 110)), label)


def load_thumbs(last: Content) -> tuple[tuple[Thumb, ...], tuple[int, int] | None]:
    """Decode the last turn's images into thumbnails; also the first image's size."""
    thumbs: list[Thumb] = []
    first_size: tuple[int, int] | None = None
    for part in last.parts:
        number = len(thumbs) + 1
        if part.kind == "file":
            thumbs.append(_placeholder(f"#{number} file"))
        elif part.kind == "image" and not can_decode(part.mime):
            thumbs.append(_placeholder(f"#{number} {part.mime.split('/')[1]}"))
        elif part.kind == "image":
            image, (width, height) = _thumbnail(part.data)
            first_size = first_size or (width, height)
            source = " file" if part.uri else ""
            thumbs.append(Thumb(image, f"#{number}{source} {width}x{height}"))
    return tuple(thumbs), first_size


def _thumbnail(data: bytes) -> tuple[Image.Image, tuple[int, int]]:
    """Decode input bytes to a small RGB thumbnail and the upright original size.

    Raises ApiError when Pillow cannot decode the image.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            opened.draft("RGB", (_THUMB_SOURCE_MAX, _THUMB_SOURCE_MAX))
            image = ImageOps.exif_transpose(opened) or opened
            image.load()
            if (image.width > image.height) != (width > height):
                width, height = height, width
            thumb = _flatten(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise invalid(IMAGE_PROCESSING_ERROR) from None
    thumb.thumbnail((_THUMB_SOURCE_MAX, _THUMB_SOURCE_MAX), Image.Resampling.BILINEAR)
    return thumb, (width, height)


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (200, 200, 200, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def check_history_images(history: Sequence[Content]) -> None:
    """Refuse images in earlier turns that do not decode. Raises ApiError."""
    for content in history:
        for part in content.parts:
            if part.kind == "image" and can_decode(part.mime):
                _verify_image(part.data)


def _verify_image(data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise invalid(IMAGE_PROCESSING_ERROR) from None

