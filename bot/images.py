"""Reference-image handling: sniff the bytes, refuse what Gemini cannot take, convert and
downscale what it can, and measure generated images.

Everything here is synchronous and CPU-bound; callers run it in a worker thread, except
:class:`PixelBudget`, which bounds how many pixels those threads decode at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import math
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import cast

from PIL import Image, UnidentifiedImageError

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

#: Pixels decoded at once across all turns by default: one 64 MP image (256 MB as RGBA), or
#: several smaller ones. A single image over the budget still runs, alone.
DEFAULT_PIXEL_BUDGET = 64_000_000
#: After decoding more than this many pixels, freed memory is handed back to the system.
_TRIM_AFTER_PIXELS = 4_000_000


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


def probe_pixels(data: bytes, *, max_pixels: int | None = None) -> int:
    """Width × height read from the image's header, without decoding it.

    Use it to size a :meth:`PixelBudget.hold` before :func:`prepare_reference`.

    Args:
        data: the image bytes.
        max_pixels: the limit :func:`prepare_reference` is called with. An image over it is
            refused from its header without being decoded, so it costs (and returns) 0.

    Returns:
        The pixel count, or 0 when the header cannot be read (the image is then refused
        without decoding).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                pixels = image.width * image.height
    except Exception:  # whatever it is, prepare_reference refuses it without decoding
        return 0
    return 0 if max_pixels is not None and pixels > max_pixels else pixels


