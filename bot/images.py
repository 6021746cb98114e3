"""Reference-image handling: sniff the bytes, refuse what Gemini cannot take, convert and
downscale what it can, and measure generated images.

Everything here is synchronous and CPU-bound; callers run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import AttachmentError

try:  # HEIC/HEIF decoding; Gemini accepts them as they are, we only need sizes.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_DECODE = True
except ImportError:  # pragma: no cover - pillow-heif is a core dependency
    HEIF_DECODE = False

GEMINI_MIME_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
_CONVERTIBLE = {"gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}
_PASS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp",
         "heic": "image/heic", "heif": "image/heif"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2"}


@dataclass(frozen=True)
class PreparedImage:
    """A reference image ready to send.

    Attributes:
        data: the bytes to send.
        mime_type: one of :data:`GEMINI_MIME_TYPES`.
        width, height: pixel size of ``data``.
        name: the file name as the user gave it.
        notice: what was done to it, for the user ("converted GIF to PNG"), or ``""``.
        sha256: hex digest of ``data``.
    """

    data: bytes
    mime_type: str
    width: int
    height: int
    name: str
    notice: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        # Hashed here, in the worker thread that prepares the image, not on the event loop.
        if not self.sha256:
            object.__setattr__(self, "sha256", sha256(self.data))


def sniff(data: bytes) -> str:
    """Names the format from the first bytes; never from a file name.

    Returns one of ``png jpeg webp heic heif gif bmp tiff avif pdf svg html text empty
    unknown``.
    """
    if not data:
        return "empty"
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return "heic"
        if brand in _HEIF_BRANDS:
            return "heif"
        if brand in (b"avif", b"avis"):
            return "avif"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"%PDF"):
        return "pdf"
    return _sniff_text(data[:2048])


def _sniff_text(head: bytes) -> str:
    try:
        text = head.decode("utf-8").lstrip("\ufeff").lstrip().lower()
    except UnicodeDecodeError:
        return "unknown"
    if any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
        return "unknown"
    if "<svg" in text:
        return "svg"
    if text.startswith(("<!doctype html", "<html")) or "<html" in text[:512]:
        return "html"
    return "text"


_REFUSALS = {
    "empty": "`{name}` is empty (0 bytes). Attach the image again.",
    "pdf": "`{name}` is a PDF, not an image. Export the page as PNG or JPEG and attach that.",
    "svg": "`{name}` is an SVG (vector) file. Gemini needs a raster image: export it as PNG.",
    "html": "`{name}` is a web page, not an image (the download returned HTML).",
    "text": "`{name}` is a text file, not an image, whatever its name says.",
    "avif": "`{name}` is AVIF, which Gemini does not accept. Use PNG, JPEG, WebP or HEIC.",
    "unknown": "`{name}` is not an image format Gemini accepts (PNG, JPEG, WebP, HEIC/HEIF; "
               "GIF, BMP and TIFF are converted).",
}


def prepare_reference(
    data: bytes,
    name: str,
    *,
    max_edge: int,
    max_pixels: int,
) -> PreparedImage:
    """Checks and normalizes one reference image.

    PNG, JPEG, WebP and HEIC/HEIF pass as they are unless larger than ``max_edge``
    (then downscaled) or rotated by EXIF (then turned upright); GIF, BMP and TIFF become
    PNG (first frame).

    Raises:
        AttachmentError: naming the file and saying what is wrong with it.
    """
    kind = sniff(data)
    if kind in _REFUSALS:
        raise AttachmentError(_REFUSALS[kind].format(name=name))
    if kind in ("heic", "heif") and not HEIF_DECODE:  # pragma: no cover
        return PreparedImage(data, _PASS[kind], 0, 0, name)
    image = _open_checked(data, name, max_pixels)
    width, height = image.size
    frames = getattr(image, "n_frames", 1)
    notices: list[str] = []
    if kind in _CONVERTIBLE:
        notices.append(f"converted {kind.upper()} to PNG"
                       + (f" (first of {frames} frames)" if frames > 1 else ""))
    rotated = _exif_rotation(image)
    if rotated:
        notices.append("turned upright per its EXIF orientation")
    too_big = max(width, height) > max_edge
    if too_big:
        notices.append(f"downscaled from {width}×{height}")
    if kind in _PASS and not too_big and not rotated:
        return PreparedImage(data, _PASS[kind], width, height, name)
    out_kind = "png" if kind in _CONVERTIBLE or kind in ("heic", "heif") else kind
    data, width, height = _reencode(image, out_kind, max_edge, rotated)
    return PreparedImage(data, _PASS[out_kind], width, height, name,
                         notice=f"`{name}`: " + ", ".join(notices))


def _open_checked(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise AttachmentError(
                    f"`{name}` is {width}×{height} ({width * height / 1e6:.0f} megapixels); the "
                    f"limit is {max_pixels / 1e6:.0f} megapixels. Resize it and attach it again."
                )
            image.load()
            return image
    except AttachmentError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
        raise AttachmentError(
            f"`{name}` is {size}, over the limit of {max_pixels / 1e6:.0f} megapixels "
            "(a decompression bomb guard). Resize it and attach it again.") from exc
    except UnidentifiedImageError as exc:
        raise AttachmentError(f"`{name}` could not be read as an image.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise AttachmentError(
            f"`{name}` looks damaged or truncated and could not be decoded. Export it again."
        ) from exc


def _exif_rotation(image: Image.Image) -> bool:
    try:
        return image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # a broken EXIF block is not worth refusing the image for
        return False


def _reencode(image: Image.Image, kind: str, max_edge: int, rotate: bool) -> tuple[bytes, int, int]:
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    if rotate:
        image = ImageOps.exif_transpose(image)
    if max(image.size) > max_edge:
        image = image.copy()
        image.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if kind == "jpeg":
        image.convert("RGB").save(buf, "JPEG", quality=92, optimize=True)
    elif kind == "webp":
        image.save(buf, "WEBP", quality=92)
    else:
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")
        image.save(buf, "PNG", compress_level=6)
    return buf.getvalue(), image.width, image.height


def image_info(data: bytes) -> tuple[str, int, int]:
    """(MIME type, width, height) of a generated image, read from its header only."""
    with Image.open(io.BytesIO(data)) as image:
        mime = Image.MIME.get(image.format or "", "image/png")
        return mime, image.width, image.height


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reencode_under(data: bytes, limit: int) -> tuple[bytes, str]:
    """Re-encodes an image as high-quality JPEG (or WebP) to fit under ``limit`` bytes.

    Used by adapters whose platform caps upload sizes. Tries decreasing quality, then a
    smaller size, and returns (bytes, MIME type).
    """
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    for scale in (1.0, 0.85, 0.7, 0.5, 0.35):
        frame = image if scale == 1.0 else image.resize(
            (max(1, int(image.width * scale)), max(1, int(image.height * scale))),
            Image.Resampling.LANCZOS,
        )
        for quality in (95, 90, 85, 80, 70):
            buf = io.BytesIO()
            frame.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
            if buf.tell() <= limit:
                return buf.getvalue(), "image/jpeg"
    buf = io.BytesIO()
    image.thumbnail((1024, 1024))
    image.save(buf, "JPEG", quality=70)
    return buf.getvalue(), "image/jpeg"
