"""Reference-image preparation: sniffing, refusals, conversions, limits."""

import asyncio
import io

import pytest
from PIL import Image, ImageChops, ImageStat

from bot.errors import AttachmentError
from bot.images import PixelBudget, prepare_reference, probe_pixels, reencode_under, sniff
from tests import corpus


def prep(data, name="x", max_edge=3072, max_pixels=50_000_000):
    return prepare_reference(data, name, max_edge=max_edge, max_pixels=max_pixels)


@pytest.mark.parametrize(("data", "kind"), [
    (corpus.png(), "png"), (corpus.jpeg(), "jpeg"), (corpus.encoded("WEBP"), "webp"),
    (corpus.animated_gif(), "gif"), (corpus.encoded("BMP"), "bmp"),
    (corpus.encoded("TIFF"), "tiff"), (corpus.PDF, "pdf"), (corpus.SVG, "svg"),
    (corpus.TEXT, "text"), (b"", "empty"), (corpus.HTML_LOGIN, "html"),
    (b"\x00\x01\x02garbage", "unknown"),
])
def test_sniff_reads_bytes_not_names(data, kind):
    assert sniff(data) == kind


def test_heic_passes_as_is():
    pillow_heif = pytest.importorskip("pillow_heif")
    image = Image.new("RGB", (64, 40), (1, 2, 3))
    heif = pillow_heif.from_pillow(image)
    buf = io.BytesIO()
    heif.save(buf, quality=80)
    data = buf.getvalue()
    assert sniff(data) in ("heic", "heif")
    out = prep(data, "photo.heic")
    assert out.mime_type in ("image/heic", "image/heif") and out.data == data
    assert (out.width, out.height) == (64, 40)


def test_png_passes_untouched():
    data = corpus.png()
    out = prep(data, "a.png")
    assert out.data == data and out.mime_type == "image/png" and out.notice == ""


def test_jpeg_named_png_is_jpeg():
    out = prep(corpus.jpeg(), "misnamed.png")
    assert out.mime_type == "image/jpeg"


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_bmp_tiff_become_png(fmt):
    out = prep(corpus.encoded(fmt), f"a.{fmt.lower()}")
    assert out.mime_type == "image/png" and out.data.startswith(b"\x89PNG")
    assert f"converted {fmt}" in out.notice


def test_animated_gif_first_frame_with_notice():
    out = prep(corpus.animated_gif(3), "anim.gif")
    assert out.mime_type == "image/png"
    assert "first of 3 frames" in out.notice and "anim.gif" in out.notice


def test_downscale_over_max_edge():
    out = prep(corpus.png(1000, 500), "big.png", max_edge=400)
    assert (out.width, out.height) == (400, 200)
    assert Image.open(io.BytesIO(out.data)).size == (400, 200)
    assert "downscaled from 1000×500" in out.notice


def test_exif_rotation_is_applied():
    out = prep(corpus.jpeg(64, 48, orientation=6), "rotated.jpg")
    assert (out.width, out.height) == (48, 64)
    assert "upright" in out.notice


@pytest.mark.parametrize(("data", "name", "words"), [
    (b"", "zero.png", "empty"),
    (corpus.truncated_png(), "cut.png", "truncated"),
    (corpus.TEXT, "notes.png", "text file"),
    (corpus.PDF, "doc.pdf", "PDF"),
    (corpus.SVG, "logo.svg", "SVG"),
    (corpus.png_bomb(), "bomb.png", "megapixels"),
    (corpus.HTML_LOGIN, "photo.jpg", "HTML"),
])
def test_bad_inputs_each_get_their_own_message(data, name, words):
    with pytest.raises(AttachmentError) as err:
        prep(data, name)
    assert name in err.value.user_message
    assert words in err.value.user_message


def test_reencode_under_limit():
    noisy = Image.effect_noise((800, 800), 80).convert("RGB")
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    data, mime = reencode_under(buf.getvalue(), 100_000)
    assert len(data) <= 100_000 and mime == "image/jpeg"


def test_probe_pixels_reads_the_header_only():
    # Half a file cannot be decoded, but its header still says how big it is.
    assert probe_pixels(corpus.truncated_png()) == 400 * 300
    assert probe_pixels(corpus.png_bomb(10000, 10000)) == 10000 * 10000
    # Over the limit it is refused from the header, without decoding: it costs nothing.
    assert probe_pixels(corpus.png_bomb(10000, 10000), max_pixels=50_000_000) == 0
    assert probe_pixels(corpus.png_bomb(20000, 20000)) == 0  # Pillow's own bomb guard
    assert probe_pixels(corpus.PDF) == 0 and probe_pixels(b"") == 0


def rgba_png(width: int, height: int) -> bytes:
    image = Image.effect_mandelbrot((width, height), (-2, -1.5, 1, 1.5), 60).convert("RGB")
    image.putalpha(image.convert("L").point(lambda v: 255 if v > 90 else 40))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("max_edge", [700, 300])  # a plain resize, and reduce-then-resize
