"""Reference-image preparation: sniffing, refusals, conversions, limits."""

import io

import pytest
from PIL import Image

from bot.errors import AttachmentError
from bot.images import prepare_reference, reencode_under, sniff
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