class PixelBudget:
    """Bounds the pixels being decoded at once across every turn in flight.

    ``async with budget.hold(pixels):`` waits until ``pixels`` fit within ``total`` next to
    the holds already granted. Waiters are served first come, first served, so a large
    image is not starved by a stream of small ones; an image larger than the whole budget
    waits for everything else to finish and then runs alone.
    """

    def __init__(self, total: int = DEFAULT_PIXEL_BUDGET) -> None:
        if total <= 0:
            raise ValueError(f"a pixel budget must be positive, got {total}")
        self.total = total
        self._in_use = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def in_use(self) -> int:
        """Pixels held right now."""
        return self._in_use

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        """Holds ``pixels`` of the budget (at most all of it) for the ``async with`` block."""
        need = min(max(pixels, 0), self.total)
        await self._acquire(need)
        try:
            yield
        finally:
            self._release(need)

    async def _acquire(self, need: int) -> None:
        if not self._waiters and self._in_use + need <= self.total:
            self._in_use += need
            return
        entry = (need, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].done() and not entry[1].cancelled():
                self._release(need)  # granted just as the waiter was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                self._grant()  # the waiter at the head may fit now
            raise

    def _release(self, need: int) -> None:
        self._in_use -= need
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            need, future = self._waiters[0]
            if future.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if self._in_use + need > self.total:
                return
            self._waiters.popleft()
            self._in_use += need
            future.set_result(None)


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

    Memory: the size limit is checked from the header before anything is decoded; a large
    JPEG is decoded at a reduced scale, and other formats are decoded once at full size and
    reduced without another full-size copy. Hold a :class:`PixelBudget` of
    :func:`probe_pixels` around the call to bound how many run at once.

    Raises:
        AttachmentError: naming the file and saying what is wrong with it.
    """
    kind = sniff(data)
    if kind in _REFUSALS:
        raise AttachmentError(_REFUSALS[kind].format(name=name))
    if kind in ("heic", "heif") and not HEIF_DECODE:  # pragma: no cover
        return PreparedImage(data, _PASS[kind], 0, 0, name)
    opened: list[Image.Image] = []
    pixels = 0
    try:
        with _decoding(name, max_pixels):
            image = Image.open(io.BytesIO(data))
            opened.append(image)
            _check_pixels(image, name, max_pixels)
            pixels = image.width * image.height
            return _prepare(image, data, kind, name, max_edge, opened)
    finally:
        for im in opened:
            im.close()
        if pixels > _TRIM_AFTER_PIXELS:
            release_memory()


def _prepare(image: Image.Image, data: bytes, kind: str, name: str, max_edge: int,
             opened: list[Image.Image]) -> PreparedImage:
    width, height = image.size
    frames = getattr(image, "n_frames", 1)
    notices: list[str] = []
    if kind in _CONVERTIBLE:
        notices.append(f"converted {kind.upper()} to PNG"
                       + (f" (first of {frames} frames)" if frames > 1 else ""))
    transpose = _exif_transpose_method(image)
    if transpose is not None:
        notices.append("turned upright per its EXIF orientation")
    too_big = max(width, height) > max_edge
    if too_big:
        notices.append(f"downscaled from {width}×{height}")
    if kind in _PASS and not too_big and transpose is None:
        image.load()  # decoding proves the file is whole
        return PreparedImage(data, _PASS[kind], width, height, name)
    out_kind = _output_kind(kind, image)
    if kind in ("heic", "heif"):
        notices.append("re-encoded as " + out_kind.upper())
    if frames > 1:
        image.seek(0)
    result = _render(image, out_kind, max_edge, opened)
    if transpose is not None:
        result = result.transpose(transpose)
        opened.append(result)
    encoded = _encode_within(result, out_kind, len(data))
    if len(encoded) > len(data) and kind in _PASS and transpose is None:
        # Downscaling was to save bytes; a copy bigger than the original saves none.
        return PreparedImage(data, _PASS[kind], width, height, name)
    return PreparedImage(encoded, _PASS[out_kind], result.width, result.height, name,
                         notice=f"`{name}`: " + ", ".join(notices))


def _output_kind(kind: str, image: Image.Image) -> str:
    """The format a re-encoded reference is stored in: its own (a JPEG stays JPEG), PNG
    for GIF/BMP/TIFF, and JPEG for HEIC/HEIF photos (PNG when they have alpha), which as
    PNG would be many times their size."""
    if kind in _CONVERTIBLE:
        return "png"
    if kind in ("heic", "heif"):
        return "png" if _has_alpha(image) else "jpeg"
    return kind


@contextlib.contextmanager
def _decoding(name: str, max_pixels: int) -> Iterator[None]:
    """Turns every way decoding can fail into an :class:`AttachmentError` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
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


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise AttachmentError(
            f"`{name}` is {width}×{height} ({width * height / 1e6:.0f} megapixels); the "
            f"limit is {max_pixels / 1e6:.0f} megapixels. Resize it and attach it again.")


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_transpose_method(image: Image.Image) -> Image.Transpose | None:
    """How to turn the image upright per its EXIF orientation; applied after downscaling."""
    try:
        return _ORIENTATION_TRANSPOSE.get(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is not worth refusing the image for
        return None


#: Before the LANCZOS resize, an integer ``reduce`` (box filter) shrinks the image while it
#: stays at least this many times the target size, as ``Image.thumbnail`` does.
_REDUCING_GAP = 2.0
#: Output rows made at a time: only a strip is ever converted (or premultiplied for alpha).
_STRIP_ROWS = 256
#: LANCZOS reads 3 source pixels either side of a sample, scaled by the downscale ratio.
_LANCZOS_SUPPORT = 3.0


def _render(image: Image.Image, kind: str, max_edge: int,
            opened: list[Image.Image]) -> Image.Image:
    """The (first) frame at most ``max_edge`` on its long side, in a mode ``kind`` stores.

    Every image made on the way is added to ``opened`` for the caller to close.
    """
    width, height = image.size
    scale = min(1.0, max_edge / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1.0 and image.format == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT data.
        image.draft(None, (int(target[0] * _REDUCING_GAP), int(target[1] * _REDUCING_GAP)))
    image.load()
    mode = _working_mode(image, kind)
    if image.size == target:
        if image.mode == mode:
            return image
        converted = image.convert(mode)
        opened.append(converted)
        return converted
    result = _shrink(image, target, mode)
    opened.append(result)
    image.close()  # the full-size pixels are not needed any more
    return result


def _shrink(image: Image.Image, target: tuple[int, int], mode: str) -> Image.Image:
    """``image`` in ``mode``, resized to ``target`` a strip of rows at a time.

    Each strip is cropped with enough margin for the filter, converted, reduced by an
    integer factor and resampled with LANCZOS into its rows of the result, so no full-size
    converted or premultiplied-alpha copy of ``image`` is ever made.
    """
    width, height = image.size
    factor = max(1, int(min(width / target[0], height / target[1]) / _REDUCING_GAP))
    # The reduced image has ceil(size / factor) pixels, the last one averaging a partial
    # block; like Pillow, resample from the exact span size / factor.
    reduced_h = -(-height // factor)
    scale_y = height / factor / target[1]
    margin = math.ceil(_LANCZOS_SUPPORT * max(1.0, scale_y)) + 1
    out = Image.new(mode, target)
    for row in range(0, target[1], _STRIP_ROWS):
        end = min(target[1], row + _STRIP_ROWS)
        first = max(0, math.floor(row * scale_y) - margin)
        last = min(reduced_h, math.ceil(end * scale_y) + margin)
        strip = image.crop((0, first * factor, width, min(height, last * factor)))
        if strip.mode != mode:
            strip = strip.convert(mode)
        if factor > 1:
            strip = strip.reduce(factor)
        box = (0.0, row * scale_y - first, width / factor, end * scale_y - first)
        out.paste(strip.resize((target[0], end - row), Image.Resampling.LANCZOS, box), (0, row))
    return out


def _working_mode(image: Image.Image, kind: str) -> str:
    if kind == "jpeg":
        return "RGB"
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return image.mode
    if image.mode == "1":
        return "L"
    return "RGBA" if _has_alpha(image) else "RGB"


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.mode or "transparency" in image.info


#: Encoder settings tried in turn until the result is no bigger than the original.
_ENCODINGS: dict[str, tuple[dict[str, object], ...]] = {
    "jpeg": ({"quality": 92, "optimize": True}, {"quality": 85, "optimize": True},
             {"quality": 75, "optimize": True}),
    "webp": ({"quality": 92}, {"quality": 85}, {"quality": 75}),
    "png": ({"compress_level": 6}, {"compress_level": 9, "optimize": True}),
}


def _encode_within(image: Image.Image, kind: str, limit: int) -> bytes:
    """``image`` in ``kind`` at the best setting no bigger than ``limit`` bytes, or at
    the smallest setting tried when none is."""
    smallest = b""
    for params in _ENCODINGS[kind]:
        buf = io.BytesIO()
        image.save(buf, kind.upper(), **params)
        encoded = buf.getvalue()
        if len(encoded) <= limit:
            return encoded
        if not smallest or len(encoded) < len(smallest):
            smallest = encoded
    return smallest


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only; musl and macOS have no malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[int], int], trim)


_MALLOC_TRIM = _load_malloc_trim()


def release_memory() -> None:
    """Hands memory freed after a large decode back to the system (glibc only).

    glibc keeps freed blocks in per-thread arenas; after decoding a large image in a worker
    thread, hundreds of MB would otherwise stay resident for good.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


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