def test_downscaled_rgba_matches_a_whole_image_resize(max_edge):
    data = rgba_png(1200, 900)
    out = prep(data, "alpha.png", max_edge=max_edge)
    expected = Image.open(io.BytesIO(data))
    expected.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    got = Image.open(io.BytesIO(out.data))
    assert got.mode == "RGBA" and got.size == expected.size == (out.width, out.height)
    diff = ImageChops.difference(got, expected)
    assert max(ImageStat.Stat(diff).mean) < 0.1, ImageStat.Stat(diff).mean


def test_large_palette_gif_is_resampled_in_colour():
    m = Image.effect_mandelbrot((900, 600), (-2, -1.5, 1, 1.5), 60)
    image = Image.merge("RGB", (m, m.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                m.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    buf = io.BytesIO()
    image.convert("P", palette=Image.Palette.ADAPTIVE).save(buf, "GIF")
    out = prep(buf.getvalue(), "big.gif", max_edge=300)
    got = Image.open(io.BytesIO(out.data))
    assert got.size == (300, 200) and got.mode == "RGB"
    assert "converted GIF to PNG" in out.notice and "downscaled from 900×600" in out.notice
    # Resampled (many blended colours), not picked pixel by pixel from the palette.
    assert len(got.getcolors(2**24) or ()) > 256


def test_large_rotated_jpeg_is_downscaled_then_turned_upright():
    out = prep(corpus.jpeg(1600, 1200, orientation=6), "phone.jpg", max_edge=800)
    assert (out.width, out.height) == (600, 800)
    assert Image.open(io.BytesIO(out.data)).size == (600, 800)
    assert "upright" in out.notice and "downscaled from 1600×1200" in out.notice


async def test_pixel_budget_bounds_pixels_in_flight():
    budget = PixelBudget(100)
    active: list[int] = []
    peak = 0

    async def turn(pixels: int) -> None:
        nonlocal peak
        async with budget.hold(pixels):
            active.append(pixels)
            peak = max(peak, sum(active))
            assert budget.in_use <= 100
            for _ in range(3):
                await asyncio.sleep(0)
            active.remove(pixels)

    await asyncio.gather(*(turn(40) for _ in range(6)))
    assert peak == 80 and budget.in_use == 0


async def test_an_image_over_the_whole_budget_runs_alone():
    budget = PixelBudget(100)
    log: list[str] = []
    small_started = asyncio.Event()
    release_small = asyncio.Event()

    async def small(name: str) -> None:
        async with budget.hold(30):
            log.append(f"{name} in")
            small_started.set()
            await release_small.wait()
            log.append(f"{name} out")

    async def huge() -> None:
        async with budget.hold(10_000):
            log.append("huge in")
            assert budget.in_use == 100
            await asyncio.sleep(0)
            log.append("huge out")

    first = asyncio.create_task(small("a"))
    await small_started.wait()
    big = asyncio.create_task(huge())
    late = asyncio.create_task(small("b"))  # fits, but waits its turn behind the huge one
    for _ in range(5):
        await asyncio.sleep(0)
    assert log == ["a in"]
    release_small.set()
    await asyncio.gather(first, big, late)
    assert log == ["a in", "a out", "huge in", "huge out", "b in", "b out"]
    assert budget.in_use == 0


async def test_a_cancelled_waiter_gives_nothing_away():
    budget = PixelBudget(100)
    async with budget.hold(100):
        waiter = asyncio.create_task(budget.hold(50).__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert budget.in_use == 0
    async with budget.hold(100):
        assert budget.in_use == 100


def _noisy_jpeg(size: tuple[int, int], quality: int) -> bytes:
    """A photo-like JPEG: smooth gradients under fine grain, as generated images are."""
    import os

    grain = Image.frombytes("L", size, os.urandom(size[0] * size[1])).convert("RGB")
    base = Image.linear_gradient("L").resize(size).convert("RGB")
    buf = io.BytesIO()
    Image.blend(base, grain, 0.15).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_a_large_result_attached_again_stays_a_smaller_jpeg():
    data = _noisy_jpeg((5504, 3072), quality=90)  # a 4K Pro result (16:9)
    out = prep(data, "result.jpg")
    assert out.mime_type == "image/jpeg" and out.data.startswith(b"\xff\xd8\xff")
    assert (out.width, out.height) == (3072, 1715)
    assert len(out.data) < len(data) and "downscaled from 5504×3072" in out.notice


def test_re_encoding_never_makes_a_reference_bigger():
    data = _noisy_jpeg((3400, 1900), quality=20)  # tiny for its size: any re-encode is bigger
    out = prep(data, "tight.jpg")
    assert out.data == data and out.mime_type == "image/jpeg" and out.notice == ""
    assert (out.width, out.height) == (3400, 1900)


def test_a_large_heic_photo_is_downscaled_to_jpeg_not_png():
    pillow_heif = pytest.importorskip("pillow_heif")
    photo = Image.open(io.BytesIO(_noisy_jpeg((3600, 2400), quality=90)))
    buf = io.BytesIO()
    pillow_heif.from_pillow(photo).save(buf, quality=90)
    out = prep(buf.getvalue(), "photo.heic")
    assert out.mime_type == "image/jpeg" and (out.width, out.height) == (3072, 2048)
    assert "re-encoded as JPEG" in out.notice and len(out.data) <= len(buf.getvalue())
